"Samplers checked against the exact denoiser of Gaussian data, guidance, seeding and error messages."
import numpy as np
import pytest
import torch
from torch import nn
from hdit_edu.diffusion import Denoiser
from hdit_edu.sampling import (GaussianMixtureDenoiser, get_sigmas_karras, SAMPLERS, CFGDenoiser, sample,
                               sample_dpmpp_2m, sample_dpmpp_2m_sde, _exact_gaussian_std)

MU, S0, SMIN, SMAX = 0.4, 0.3, 1e-2, 80.


def test_patched_forward_shows_its_own_docstring():
    "The API page shows the mixture's forward with its own one-line docstring, not nn.Module.forward's."
    doc = GaussianMixtureDenoiser.forward.__doc__
    assert doc.startswith('Posterior mean') and '\n' not in doc


def test_karras_schedule():
    s = get_sigmas_karras(7, 0.02, 50., rho=7.)
    assert s.shape == (8,) and s[-1] == 0 and (s.diff() < 0).all()
    torch.testing.assert_close(s[[0, 6]], torch.tensor([50., 0.02]))
    r = s[:-1] ** (1 / 7)
    torch.testing.assert_close(r.diff(), r.diff()[:1].expand(6))              # uniform in sigma^(1/rho)
    with pytest.raises(ValueError, match='sigma_min'): get_sigmas_karras(5, 1., 0.5)
    with pytest.raises(ValueError, match='at least one step'): get_sigmas_karras(0, 0.1, 1.)


def test_gaussian_mixture_denoiser_is_the_posterior_mean():
    "Monte Carlo check of E[x0 | x_sigma] for a 2-component 1-D mixture."
    means, std, sig = torch.tensor([[-1.], [1.5]], dtype=torch.float64), 0.3, 0.8
    den = GaussianMixtureDenoiser(means, std, weights=[0.3, 0.7])
    g = torch.Generator().manual_seed(0)
    k = (torch.rand(2_000_000, generator=g) < 0.7).long()
    x0 = means[k, 0] + std * torch.randn(len(k), generator=g, dtype=torch.float64)
    xs = x0 + sig * torch.randn(len(k), generator=g, dtype=torch.float64)
    for q in [-1.5, 0., 0.5, 2.]:
        near = (xs - q).abs() < 0.01
        mc = x0[near].mean()
        exact = den(torch.tensor([[q]], dtype=torch.float64), torch.tensor([sig], dtype=torch.float64))[0, 0]
        assert abs(mc - exact) < 0.03, (q, mc, exact)


def test_ode_samplers_converge_at_their_order():
    "Deterministic samplers map x -> mu + k (x - mu); k's error against the exact ODE solution falls as N^-order."
    toy = GaussianMixtureDenoiser(torch.tensor([[MU]], dtype=torch.float64), S0)
    k_exact = _exact_gaussian_std(S0, SMIN, SMAX) / SMAX
    steps = [20, 40, 80, 160]
    for name, expected in [('euler', 1), ('heun', 2), ('dpmpp_2m', 2)]:
        errs = []
        for n in steps:
            sig = get_sigmas_karras(n, SMIN, SMAX).double()
            a = SAMPLERS[name](toy, torch.tensor([[0.]], dtype=torch.float64), sig)
            b = SAMPLERS[name](toy, torch.tensor([[1.]], dtype=torch.float64), sig)
            errs.append(abs((b - a).item() / k_exact - 1))
        order = -np.polyfit(np.log(steps), np.log(errs), 1)[0]
        assert abs(order - expected) < 0.25, (name, order, errs)
        assert errs[-1] < (0.02 if expected == 1 else 1e-3), (name, errs)


@pytest.mark.parametrize('name', list(SAMPLERS))
def test_samplers_reproduce_gaussian_data(name):
    """50 steps from sigma_max=80 to 0 on N(mu, s0^2) data, 40,000 samples.
    Tolerances = discretisation error at 50 steps (Euler ~6 %, second-order ODE ~0.5 %, 2M SDE ~1.6 %, 3M SDE
    ~0.6 % on the std, the SDE figures measured with 4M samples) + sampling error (std 0.35 %, mean 0.0015) + margin."""
    toy = GaussianMixtureDenoiser(torch.tensor([[MU]], dtype=torch.float64), S0)
    x = torch.randn(40_000, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * SMAX
    out = SAMPLERS[name](toy, x, get_sigmas_karras(50, SMIN, SMAX).double(), generator=torch.Generator().manual_seed(1))
    std_tol = {'euler': 0.08, 'heun': 0.02, 'dpmpp_2m': 0.02, 'dpmpp_2m_sde': 0.035, 'dpmpp_3m_sde': 0.025}[name]
    assert abs(out.mean() - MU) < 0.008, out.mean()
    assert abs(out.std() / S0 - 1) < std_tol, out.std()


def test_sde_with_eta_zero_is_the_ode_solver():
    toy = GaussianMixtureDenoiser(torch.randn(3, 2, 4, 4) * 0.5, 0.2)
    x = torch.randn(5, 2, 4, 4, generator=torch.Generator().manual_seed(0)) * SMAX
    s = get_sigmas_karras(12, SMIN, SMAX)
    torch.testing.assert_close(sample_dpmpp_2m_sde(toy, x, s, eta=0.), sample_dpmpp_2m(toy, x, s))


def _mix(): return GaussianMixtureDenoiser(torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.5,
                                           0.2, class_conditional=True)


@pytest.mark.parametrize('name', list(SAMPLERS))
def test_seeded_sampling_is_deterministic(name):
    mix = _mix()
    a = sample(mix, 3, 8, sampler=name, steps=6, class_cond=torch.tensor([0, 1, 3]), seed=5)
    b = sample(mix, 3, 8, sampler=name, steps=6, class_cond=torch.tensor([0, 1, 3]), seed=5)
    c = sample(mix, 3, 8, sampler=name, steps=6, class_cond=torch.tensor([0, 1, 3]), seed=6)
    assert a.shape == (3, 3, 8, 8) and torch.equal(a, b) and not torch.allclose(a, c)


def test_stochastic_samplers_use_the_generator_for_noise():
    "Same starting noise, different noise generators: SDE results differ, ODE results do not."
    toy = GaussianMixtureDenoiser(torch.zeros(1, 3, 4, 4), 0.5)
    x, s = torch.randn(2, 3, 4, 4) * SMAX, get_sigmas_karras(8, SMIN, SMAX)
    for name, stochastic in [('dpmpp_2m', False), ('dpmpp_2m_sde', True), ('dpmpp_3m_sde', True)]:
        r = [SAMPLERS[name](toy, x, s, generator=torch.Generator().manual_seed(k)) for k in (0, 1)]
        assert torch.equal(r[0], r[1]) != stochastic, name


def test_cfg():
    mix = _mix()
    x, sig, c = torch.randn(4, 3, 8, 8), torch.full((4,), 1.3), torch.tensor([0, 1, 2, 1])
    cond, uncond = mix(x, sig, class_cond=c), mix(x, sig, class_cond=torch.full_like(c, 3))
    assert torch.equal(CFGDenoiser(mix, 1.)(x, sig, class_cond=c), cond)
    torch.testing.assert_close(CFGDenoiser(mix, 0.)(x, sig, class_cond=c), uncond)
    torch.testing.assert_close(CFGDenoiser(mix, 2.5)(x, sig, class_cond=c), uncond + 2.5 * (cond - uncond))
    # scale 1 through sample() is conditional sampling, bit for bit
    a = sample(mix, 4, 8, steps=10, class_cond=c, cfg_scale=1., seed=3)
    assert torch.equal(a, sample(mix, 4, 8, steps=10, class_cond=c, seed=3))
    assert not torch.allclose(a, sample(mix, 4, 8, steps=10, class_cond=c, cfg_scale=3., seed=3))
    with pytest.raises(ValueError, match='class-conditional'):
        CFGDenoiser(GaussianMixtureDenoiser(torch.zeros(1, 2), .1), 2.)
    with pytest.raises(ValueError, match='class_cond'): CFGDenoiser(mix, 2.)(x, sig)


def test_cfg_batches_other_conditioning():
    "mapping_cond and per-sample tensors are duplicated for the two branches; the null class is num_classes."
    seen = {}
    class Spy(nn.Module):
        num_classes = 5
        def forward(self, x, sigma, class_cond=None, mapping_cond=None):
            seen.update(x=x, sigma=sigma, class_cond=class_cond, mapping_cond=mapping_cond)
            return x * 0 + class_cond[:, None].float()
    out = CFGDenoiser(Spy(), 2.)(torch.zeros(2, 3), torch.tensor([1., 2.]), class_cond=torch.tensor([1, 4]),
                                 mapping_cond=torch.tensor([[7.], [8.]]))
    assert seen['class_cond'].tolist() == [5, 5, 1, 4] and seen['sigma'].tolist() == [1., 2., 1., 2.]
    assert seen['mapping_cond'].flatten().tolist() == [7., 8., 7., 8.]
    torch.testing.assert_close(out, torch.tensor([[5 + 2 * (1 - 5.)] * 3, [5 + 2 * (4 - 5.)] * 3]))


def test_sample_errors_and_training_mode():
    mix, uncond = _mix(), GaussianMixtureDenoiser(torch.zeros(1, 3, 8, 8), 0.2)
    with pytest.raises(ValueError, match='dpmpp_3m_sde'): sample(mix, 2, 8, sampler='ddim', class_cond=0)
    with pytest.raises(ValueError, match='pass class_cond'): sample(mix, 2, 8)
    with pytest.raises(ValueError, match='unconditional'): sample(uncond, 2, 8, class_cond=1)
    with pytest.raises(ValueError, match='class-conditional'): sample(uncond, 2, 8, cfg_scale=2.)
    with pytest.raises(ValueError, match="'no class'"): sample(mix, 2, 8, class_cond=7)
    with pytest.raises(ValueError, match=r'shape \[2\]'): sample(mix, 2, 8, class_cond=torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match='steps'): sample(uncond, 2, 8, steps=0)
    mix.train()
    sample(mix, 1, 8, steps=2, class_cond=3)
    assert mix.training                                        # sample() evaluates in eval mode, then restores


def test_callback_sees_every_step():
    seen = []
    out = sample(_mix(), 2, 8, steps=5, class_cond=0, callback=seen.append, sampler='heun')
    assert [d['i'] for d in seen] == list(range(5))
    assert all(set(d) >= {'i', 'x', 'sigma', 'sigma_hat', 'denoised'} for d in seen)
    torch.testing.assert_close(seen[0]['sigma'], torch.tensor(80.))
    torch.testing.assert_close(out, seen[-1]['denoised'], atol=1e-5, rtol=0)   # last step jumps to the denoised image


def test_sample_with_a_small_hdit():
    model_mod = pytest.importorskip('hdit_edu.model')
    torch.manual_seed(0)
    cfg = model_mod.HDiTConfig(levels=[dict(depth=1, width=32, attention='neighborhood', d_head=16, kernel_size=3),
                                       dict(depth=1, width=64, attention='global', d_head=16)],
                               patch_size=2, input_size=16, num_classes=4, mapping_width=32, mapping_depth=1)
    model = model_mod.HDiT(cfg)
    for p in model.parameters():                       # move away from the zero init so outputs depend on inputs
        with torch.no_grad(): p.add_(torch.randn_like(p) * 0.02)
    den = Denoiser(model)
    a = sample(den, 2, 16, steps=3, class_cond=torch.tensor([0, 4]), seed=0)
    assert a.shape == (2, 3, 16, 16) and torch.isfinite(a).all()
    assert torch.equal(a, sample(den, 2, 16, steps=3, class_cond=torch.tensor([0, 4]), seed=0))
    b = sample(model, 2, 16, steps=3, class_cond=torch.tensor([0, 4]), seed=0)     # a bare HDiT is wrapped
    torch.testing.assert_close(b, a)
    with pytest.raises(ValueError, match='class_cond'): sample(den, 2, 16, steps=3)
    g = sample(den, 2, 16, steps=3, class_cond=torch.tensor([0, 1]), cfg_scale=2., seed=0)
    assert torch.isfinite(g).all()


def _one_line_error(fn, *words):
    "Call `fn`, expect a ValueError whose message is one line and contains every word."
    with pytest.raises(ValueError) as e: fn()
    msg = str(e.value)
    assert '\n' not in msg and all(w in msg for w in words), msg
    return msg


def test_sample_checks_its_arguments_with_one_line_messages():
    mix, uncond = _mix(), GaussianMixtureDenoiser(torch.zeros(1, 3, 8, 8), 0.2)
    for n in (-2, 0):
        _one_line_error(lambda n=n: sample(mix, n, 8, class_cond=0), f'n={n}', 'whole number >= 1')
    _one_line_error(lambda: sample(mix, 2.5, 8, class_cond=0), 'n=2.5')
    _one_line_error(lambda: sample(mix, True, 8, class_cond=0), 'n=True')
    _one_line_error(lambda: sample(mix, 2, 0, class_cond=0), 'size')
    _one_line_error(lambda: sample(mix, 2, (8, 8, 8), class_cond=0), 'size')
    _one_line_error(lambda: sample(mix, 2, 8, class_cond=-1), 'class_cond [-1]', 'outside [0, 3]', "'no class'")
    _one_line_error(lambda: sample(mix, 2, 8, class_cond=torch.tensor([0, 4])), 'class_cond [4]', 'outside [0, 3]')
    _one_line_error(lambda: sample(mix, 2, 8, class_cond=1.), 'integer class indices', 'float')
    _one_line_error(lambda: sample(mix, 2, 8, class_cond=torch.tensor([True, False])), 'integer class indices')
    _one_line_error(lambda: sample(mix, 2, 8), 'pass class_cond', '0..2')
    for bad in (float('nan'), float('inf'), 'strong', None):
        _one_line_error(lambda bad=bad: sample(mix, 2, 8, class_cond=0, cfg_scale=bad),
                        'cfg_scale must be a finite number',
                        repr(bad))
    _one_line_error(lambda: sample(uncond, 2, 8, cfg_scale=2.), 'class-conditional')
    _one_line_error(lambda: sample(uncond, 2, 8, class_cond=0), 'unconditional')
    _one_line_error(lambda: sample(mix, 2, 8, class_cond=0, threads=0), 'threads must be >= 1')


def test_sample_accepts_int_numpy_and_tensor_labels_and_counts():
    mix = _mix()
    a = sample(mix, 2, 8, steps=3, class_cond=1, seed=0)
    assert a.shape == (2, 3, 8, 8)
    for same in (torch.tensor([1, 1]), [1, 1], np.array([1, 1]), np.int64(1), torch.tensor(1)):
        assert torch.equal(sample(mix, 2, 8, steps=3, class_cond=same, seed=0), a), same
    assert torch.equal(sample(mix, np.int64(2), (8, 8), steps=3, class_cond=1, seed=0), a)
    assert sample(mix, 1, 8, steps=2, class_cond=3, cfg_scale=np.float32(2.)).shape == (1, 3, 8, 8)
    assert torch.equal(sample(mix, 2.0, 8, steps=np.int64(3), class_cond=1, seed=0), a)   # whole floats count
    _one_line_error(lambda: sample(mix, 1, 8, steps=2, class_cond=0, cfg_scale=-1), 'from 0 to 100', '-1')


def test_sample_names_the_classes_a_model_carries():
    mix = _mix(); mix.class_names = ['fox', 'frog', 'octopus']
    msg = _one_line_error(lambda: sample(mix, 2, 8, class_cond=5), 'class_cond [5]')
    assert '0 fox, 1 frog, 2 octopus' in msg and "3 = 'no class'" in msg
    den = Denoiser(mix)                                       # names are found on the model inside a Denoiser too
    assert '2 octopus' in _one_line_error(lambda: sample(den, 2, 8), 'pass class_cond')


def test_sample_threads_are_set_inside_and_restored_after():
    before, seen = torch.get_num_threads(), []
    sample(_mix(), 1, 8, steps=2, class_cond=0, threads=1, callback=lambda d: seen.append(torch.get_num_threads()))
    assert seen == [1, 1] and torch.get_num_threads() == before
    try:
        torch.set_num_threads(1)                              # the user's choice is kept when threads is None
        sample(_mix(), 1, 8, steps=2, class_cond=0, callback=lambda d: seen.append(torch.get_num_threads()))
        assert seen[-2:] == [1, 1] and torch.get_num_threads() == 1
    finally: torch.set_num_threads(before)
