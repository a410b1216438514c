"Checks of hdit_edu.diffusion against the authors' code (k-diffusion) and against closed forms."
import math
import pytest
import torch
from torch import nn
from hdit_edu.diffusion import (Denoiser, edm_scalings, denoised_space_weight, soft_min_snr, LOSS_WEIGHTINGS,
                                rand_log_normal, rand_cosine_interpolated, cosine_interpolated_sigma, sigma_sampler)

from hdit_edu.model_files import from_k_diffusion
from hdit_edu.model_files import load_reference


def _bc(t): return t[:, None, None, None]


@pytest.fixture(scope='module')
def ref():
    "The reference shipped with the package; a missing file is an error (FileNotFoundError), never a skip."
    return load_reference()


def test_denoiser_matches_k_diffusion_given_the_network_output(ref):
    "Replay the network output implied by k-diffusion's denoised image: our scalings and soft-min-snr loss agree."
    x, noise, sigma = ref['x'], ref['noise'], ref['sigma']
    assert ref['config']['model']['loss_weighting'] == 'soft-min-snr'
    sigma_data = ref['config']['model']['sigma_data']
    x_noisy = x + noise * _bc(sigma)
    c_skip, c_out, c_in = (_bc(c) for c in edm_scalings(sigma, sigma_data))
    implied = (ref['denoised'] - c_skip * x_noisy) / c_out
    calls = []

    class Replay(nn.Module):
        def forward(self, inp, s, **cond):
            calls.append((inp, s, cond)); return implied

    den = Denoiser(Replay(), sigma_data=sigma_data, weighting='soft-min-snr')
    loss = den.loss(x, noise, sigma, class_cond=ref['cond_class_cond'])
    assert (loss - ref['loss']).abs().max() < 1e-5
    torch.testing.assert_close(calls[0][0], x_noisy * c_in)          # the network sees c_in * x_noisy ...
    assert torch.equal(calls[0][1], sigma)                           # ... and the raw sigma
    assert torch.equal(calls[0][2]['class_cond'], ref['cond_class_cond'])
    assert (den(x_noisy, sigma) - ref['denoised']).abs().max() < 1e-5


def test_hdit_in_denoiser_matches_k_diffusion(ref):
    "Our HDiT with the reference weights inside our Denoiser reproduces k-diffusion's denoised image and loss."
    model = from_k_diffusion(ref['config'], ref['state_dict']).eval()
    den = Denoiser(model, sigma_data=ref['config']['model']['sigma_data'], weighting='soft-min-snr')
    x, noise, sigma, cc = ref['x'], ref['noise'], ref['sigma'], ref['cond_class_cond']
    with torch.no_grad():
        denoised = den(x + noise * _bc(sigma), sigma, class_cond=cc)
        loss = den.loss(x, noise, sigma, class_cond=cc)
    err_d, err_l = (denoised - ref['denoised']).abs().max().item(), (loss - ref['loss']).abs().max().item()
    print(f'max |denoised - ref| = {err_d:.2e}, max |loss - ref| = {err_l:.2e}')
    assert err_d < 1e-4 and err_l < 1e-4


def test_loss_identity_and_weights_in_both_spaces():
    "loss (model-output space) == denoised-space weight * ||D - x||^2, and soft-min-snr == 1/(s^2+sd^2) there."
    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self): super().__init__(); self.conv = nn.Conv2d(3, 3, 3, padding=1)
        def forward(self, x, sigma, **cond): return self.conv(x) + sigma.log()[:, None, None, None] / 4

    x, noise = torch.randn(6, 3, 8, 8, dtype=torch.float64) * 0.5, torch.randn(6, 3, 8, 8, dtype=torch.float64)
    sigma = torch.tensor([1e-3, 0.05, 0.5, 2., 30., 900.], dtype=torch.float64)
    for name in LOSS_WEIGHTINGS:
        den = Denoiser(Net().double(), weighting=name)
        d_err = (den(x + noise * _bc(sigma), sigma) - x).pow(2).flatten(1).mean(1)
        torch.testing.assert_close(den.loss(x, noise, sigma), denoised_space_weight(name, sigma) * d_err, rtol=1e-9, atol=0)
    sd = 0.5
    torch.testing.assert_close(denoised_space_weight('soft-min-snr', sigma, sd), 1 / (sigma ** 2 + sd ** 2))
    torch.testing.assert_close(denoised_space_weight('soft-min-snr', sigma, sd), soft_min_snr(1 / sigma ** 2, 1 / sd ** 2))
    # soft-min-snr lies below both SNR and gamma, and within a factor 2 of min(SNR, gamma)
    w, m = soft_min_snr(1 / sigma ** 2, 4.), torch.minimum(1 / sigma ** 2, torch.tensor(4., dtype=torch.float64))
    assert (w <= m).all() and (w >= m / 2).all()


def test_loss_gradient_matches_autograd_of_denoised_space_loss():
    "Gradients of the model-output-space loss equal those of the weighted denoised-space loss."
    torch.manual_seed(0)
    net = nn.Conv2d(3, 3, 3, padding=1).double()
    class Net(nn.Module):
        def __init__(self): super().__init__(); self.net = net
        def forward(self, x, sigma, **cond): return self.net(x)
    den = Denoiser(Net())
    x, noise = torch.randn(4, 3, 8, 8, dtype=torch.float64) * 0.5, torch.randn(4, 3, 8, 8, dtype=torch.float64)
    sigma = torch.tensor([0.02, 0.4, 1.5, 20.], dtype=torch.float64)
    den.loss(x, noise, sigma).sum().backward()
    g1 = net.weight.grad.clone(); net.zero_grad()
    d = den(x + noise * _bc(sigma), sigma)
    ((d - x).pow(2).flatten(1).mean(1) / (sigma ** 2 + 0.25)).sum().backward()
    torch.testing.assert_close(net.weight.grad, g1)


def test_denoiser_errors():
    with pytest.raises(ValueError, match='soft-min-snr'): Denoiser(nn.Identity(), weighting='min_snr')
    with pytest.raises(ValueError, match='sigma_data'): Denoiser(nn.Identity(), sigma_data=0)
    den = Denoiser(lambda x, s: x)
    with pytest.raises(ValueError, match='noise shape'): den.loss(torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 5), 1.)
    with pytest.raises(ValueError, match=r'shape \[batch\]'): den(torch.zeros(2, 3, 4, 4), torch.ones(3))


def test_sigma_densities_are_seeded_and_correct():
    s1 = rand_cosine_interpolated(64, image_d=64, generator=torch.Generator().manual_seed(0))
    s2 = rand_cosine_interpolated(64, image_d=64, generator=torch.Generator().manual_seed(0))
    assert torch.equal(s1, s2) and (s1 > 0).all()
    ls = rand_log_normal(200_000, generator=torch.Generator().manual_seed(0)).log()
    assert abs(ls.mean() + 1.2) < 0.01 and abs(ls.std() - 1.2) < 0.01
    # noise_d_low == noise_d_high: a single shifted cosine schedule, sigma = (d/nd) sd tan(theta), theta uniform
    s = rand_cosine_interpolated(200_000, image_d=128, noise_d_low=32, noise_d_high=32,
                                 generator=torch.Generator().manual_seed(1)).double()
    f = 128 / 32
    theta = torch.atan(s / (f * 0.5))
    lo, hi = math.atan(1e-3 / (f * 0.5)), math.atan(1e3 / (f * 0.5))
    u = (theta - lo) / (hi - lo)
    hist = torch.histc(u, bins=10, min=0, max=1) / len(u)
    assert (hist - 0.1).abs().max() < 0.005, hist
    # end points and monotonicity (t=0 is the most noise)
    t = torch.linspace(0, 1, 101, dtype=torch.float64)
    sig = cosine_interpolated_sigma(t, 256)
    assert abs(sig[0] - 1e3) < 1e-6 and abs(sig[-1] - 1e-3) < 1e-12 and (sig.diff() < 0).all()
    with pytest.raises(ValueError, match='image_d'): sigma_sampler('cosine-interpolated')
    with pytest.raises(ValueError, match='positive'): cosine_interpolated_sigma(t, 0)
