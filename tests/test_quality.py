"Checks of hdit_edu.quality: the Fréchet distance against closed forms, and the shipped feature network's behaviour."
import json, math
import pytest
import torch

from hdit_edu.quality import (frechet_distance, frechet_distance_from_stats, trace_sqrt_product, feature_stats,
                              extract_features, fid_score, load_feature_net, save_feature_net, FeatureNet,
                              gaussian_blur, prepare_images, train_feature_net, _default_path)
from hdit_edu.data import openmoji_dataset, pil_to_tensor

f64 = torch.float64


def _gauss(n, mu, cov, seed):
    g = torch.Generator().manual_seed(seed)
    mu, cov = torch.as_tensor(mu, dtype=f64), torch.as_tensor(cov, dtype=f64)
    return torch.randn(n, len(mu), generator=g, dtype=f64) @ torch.linalg.cholesky(cov).T + mu


def _random_cov(d, seed, ridge=0.0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(d, d, generator=g, dtype=f64)
    return w @ w.T + ridge * torch.eye(d, dtype=f64)


def test_commuting_covariances_match_the_closed_form():
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(8, 8, generator=g, dtype=f64))
    a, b = torch.rand(8, generator=g, dtype=f64) * 3, torch.rand(8, generator=g, dtype=f64) * 3
    m1, m2 = torch.randn(8, generator=g, dtype=f64), torch.randn(8, generator=g, dtype=f64)
    got = frechet_distance_from_stats(m1, q @ a.diag() @ q.T, m2, q @ b.diag() @ q.T)
    want = ((m1 - m2) ** 2).sum() + ((a.sqrt() - b.sqrt()) ** 2).sum()
    assert got == pytest.approx(want.item(), rel=1e-10, abs=1e-10)


def test_non_commuting_2x2_matches_the_closed_form():
    c1 = torch.tensor([[1.3, -0.7], [-0.7, 0.9]], dtype=f64)
    c2 = torch.tensor([[0.2, 0.1], [0.1, 2.5]], dtype=f64)
    tr_sqrt = math.sqrt((c1 @ c2).trace() + 2 * math.sqrt(c1.det() * c2.det()))   # tr√M for 2×2 M
    want = 0.5 ** 2 + 2 ** 2 + c1.trace() + c2.trace() - 2 * tr_sqrt
    assert frechet_distance_from_stats([0, 0], c1, [0.5, -2], c2) == pytest.approx(want.item(), rel=1e-12)


def test_trace_sqrt_agrees_with_a_general_eigensolver_and_with_scipy_when_present():
    s1, s2 = _random_cov(20, 1, 0.1), _random_cov(20, 2)
    ref = torch.linalg.eigvals(s1 @ s2).real.clamp(min=0).sqrt().sum().item()
    assert trace_sqrt_product(s1, s2) == pytest.approx(ref, rel=1e-9)
    try: import scipy  # noqa: F401
    except ImportError: return
    mu = torch.zeros(20, dtype=f64)
    assert frechet_distance_from_stats(mu, s1, mu + 1, s2, method='scipy') == pytest.approx(
        frechet_distance_from_stats(mu, s1, mu + 1, s2), rel=1e-6)


def test_rank_deficient_covariances_stay_finite_and_non_negative():
    f = torch.randn(10, 64, generator=torch.Generator().manual_seed(0))     # n < d: singular covariance
    d = frechet_distance(f, f)
    assert math.isfinite(d) and abs(d) < 1e-6
    assert frechet_distance(f, f + 1) == pytest.approx(64.0, rel=1e-6)       # a pure shift adds |Δμ|²


def test_sample_estimate_converges_to_the_closed_form():
    c1, c2 = [[1, .5, 0], [.5, 2, .3], [0, .3, .7]], [[.5, 0, 0], [0, 1, -.2], [0, -.2, 1.5]]
    exact = frechet_distance_from_stats([0, 1, 0], c1, [1, 0, 0], c2)
    est = frechet_distance(_gauss(300_000, [0, 1, 0], c1, 3), _gauss(300_000, [1, 0, 0], c2, 4))
    assert est == pytest.approx(exact, rel=0.02)


def test_invariant_to_rotations_of_feature_space():
    a, b = _gauss(500, [0, 0, 0, 0], _random_cov(4, 5, 0.1), 6), _gauss(500, [1, 0, 0, 0], _random_cov(4, 7, 0.1), 8)
    q, _ = torch.linalg.qr(torch.randn(4, 4, generator=torch.Generator().manual_seed(9), dtype=f64))
    assert frechet_distance(a @ q, b @ q) == pytest.approx(frechet_distance(a, b), rel=1e-9)


def test_errors_say_what_is_wrong():
    with pytest.raises(ValueError, match='same network'): frechet_distance(torch.randn(5, 3), torch.randn(5, 4))
    with pytest.raises(ValueError, match='n >= 2'): feature_stats(torch.randn(1, 3))
    with pytest.raises(ValueError, match="'eigh' or 'scipy'"): frechet_distance(torch.randn(5, 3), torch.randn(5, 3), method='svd')


# --- the shipped feature network -------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def halves():
    reals = torch.stack([pil_to_tensor(im) for im in openmoji_dataset(64)['image']])
    perm = torch.randperm(len(reals), generator=torch.Generator().manual_seed(0))
    return reals[perm[: len(reals) // 2]], reals[perm[len(reals) // 2:]]


@pytest.fixture(scope='module')
def feats_a(halves): return extract_features(halves[0])


def test_shipped_weights_are_small_and_described():
    p = _default_path()
    assert p.exists() and p.stat().st_size < 2_000_000
    meta = json.loads(p.with_suffix('.json').read_text())
    assert meta['config']['in_size'] == 64 and 'OpenMoji' in meta['trained_on']
    net = load_feature_net()
    assert load_feature_net() is net and not net.training


def test_a_set_against_itself_scores_zero(halves, feats_a):
    assert abs(frechet_distance(feats_a, feats_a)) < 1e-6
    assert abs(fid_score(halves[0], halves[0])) < 1e-6


def test_real_halves_are_close_and_degraded_images_are_far(halves, feats_a):
    a, b = halves
    g = torch.Generator().manual_seed(1)
    fd = lambda x: frechet_distance(feats_a, extract_features(x))
    floor = fd(b)
    assert fd(b.flip(-1)) < 1.5 * floor                                    # mirrored reals are still reals
    blur1, blur2 = fd(gaussian_blur(b, 1.0)), fd(gaussian_blur(b, 2.0))
    noisy = fd(b + 0.3 * torch.randn(b.shape, generator=g))
    noise = fd(torch.randn(b.shape, generator=g))
    untrained_like = fd(0.5 * torch.randn(b.shape, generator=g))          # what an untrained (zero-output) HDiT samples
    assert blur1 > 10 * floor and blur2 > blur1
    assert noisy > 10 * floor
    assert noise > 50 * floor and untrained_like > 50 * floor


def test_features_do_not_depend_on_batching_or_input_format(halves):
    x = halves[0][:12]
    f = extract_features(x)
    assert torch.allclose(extract_features(x, batch_size=5), f, atol=1e-4)
    u8 = ((x + 1) * 127.5).round().to(torch.uint8)
    assert torch.allclose(extract_features(u8), f, atol=1e-3)             # uint8 images are converted
    assert torch.allclose(extract_features([im for im in openmoji_dataset(64)['image'][:3]]),
                          extract_features(torch.stack([pil_to_tensor(im) for im in openmoji_dataset(64)['image'][:3]])))


def test_prepare_images_rejects_common_mistakes():
    with pytest.raises(ValueError, match='127.5'): prepare_images(torch.rand(2, 3, 8, 8) * 255, 64)
    with pytest.raises(ValueError, match='permute'): prepare_images(torch.rand(2, 8, 8, 3), 64)
    with pytest.raises(ValueError, match='square'): prepare_images(torch.rand(2, 3, 8, 10), 64)
    with pytest.raises(FileNotFoundError, match='train_feature_net'): load_feature_net('/nonexistent/featnet')


def test_train_save_load_round_trip(tmp_path):
    x = torch.stack([pil_to_tensor(im) for im in openmoji_dataset(32, limit=6)['image']])
    net = train_feature_net(x, epochs=2, batch_size=3, in_size=32, widths=(8, 16), feat_dim=8, log=None)
    assert isinstance(net, FeatureNet) and len(net.history) == 2 and not net.training
    save_feature_net(net, tmp_path / 'tiny', note='test')
    back = load_feature_net(tmp_path / 'tiny')
    assert back.config == net.config
    assert torch.equal(extract_features(x, back), extract_features(x, net))
    assert json.loads((tmp_path / 'tiny.json').read_text())['note'] == 'test'
