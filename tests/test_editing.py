"""Inpainting and image-to-image on the exact Gaussian-mixture denoiser: known pixels stay, the painted part follows
the known part, sigma_start moves between keeping and forgetting the input, and every bad input is a clear error."""
import pytest
import torch
import hdit_edu.editing as editing
from hdit_edu.editing import inpaint, img2img, KnownPixels
from hdit_edu.sampling import GaussianMixtureDenoiser, SAMPLERS

torch.set_num_threads(1)


@pytest.fixture(scope='module')
def mixture():
    "Four 1x8x8 components: 0 and 1 share their left half and differ on the right, 2 and 3 differ everywhere."
    torch.manual_seed(0)
    a, c, d = torch.rand(3, 1, 8, 8) * 1.6 - 0.8
    b = a.clone()
    b[..., 4:] = -a[..., 4:]
    means = torch.stack([a, b, c, d])
    return means, GaussianMixtureDenoiser(means, std=0.05)


@pytest.fixture(scope='module')
def toy():
    "A class-conditional mixture of 3 components, 3x8x8."
    torch.manual_seed(1)
    means = torch.rand(3, 3, 8, 8) * 1.6 - 0.8
    return means, GaussianMixtureDenoiser(means, std=0.05, class_conditional=True)


def right_half(shape=(8, 8)):
    m = torch.zeros(shape, dtype=torch.bool); m[:, shape[1] // 2:] = True
    return m


def dists(x, means, m):
    "Mean squared distance of each painted region in x to each component's, [b, k]."
    return ((x[:, None] - means[None]) ** 2)[:, :, m.expand(x.shape[1:])].mean(-1)


@pytest.mark.parametrize('sampler', sorted(SAMPLERS))
@pytest.mark.parametrize('resample', [1, 3])
def test_known_pixels_come_back_exactly(mixture, sampler, resample):
    means, den = mixture
    y = (means[[2, 0]] + 0.05 * torch.randn(2, 1, 8, 8)).clamp(-1, 1)
    m = torch.rand(8, 8) > 0.6
    out = inpaint(den, y, m, steps=6, sampler=sampler, resample=resample, seed=3)
    assert out.shape == y.shape
    assert torch.equal(out[:, :, ~m], y[:, :, ~m])                        # bit for bit
    assert not torch.allclose(out[:, :, m], y[:, :, m], atol=1e-3)        # the painted part was painted


@pytest.mark.parametrize('resample', [1, 4])
def test_painted_half_follows_the_known_component(mixture, resample):
    "Left half known from component 2 or 3: the right half becomes that component's right half, for every seed."
    means, den = mixture
    m = right_half()
    for k in (2, 3):
        y = (means[k] + 0.05 * torch.randn(1, 8, 8)).clamp(-1, 1).expand(8, 1, 8, 8).clone()
        y[:, :, m] = 0.                                                    # the truth to be painted is hidden
        out = inpaint(den, y, m, steps=20, resample=resample, seed=k)
        d = dists(out, means, m)
        assert (d.argmin(1) == k).all(), (k, d)
        assert d[:, k].max() < 0.01, d[:, k]                             # within the component's own spread


def test_component_1_has_the_same_left_half_so_both_answers_occur(mixture):
    "Components 0 and 1 agree on the left: given that half, inpainting must draw both right halves, not average them."
    means, den = mixture
    m = right_half()
    y = means[0].expand(32, 1, 8, 8).clone(); y[:, :, m] = 0.
    d = dists(inpaint(den, y, m, steps=20, resample=2, seed=0, sampler='dpmpp_2m_sde'), means, m)
    picks = d.argmin(1)
    assert set(picks.tolist()) == {0, 1}, picks
    assert (d.min(1).values < 0.02).all()                                 # each one a clean component, no blend


def test_inpaint_with_a_class_and_guidance(toy):
    means, den = toy
    m = torch.ones(8, 8, dtype=torch.bool)                                # paint everything: a plain class sample
    out = inpaint(den, means[0][None], m, steps=15, class_cond=2, cfg_scale=2.)
    assert dists(out, means, m).argmin().item() == 2
    out = inpaint(den, means[0][None], m, steps=15)                       # default: 'no class'
    assert out.shape == (1, 3, 8, 8)


def test_known_pixels_wrapper_replaces_and_answers_the_truth():
    y, m = torch.rand(1, 1, 4, 4) * 2 - 1, right_half((4, 4)).expand(1, 1, 4, 4)
    seen = []
    out = KnownPixels(lambda x, s: seen.append(x) or x * 0, y, m)(torch.full((1, 1, 4, 4), 5.), torch.tensor([1e-6]))
    assert torch.equal(out[~m], y[~m]) and (out[m] == 0).all()
    assert torch.allclose(seen[0][~m], y[~m], atol=1e-4) and (seen[0][m] == 5).all()


def test_img2img_tiny_sigma_keeps_the_input_and_huge_sigma_forgets_it(toy):
    means, den = toy
    y = (means[0] + 0.05 * torch.randn(3, 8, 8)).clamp(-1, 1)[None].expand(4, 3, 8, 8)
    small = img2img(den, y, sigma_start=0.02, steps=5)
    assert (small - y).pow(2).mean().sqrt() < 0.03                        # barely touched (rms change)
    other = img2img(den, y, sigma_start=0.02, steps=5, class_cond=1)      # another class: still much nearer the input
    assert (other - y).pow(2).mean() < 0.1 * (other - means[1]).pow(2).mean()
    mid = img2img(den, y, sigma_start=0.3, steps=10, class_cond=0)
    assert (dists(mid, means, torch.ones(8, 8, dtype=torch.bool)).argmin(1) == 0).all()
    big = img2img(den, y, sigma_start=80., steps=20, class_cond=1, seed=5)
    d = dists(big, means, torch.ones(8, 8, dtype=torch.bool))
    assert (d.argmin(1) == 1).all() and (d[:, 1] < 0.01).all()             # a sample of class 1: the input is gone
    free = GaussianMixtureDenoiser(means, std=0.05)               # unconditional: huge sigma draws any component
    picks = dists(img2img(free, y[:1].expand(24, 3, 8, 8), sigma_start=80., steps=20, sampler='dpmpp_2m_sde'), means,
                  torch.ones(8, 8, dtype=torch.bool)).argmin(1)
    assert len(set(picks.tolist())) >= 2, picks


def test_img2img_uses_the_sampler_from_sigma_start(toy, monkeypatch):
    means, den = toy
    seen = {}
    def fake(d, x, sigmas, **kw): seen.update(sigmas=sigmas, std=(x - means[0]).std().item()); return x
    monkeypatch.setitem(editing.SAMPLERS, 'euler', fake)
    img2img(den, means[0], sigma_start=3., steps=7, class_cond=0)
    assert len(seen['sigmas']) == 8 and abs(seen['sigmas'][0] - 3.) < 1e-5 and seen['sigmas'][-1] == 0
    assert 2.0 < seen['std'] < 4.0                                         # the input plus noise of size 3


def err(fn, *fragments):
    with pytest.raises(ValueError) as e: fn()
    msg = str(e.value)
    assert '\n' not in msg, msg
    for f in fragments: assert f in msg, (f, msg)


def test_errors_say_what_to_do(toy):
    means, den = toy
    y, m = means[0], right_half()
    err(lambda: inpaint(den, y, m.float()), 'mask must be a bool tensor', 'got torch.float32', 'mask > 0.5')
    err(lambda: inpaint(den, y, torch.zeros(8, 6, dtype=torch.bool)), 'mask must have the image', '[8, 8]',
        'got [8, 6]')
    err(lambda: inpaint(den, y[None], torch.zeros(2, 1, 8, 8, dtype=torch.bool)), 'got [2, 1, 8, 8]')
    err(lambda: inpaint(den, torch.zeros(3, 16, 16), m), 'image is 16x16 pixels but the model makes 8x8',
        'resize it first')
    err(lambda: inpaint(den, torch.zeros(1, 8, 8), m), 'image has 1 channels but the model makes 3')
    err(lambda: inpaint(den, (y + 1) * 127.5, m), 'image values must lie in [-1, 1]', 'x / 127.5 - 1')
    err(lambda: img2img(den, torch.zeros(3, 8, 8, dtype=torch.uint8)), 'float tensor', 'pixels / 127.5 - 1')
    err(lambda: img2img(den, torch.zeros(8, 8)), 'image must be [C, H, W] or [B, C, H, W]')
    for s in (0., -1., 81., float('nan')):
        err(lambda s=s: img2img(den, y, sigma_start=s), 'sigma_start must lie in (sigma_min, sigma_max] = (0.01, 80]')
    err(lambda: inpaint(den, y, m, resample=0), 'resample must be a whole number >= 1')
    err(lambda: inpaint(den, y, m, sampler='ddpm'), "Unknown sampler 'ddpm'")
    err(lambda: inpaint(den, y, m, steps=0), 'steps must be a whole number >= 1')
    err(lambda: inpaint(den, y, m, class_cond=7), 'class_cond [7] outside [0, 3]', "3 = 'no class'")
    free = GaussianMixtureDenoiser(means, std=0.05)
    err(lambda: img2img(free, y, cfg_scale=3.), 'cfg_scale != 1 needs a class-conditional model')


def test_public_names():
    assert editing.__all__ == ['KnownPixels', 'inpaint', 'img2img']
