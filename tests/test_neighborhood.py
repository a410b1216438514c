"""Neighborhood attention: every backend of na2d (gather loop, dense and tiled masked SDPA, flex_attention) against
NATTEN, the dense reference, each other and finite differences; the settings context, the reasons a fast path is
not used, and the CPU thread helper (hdit_edu.fast_attention)."""
import itertools, sys, warnings
import pytest
import torch
from hdit_edu import fast_attention as fa
from hdit_edu.neighborhood import (na2d_dense, na2d_weights, na2d_key_index, na2d_attention_map,
                                   neighborhood_mask, window_indices, shifted_window_attention, shifted_window_mask)
from hdit_edu.fast_attention import (na2d, set_backend, describe_backend, na_mask_mod, na_block_mask, BACKENDS,
                                     use_backend, na_context)


@pytest.fixture(autouse=True)
def fresh_context():
    "Every test starts from (and leaves) the default settings of na2d."
    na_context.reset()
    yield
    na_context.reset()

CPU_BACKENDS = ('gather', 'dense', 'tiled')      # the pure-PyTorch implementations (forward and backward on CPU)


def _natten():
    try:
        import natten.functional as nf
        return nf
    except Exception as e:
        pytest.skip(f"NATTEN is not installed ({e}); `pip install --no-build-isolation natten==0.21.7` to run this")


def _natten_na2d(q, k, v, **kw):
    "NATTEN's own `na2d` (its CPU forward: the oracle), with its CPU-fallback warnings silenced."
    nf = _natten()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return nf.na2d(q, k, v, **kw)


def _qkv(shape, dtype=torch.float32, seed=0, **kw):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g, dtype=dtype).requires_grad_(kw.get('requires_grad', False))
            for _ in range(3)]


# kernel sizes 3..9 x dilations 1..3, non-square maps a little larger than kernel*dilation (NATTEN's CPU path
# fails when the kernel covers the whole map), head dims cycling through 8, 16, 32, 64.
NATTEN_CASES = [(ks, d, (ks * d + 1 + (i % 3), ks * d + 3 + 2 * (i % 2)), [8, 16, 32, 64][i % 4])
                for i, (ks, d) in enumerate(itertools.product([3, 5, 7, 9], [1, 2, 3]))]


@pytest.mark.parametrize('backend', CPU_BACKENDS)
@pytest.mark.parametrize('ks,dil,hw,hd', NATTEN_CASES)
def test_na2d_matches_natten_cpu_forward(ks, dil, hw, hd, backend):
    q, k, v = _qkv((2, *hw, 2, hd), seed=ks * 10 + dil)
    ref = _natten_na2d(q, k, v, kernel_size=ks, dilation=dil)
    out = na2d(q, k, v, ks, dil, backend=backend)
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize('backend', CPU_BACKENDS)
def test_na2d_matches_natten_with_scale(backend):
    q, k, v = _qkv((1, 13, 10, 3, 16), seed=3)
    ref = _natten_na2d(q, k, v, kernel_size=5, dilation=2, scale=0.7)
    torch.testing.assert_close(na2d(q, k, v, 5, 2, scale=0.7, backend=backend), ref, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize('backend', CPU_BACKENDS)
@pytest.mark.parametrize('hw,ks,dil', [((7, 7), 7, 1), ((9, 12), 3, 1), ((10, 16), 5, 2), ((13, 9), 3, 3),
                                       ((16, 14), 7, 2), ((24, 40), 7, 1), ((27, 19), 5, 3)])
def test_na2d_matches_dense(hw, ks, dil, backend):
    q, k, v = _qkv((2, *hw, 3, 8), dtype=torch.float64, seed=1)
    torch.testing.assert_close(na2d(q, k, v, ks, dil, backend=backend), na2d_dense(q, k, v, ks, dil),
                               atol=1e-12, rtol=1e-12)


def test_dense_reference_matches_natten():
    "The dense reference itself agrees with NATTEN (so both oracles agree with each other)."
    q, k, v = _qkv((1, 11, 14, 2, 8), seed=5)
    ref = _natten_na2d(q, k, v, kernel_size=3, dilation=3)
    torch.testing.assert_close(na2d_dense(q, k, v, 3, 3), ref, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize('shape,ks,dil,fast', [((1, 5, 4, 1, 2), 3, 1, False), ((2, 7, 6, 2, 3), 3, 2, True),
                                               ((1, 5, 6, 2, 3), 5, 1, True), ((1, 9, 10, 1, 4), 3, 3, True)])
@pytest.mark.parametrize('backend', CPU_BACKENDS)
def test_na2d_gradcheck(shape, ks, dil, fast, backend):
    "Finite differences in float64 (full Jacobian for the smallest case, random projections for the others)."
    q, k, v = _qkv(shape, dtype=torch.float64, seed=2, requires_grad=True)
    assert torch.autograd.gradcheck(lambda q, k, v: na2d(q, k, v, ks, dil, backend=backend), (q, k, v),
                                    fast_mode=fast)


@pytest.mark.parametrize('backend', CPU_BACKENDS)
@pytest.mark.parametrize('hw,ks,dil', [((8, 9), 3, 1), ((11, 10), 5, 2), ((9, 12), 3, 3), ((26, 17), 7, 1),
                                       ((16, 24), 5, 2)])
def test_na2d_gradients_match_dense_autograd(hw, ks, dil, backend):
    q, k, v = _qkv((2, *hw, 2, 8), dtype=torch.float64, seed=4, requires_grad=True)
    g = torch.randn(q.shape, dtype=torch.float64)
    got = torch.autograd.grad(na2d(q, k, v, ks, dil, scale=0.3, backend=backend), (q, k, v), g)
    ref = torch.autograd.grad(na2d_dense(q, k, v, ks, dil, scale=0.3), (q, k, v), g)
    for a, b in zip(got, ref): torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize('backend', CPU_BACKENDS)
def test_na2d_noncontiguous_inputs(backend):
    "q, k, v sliced out of one fused projection (non-contiguous views) work and give the same gradients."
    x = torch.randn(1, 9, 10, 2, 24, dtype=torch.float64, requires_grad=True)
    q, k, v = x.chunk(3, dim=-1)
    assert not q.is_contiguous()
    out = na2d(q, k, v, 3, 2, backend=backend)
    torch.testing.assert_close(out, na2d_dense(q, k, v, 3, 2))
    (gx,) = torch.autograd.grad(out.square().sum(), x)
    (gr,) = torch.autograd.grad(na2d_dense(*x.chunk(3, dim=-1), 3, 2).square().sum(), x)
    torch.testing.assert_close(gx, gr)


@pytest.mark.parametrize('block_bytes', [1, 700, 5000])
def test_na2d_row_blocks_change_nothing(block_bytes):
    "The CPU path processes cache-sized blocks of query rows; any block size gives the same values and gradients."
    q, k, v = _qkv((2, 11, 9, 2, 4), dtype=torch.float64, seed=12, requires_grad=True)
    g = torch.randn(q.shape, dtype=torch.float64)
    ref = na2d_dense(q, k, v, 3, 2)
    ref_grads = torch.autograd.grad(ref, (q, k, v), g)
    with use_backend(cpu_block_bytes=block_bytes):
        assert len(fa._row_blocks(q)) == {1: 11, 700: 11, 5000: 3}[block_bytes]   # 1152 bytes per row
        out = na2d(q, k, v, 3, 2, backend='gather')
        torch.testing.assert_close(out, ref)
        for a, b in zip(torch.autograd.grad(out, (q, k, v), g), ref_grads): torch.testing.assert_close(a, b)
        assert torch.autograd.gradcheck(lambda q, k, v: na2d(q, k, v, 3, 2, backend='gather'), (q, k, v),
                                        fast_mode=True)
    assert len(fa._row_blocks(q)) == 1                         # restored: 1 MiB holds the whole map


@pytest.mark.parametrize('backend', CPU_BACKENDS)
@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_na2d_low_precision(dtype, backend):
    q, k, v = _qkv((1, 10, 12, 2, 16), seed=6)
    ref = na2d_dense(q.double(), k.double(), v.double(), 5, 2)
    ql, kl, vl = (t.to(dtype).requires_grad_() for t in (q, k, v))
    out = na2d(ql, kl, vl, 5, 2, backend=backend)
    assert out.dtype == dtype
    torch.testing.assert_close(out.double(), ref, atol=3e-2, rtol=3e-2)
    out.float().square().sum().backward()
    assert all(t.grad is not None and t.grad.dtype == dtype and torch.isfinite(t.grad).all() for t in (ql, kl, vl))


def test_na2d_memory_saved_for_backward_is_linear():
    "What the autograd graph keeps is q, k, v and the [k², ...] probabilities: no N×N tensor anywhere."
    h = w = 24
    q, k, v = _qkv((1, h, w, 2, 8), requires_grad=True)
    out = na2d(q, k, v, 5, backend='gather')
    saved = out.grad_fn.saved_tensors
    assert max(t.numel() for t in saved) == 25 * h * w * 2      # the probabilities: k² per query and head
    assert sum(t.numel() for t in saved) < 4 * 25 * h * w * 2   # far below N² * heads = 663,552


@pytest.mark.parametrize('bad,msg', [
    (dict(kernel_size=4), 'odd'), (dict(kernel_size=0), 'odd'), (dict(kernel_size=5, dilation=2), 'larger'),
    (dict(kernel_size=9), 'larger'), (dict(kernel_size=3, dilation=0), '>= 1'),
    (dict(kernel_size=3.0), 'int'), (dict(kernel_size=3, backend='cuda'), "backend must be one of")])
def test_na2d_bad_arguments(bad, msg):
    x = torch.randn(1, 8, 9, 2, 4)
    with pytest.raises((ValueError, TypeError), match=msg): na2d(x, x, x, **bad)


def test_na2d_bad_shapes():
    x = torch.randn(1, 8, 9, 2, 4)
    with pytest.raises(ValueError, match='5 dimensions'): na2d(x[0], x[0], x[0], 3)
    with pytest.raises(ValueError, match='5 dimensions'): na2d(x.flatten(3), x.flatten(3), x.flatten(3), 3)
    with pytest.raises(ValueError, match='same shape'): na2d(x, x[:, :, :8], x, 3)
    with pytest.raises(ValueError, match='same shape'): na2d(x, x, x[..., :2], 3)
    with pytest.raises(ValueError, match='dtype'): na2d(x, x.double(), x, 3)
    with pytest.raises(TypeError, match='Tensor'): na2d(x, x.numpy(), x, 3)


# ---- backend choice ------------------------------------------------------------------------------------------

def test_auto_backend_on_cpu_never_calls_natten(monkeypatch):
    _natten()
    import natten.functional as nf
    def boom(*a, **k): raise AssertionError('NATTEN must not be called on CPU in auto mode')
    monkeypatch.setattr(nf, 'na2d', boom)
    q, k, v = _qkv((1, 8, 8, 2, 4), requires_grad=True)
    na2d(q, k, v, 3).sum().backward()          # trains on CPU through the pure-PyTorch path
    assert q.grad is not None


def test_auto_backend_uses_natten_when_supported_and_says_so_once(monkeypatch):
    "Simulates a CUDA machine: when NATTEN supports the call, na2d hands it to natten.functional.na2d, warning once."
    _natten()
    import natten.functional as nf
    calls = []
    real = nf.na2d
    def spy(q, k, v, **kw):
        calls.append(kw)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            return real(q, k, v, **kw)
    monkeypatch.setattr(nf, 'na2d', spy)
    monkeypatch.setattr(fa, '_natten_reason', lambda q, k, v: '')   # as if NATTEN had a fused kernel for this
    assert not na_context.natten_announced
    q, k, v = _qkv((1, 9, 10, 2, 8))
    with pytest.warns(UserWarning, match="using NATTEN's fused na2d"):
        out = na2d(q, k, v, 3, 2, scale=0.5)
    assert calls == [dict(kernel_size=3, dilation=2, scale=0.5)]
    torch.testing.assert_close(out, na2d(q, k, v, 3, 2, scale=0.5, backend='torch'), atol=2e-5, rtol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter('error')         # the second call must not warn again
        na2d(q, k, v, 3, 2, scale=0.5)
    assert len(calls) == 2


def test_forced_backends(monkeypatch):
    _natten()
    q, k, v = _qkv((1, 9, 10, 2, 8))
    na_context.natten_announced = True
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        torch.testing.assert_close(na2d(q, k, v, 3, backend='natten'), na2d(q, k, v, 3, backend='torch'),
                                   atol=2e-5, rtol=1e-5)
    monkeypatch.setattr(fa, '_natten_reason', lambda q, k, v: '')
    import natten.functional as nf
    monkeypatch.setattr(nf, 'na2d', lambda *a, **k: (_ for _ in ()).throw(AssertionError('called NATTEN')))
    with use_backend('torch'):                # wins over 'auto' even where NATTEN would be used
        na2d(q, k, v, 3)
    set_backend('torch')                      # the same until changed again
    na2d(q, k, v, 3)
    set_backend('auto')
    with pytest.raises(AssertionError, match='called NATTEN'): na2d(q, k, v, 3)
    with pytest.raises(ValueError, match='no backward pass on CPU'):
        na2d(q.requires_grad_(), k, v, 3, backend='natten')
    with pytest.raises(ValueError): set_backend('fast')


@pytest.fixture
def no_natten(monkeypatch):
    "NATTEN hidden from imports (and the cached import check redone), as on a machine without it."
    for name in [m for m in sys.modules if m == 'natten' or m.startswith('natten.')]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, 'natten', None)          # `import natten` raises ImportError
    fa._natten_import.cache_clear()
    yield
    fa._natten_import.cache_clear()


def test_forcing_natten_without_natten_says_how_to_install(no_natten):
    x = torch.randn(1, 8, 8, 2, 4)
    assert fa._natten_import()[0] is None and 'NATTEN is not installed' in fa._natten_import()[1]
    with pytest.raises(ImportError, match='NATTEN is not installed .*pip install natten'):
        na2d(x, x, x, 3, backend='natten')
    torch.testing.assert_close(na2d(x, x, x, 3), na2d_dense(x, x, x, 3))   # auto still works


def test_too_old_natten_is_named(monkeypatch):
    pytest.importorskip('natten')
    monkeypatch.setitem(sys.modules, 'natten.backends', None)   # NATTEN < 0.20 has no natten.backends
    fa._natten_import.cache_clear()
    try:
        nf, why = fa._natten_import()
        assert nf is None and 'is too old (need >= 0.20' in why
    finally: fa._natten_import.cache_clear()


def test_reasons_a_fast_path_is_not_used(monkeypatch):
    "Each capability check says why it fails; on CPU tensors both fused paths decline, naming the device."
    x = torch.randn(1, 8, 8, 1, 16)
    assert fa._natten_reason(x, x, x) == "its fused kernels need CUDA tensors, these are on cpu"
    assert fa._flex_reason(x).startswith("it needs CUDA tensors to be fused (these are on cpu")
    monkeypatch.setattr(fa, '_flex', lambda: None)
    assert fa._flex_reason(x) == f"torch {torch.__version__} has no flex_attention (it needs torch >= 2.5)"
    with pytest.raises(ImportError, match='has no flex_attention'): na2d(x, x, x, 3, backend='flex')


# ---- weights for visualisation ---------------------------------------------------------------------------------

@pytest.mark.parametrize('hw,ks,dil', [((9, 11), 3, 1), ((12, 10), 5, 2), ((10, 13), 3, 3)])
def test_na2d_weights_and_maps(hw, ks, dil):
    q, k, v = _qkv((2, *hw, 3, 8), dtype=torch.float64, seed=7)
    wts = na2d_weights(q, k, ks, dil, scale=0.4)
    assert wts.shape == (2, *hw, 3, ks * ks)
    torch.testing.assert_close(wts.sum(-1), torch.ones(2, *hw, 3, dtype=torch.float64))
    idx = na2d_key_index(*hw, ks, dil)
    h, w = hw
    ih, iw = window_indices(h, ks, dil), window_indices(w, ks, dil)
    for i, j, a, b in [(0, 0, 0, 0), (h - 1, w - 1, ks - 1, 1), (h // 2, 1, 2, ks - 1)]:
        assert idx[i, j, a * ks + b] == ih[i, a] * w + iw[j, b]
    dense = na2d_attention_map(wts, ks, dil)                   # [b, heads, h, w, h, w]
    assert dense.shape == (2, 3, h, w, h, w)
    assert torch.equal(dense.flatten(-2) > 0, neighborhood_mask(h, w, ks, dil).view(1, 1, h, w, h * w).expand_as(
        dense.flatten(-2)))
    out = torch.einsum('bnijkl,bklnd->bijnd', dense, v)
    torch.testing.assert_close(out, na2d(q, k, v, ks, dil, scale=0.4))
    with pytest.raises(ValueError, match='weights must be'): na2d_attention_map(wts, ks + 2, dil)


def test_na2d_weights_match_natten_scores():
    "NATTEN's CPU path returns no weights, but the output it computes from them agrees with ours."
    q, k, v = _qkv((1, 11, 12, 2, 8), seed=8)
    ref = _natten_na2d(q, k, v, kernel_size=5, dilation=2)
    out = torch.einsum('bnijkl,bklnd->bijnd', na2d_attention_map(na2d_weights(q, k, 5, 2), 5, 2), v)
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-5)


# ---- shifted windows ------------------------------------------------------------------------------------------

def _kdiff_style_mask(h, w, ws, shift):
    "The HDiT authors' rule, written out: roll by +shift, cut into windows, and in the first window row/column keep tokens with local index < shift apart from the others. Returned in original (un-rolled) token order."
    def label(n):
        r = (torch.arange(n) + shift) % n                      # rolled position of each original position
        return (r // ws) * 2 + ((r // ws == 0) & (r % ws < shift)).long()
    lh, lw = label(h), label(w)
    return ((lh[:, None] == lh[None, :])[:, None, :, None] & (lw[:, None] == lw[None, :])[None, :, None, :]).reshape(
        h * w, h * w)


def _dense(q, k, v, mask, scale):
    b, h, w, nh, d = q.shape
    q_, k_, v_ = (t.reshape(b, h * w, nh, d).transpose(1, 2) for t in (q, k, v))
    a = ((q_ @ k_.transpose(-1, -2)) * scale).masked_fill(~mask, float('-inf')).softmax(-1)
    return (a @ v_).transpose(1, 2).reshape(b, h, w, nh, d)


@pytest.mark.parametrize('hw,ws', [((8, 12), 4), ((16, 8), 8), ((6, 9), 3)])
def test_shifted_window_shift0_is_block_diagonal(hw, ws):
    q, k, v = _qkv((2, *hw, 2, 8), dtype=torch.float64, seed=9)
    h, w = hw
    r, c = torch.arange(h) // ws, torch.arange(w) // ws
    block = ((r[:, None] == r[None, :])[:, None, :, None] & (c[:, None] == c[None, :])[None, :, None, :]).reshape(
        h * w, h * w)
    torch.testing.assert_close(shifted_window_attention(q, k, v, ws), _dense(q, k, v, block, 8 ** -0.5))
    assert torch.equal(shifted_window_mask(h, w, ws, 0), block)


@pytest.mark.parametrize('hw,ws,shift', [((8, 12), 4, 2), ((8, 12), 4, 1), ((8, 12), 4, 3), ((16, 8), 8, 4),
                                         ((9, 6), 3, 1)])
def test_shifted_window_equals_dense_masked_reference(hw, ws, shift):
    q, k, v = _qkv((2, *hw, 2, 8), dtype=torch.float64, seed=10, requires_grad=True)
    h, w = hw
    ref_mask = _kdiff_style_mask(h, w, ws, shift)
    assert torch.equal(shifted_window_mask(h, w, ws, shift), ref_mask)
    out = shifted_window_attention(q, k, v, ws, shift=shift, scale=0.5)
    ref = _dense(q, k, v, ref_mask, 0.5)
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(out)
    for a, b in zip(torch.autograd.grad(out, (q, k, v), g), torch.autograd.grad(ref, (q, k, v), g)):
        torch.testing.assert_close(a, b)


def test_shifted_window_never_attends_across_the_seam():
    "A query in the first row only ever sees keys it is spatially next to (never the bottom rows rolled in)."
    q, k, v = _qkv((1, 8, 8, 1, 4), dtype=torch.float64, seed=11)
    base = shifted_window_attention(q, k, v, 4, shift=2)[0, 0, 0]
    for r in range(8):
        v2 = v.clone(); v2[0, r, 0] += 10
        moved = not torch.allclose(shifted_window_attention(q, k, v2, 4, shift=2)[0, 0, 0], base)
        assert moved == (r < 2), r                           # shift 2: window rows 0-1 for query row 0


def test_shifted_window_low_precision_and_errors():
    q, k, v = _qkv((1, 8, 8, 2, 8))
    ref = shifted_window_attention(q, k, v, 4, shift=2)
    out = shifted_window_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), 4, shift=2)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, atol=3e-2, rtol=3e-2)
    with pytest.raises(ValueError, match='cannot be cut'): shifted_window_attention(q, k, v, 3)
    with pytest.raises(ValueError, match='shift must be'): shifted_window_attention(q, k, v, 4, shift=4)
    with pytest.raises(ValueError, match='shift must be'): shifted_window_attention(q, k, v, 4, shift=-1)
    with pytest.raises(ValueError, match='same shape'): shifted_window_attention(q, k[:, :4], v, 4)
    with pytest.raises(TypeError, match='int'): shifted_window_attention(q, k, v, 4.0)


# ---- the pure-PyTorch paths: dense and tiled masked SDPA --------------------------------------------------------

def test_cpu_choice_by_size():
    "On CPU, 'auto' runs one masked SDPA up to dense_max_tokens tokens and the tiled SDPA above."
    small, large = torch.randn(1, 10, 10, 1, 4), torch.randn(1, 10, 11, 1, 4)
    assert na_context.dense_max_tokens == fa.DENSE_MAX_TOKENS == 256
    assert fa._choose_backend(torch.randn(1, 16, 16, 1, 4), small, small, 'auto') == 'dense'
    assert fa._choose_backend(torch.randn(1, 16, 17, 1, 4), small, small, 'auto') == 'tiled'
    with use_backend(dense_max_tokens=100):
        assert fa._choose_backend(small, small, small, 'auto') == 'dense'
        assert fa._choose_backend(large, large, large, 'auto') == 'tiled'
        assert fa._choose_backend(large, large, large, 'torch') == 'tiled'
        for be in ('gather', 'dense', 'tiled'): assert fa._choose_backend(large, large, large, be) == be
    assert fa._choose_backend(large, large, large, 'auto') == 'dense'      # 110 <= 256 again


@pytest.mark.parametrize('n,tile,expected', [(5, 8, 5), (8, 8, 8), (12, 8, 6), (20, 8, 10), (64, 8, 8), (13, 8, 8)])
def test_tile_length_divides_the_map_when_it_can(n, tile, expected):
    assert fa._tile_len(n, tile) == expected


@pytest.mark.parametrize('hw,ks,dil,tile', [((16, 16), 7, 1, 8), ((13, 29), 5, 2, 8), ((40, 9), 3, 3, 4),
                                            ((31, 31), 9, 1, 8), ((18, 22), 3, 4, 5)])
def test_tiled_plan_covers_every_window_exactly(hw, ks, dil, tile):
    "Each query's tile halo holds its whole window, and the tile mask allows exactly the window's keys."
    h, w = hw
    p = fa._tile_plan(h, w, ks, dil, tile, torch.device('cpu'))
    nt, L, S = p['allowed'].shape
    keys = p['k_idx'].view(nt, S)
    dense = torch.zeros(h * w, h * w, dtype=torch.bool)
    slots = p['back']                                          # each token's slot among the tiles' queries
    for token in range(h * w):
        t, i = divmod(int(slots[token]), L)
        assert int(p['q_idx'][slots[token]]) == token
        dense[token, keys[t][p['allowed'][t, i]]] = True
    assert torch.equal(dense, neighborhood_mask(h, w, ks, dil))


def test_tiled_plan_and_masks_are_cached_in_bounded_caches():
    q, k, v = _qkv((1, 24, 24, 2, 8))
    fa._tile_plan.cache_clear(); fa._tile_mask.cache_clear()
    na2d(q, k, v, 7, backend='tiled'); na2d(q, k, v, 7, backend='tiled')
    assert fa._tile_plan.cache_info().currsize == 1 and fa._tile_mask.cache_info().currsize == 1
    na2d(q.double(), k.double(), v.double(), 7, backend='tiled')
    assert fa._tile_plan.cache_info().currsize == 1 and fa._tile_mask.cache_info().currsize == 2
    for f in (fa._tile_plan, fa._tile_mask, fa._dense_mask, fa._block_mask): assert f.cache_info().maxsize <= 16


@pytest.mark.parametrize('tile', [3, 5, 12])
def test_cpu_tile_is_a_setting(tile):
    "The tile side of the tiled path comes from na_context (or use_backend); any tile gives the same numbers."
    q, k, v = _qkv((1, 24, 20, 2, 8), dtype=torch.float64, requires_grad=True)
    ref = na2d_dense(q, k, v, 5, 2)
    with use_backend('tiled', cpu_tile=tile):
        out = na2d(q, k, v, 5, 2)
        assert fa._tile_plan(24, 20, 5, 2, tile, torch.device('cpu'))['tile'] == (fa._tile_len(24, tile),
                                                                                  fa._tile_len(20, tile))
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(out)
    for a, b in zip(torch.autograd.grad(out, (q, k, v), g), torch.autograd.grad(ref, (q, k, v), g)):
        torch.testing.assert_close(a, b)


def test_tiled_memory_is_linear():
    "The tiled path keeps tiles and halos (a few times q), never an N×N tensor, for the backward."
    sizes = {}
    for n in (32, 64):
        q, k, v = _qkv((1, n, n, 2, 8), requires_grad=True)
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
            na2d(q, k, v, 7, backend='tiled')
        assert max(saved) <= max(4 * q.numel(), n * n * 14 * 14)   # tiles, halos, the (batch-shared) tile mask
        assert max(saved) < (n * n) ** 2 / 4                  # nothing N×N (16.8M entries at 64×64)
        sizes[n] = sum(saved)
    assert 3.5 < sizes[64] / sizes[32] < 4.5                  # 4× the tokens, ~4× the memory


def test_backends_agree_on_a_training_sized_call():
    "HDiT's small default: 16×16 and 32×32 tokens, kernel 7, batch 8: every CPU backend gives the same gradients."
    for n in (16, 32):
        q, k, v = _qkv((8, n, n, 2, 32), requires_grad=True, seed=n)
        g = torch.randn(q.shape)
        res = {}
        for be in CPU_BACKENDS:
            out = na2d(q, k, v, 7, scale=0.25, backend=be)
            res[be] = (out, *torch.autograd.grad(out, (q, k, v), g))
        for be in ('dense', 'tiled'):
            torch.testing.assert_close(res[be][0], res['gather'][0], atol=1e-5, rtol=1e-5)
            for a, b in zip(res[be][1:], res['gather'][1:]): torch.testing.assert_close(a, b, atol=5e-5, rtol=1e-4)


# ---- flex_attention --------------------------------------------------------------------------------------------

FLEX_CASES = [(ks, d, (ks * d + 1 + i % 3, ks * d + 2 + 3 * (i % 2))) for i, (ks, d) in
              enumerate(itertools.product([3, 5, 7, 9], [1, 2, 3, 4]))] + [(7, 1, (16, 16)), (7, 1, (24, 40)),
                                                                            (3, 1, (3, 3)), (5, 2, (10, 31))]


@pytest.mark.parametrize('ks,dil,hw', FLEX_CASES)
def test_mask_mod_is_the_neighborhood_mask(ks, dil, hw):
    "The 6-line mask predicate, evaluated on every (query, key) pair, is exactly the dense neighborhood mask."
    h, w = hw
    qi, ki = torch.arange(h * w)[:, None], torch.arange(h * w)[None, :]
    assert torch.equal(na_mask_mod(h, w, ks, dil)(0, 0, qi, ki), neighborhood_mask(h, w, ks, dil))


@pytest.mark.parametrize('ks,dil,hw', FLEX_CASES)
def test_flex_forward_matches_gather_loop(ks, dil, hw):
    q, k, v = _qkv((2, *hw, 2, 16), seed=ks + 10 * dil)
    ref = na2d(q, k, v, ks, dil, scale=0.4, backend='gather')
    torch.testing.assert_close(na2d(q, k, v, ks, dil, scale=0.4, backend='flex'), ref, atol=1e-5, rtol=1e-5)


def test_block_mask_is_cached(monkeypatch):
    "The block mask is built on the first call for a (map, kernel, dilation, device) and reused afterwards."
    flexmod = pytest.importorskip('torch.nn.attention.flex_attention')
    built = []
    real = flexmod.create_block_mask
    monkeypatch.setattr(flexmod, 'create_block_mask', lambda *a, **kw: built.append(a[3:5]) or real(*a, **kw))
    fa._block_mask.cache_clear()
    q, k, v = _qkv((1, 12, 14, 2, 16))
    a = na2d(q, k, v, 5, backend='flex')
    b = na2d(q[:, :, :, :1].expand(3, -1, -1, -1, -1), k[:, :, :, :1].expand(3, -1, -1, -1, -1),
             v[:, :, :, :1].expand(3, -1, -1, -1, -1), 5, backend='flex')   # other batch size and heads: same mask
    assert built == [(168, 168)]
    torch.testing.assert_close(b[:1], a[:, :, :, :1])
    assert na_block_mask(12, 14, 5) is na_block_mask(12, 14, 5, device=torch.device('cpu'))
    na2d(q, k, v, 5, 2, backend='flex')
    assert len(built) == 2 and fa._block_mask.cache_info().currsize == 2
    fa._block_mask.cache_clear()


def test_block_mask_skips_most_tiles():
    "At 64×64 tokens with a 7×7 window, each block of 128 queries meets at most 5 of the 32 key blocks."
    bm = na_block_mask(64, 64, 7)
    n_blocks = bm.kv_num_blocks + (bm.full_kv_num_blocks if bm.full_kv_num_blocks is not None else 0)
    assert n_blocks.max() <= 5 and n_blocks.min() >= 4
    kinds = fa.block_mask_kinds(bm)
    assert kinds.shape == (32, 32) and torch.equal((kinds > 0).sum(1), n_blocks[0, 0].cpu())


def test_block_mask_kinds_match_the_dense_mask():
    "Skipped tiles hold no allowed pair, full tiles only allowed pairs, partial tiles some of each."
    flexmod = pytest.importorskip('torch.nn.attention.flex_attention')
    h, w, ks, bs = 16, 16, 7, 4
    kinds = fa.block_mask_kinds(flexmod.create_block_mask(na_mask_mod(h, w, ks), None, None, h * w, h * w,
                                                     device='cpu', BLOCK_SIZE=bs))
    tiles = neighborhood_mask(h, w, ks).view(h * w // bs, bs, h * w // bs, bs).float().mean((1, 3))
    assert torch.equal(kinds == 0, tiles == 0) and torch.equal(kinds == 2, tiles == 1)
    assert {0, 1, 2} == set(kinds.unique().tolist())


def test_flex_has_no_cpu_backward_and_says_so():
    q, k, v = _qkv((1, 8, 8, 1, 16), requires_grad=True)
    with pytest.raises(ValueError, match='no backward pass on CPU'): na2d(q, k, v, 3, backend='flex')
    with torch.no_grad(): na2d(q, k, v, 3, backend='flex')    # forward (sampling, tests) is fine


# ---- automatic choice and its message --------------------------------------------------------------------------

@pytest.mark.parametrize('natten_ok,flex_ok,expected', [(True, True, 'natten'), (False, True, 'flex'),
                                                        (False, False, 'tiled')])
def test_auto_choice_with_faked_capabilities(monkeypatch, natten_ok, flex_ok, expected):
    "On a (faked) GPU: NATTEN's fused kernels when they support the call, else flex_attention, else pure PyTorch."
    monkeypatch.setattr(fa, '_natten_reason', lambda q, k, v: '' if natten_ok else 'NATTEN faked away')
    monkeypatch.setattr(fa, '_flex_reason', lambda q: '' if flex_ok else 'flex faked away')
    x, small = torch.randn(1, 24, 24, 1, 16), torch.randn(1, 8, 8, 1, 16)      # 576 and 64 tokens
    assert fa._choose_backend(x, x, x, 'auto') == expected
    assert fa._choose_backend(x, x, x, 'torch') == 'tiled'      # 'torch' never leaves pure PyTorch
    assert fa._choose_backend(small, small, small, 'auto') == ('natten' if natten_ok else 'dense')  # no flex
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(fa, '_probe', lambda dev: torch.empty(1, 24, 24, 1, 64, device='meta'))   # no GPU here
    msg = describe_backend('cuda')
    assert msg.startswith('neighborhood attention: ') and ' on cuda' in msg and '\n' not in msg
    assert {'natten': "NATTEN's fused kernels", 'flex': 'flex_attention (compiled; one masked SDPA up to',
            'tiled': 'pure PyTorch'}[expected] in msg
    assert ('NATTEN not used: NATTEN faked away' in msg) == (not natten_ok)       # the reasons, said
    assert ('flex_attention not used: flex faked away' in msg) == (expected == 'tiled')


def test_flex_capability_needs_cuda_and_triton():
    x = torch.randn(1, 8, 8, 1, 16)
    assert fa._flex_reason(x)                                  # CPU tensors never take the compiled flex path
    assert fa._triton_reason() in ('', "Triton is not installed (it comes with PyTorch's CUDA builds on Linux)")


def test_describe_backend():
    assert describe_backend('cpu') == (
        "neighborhood attention: pure PyTorch (one masked SDPA up to 256 tokens per map, on tiles above) on cpu; "
        "NATTEN not used: its fused kernels need CUDA tensors, these are on cpu; flex_attention not used: it needs "
        "CUDA tensors to be fused (these are on cpu; no CPU backward)")
    with use_backend(dense_max_tokens=100): assert 'one masked SDPA up to 100 tokens' in describe_backend('cpu')
    with use_backend('flex'):
        assert describe_backend('cpu') == ("neighborhood attention: flex_attention (eager, forward only) on cpu, "
                                           "set by use_backend/set_backend('flex')")
    assert na_context.backend == 'auto' 
    if not torch.cuda.is_available():
        assert 'no CUDA device' in describe_backend('cuda')
    assert describe_backend() == describe_backend('cuda' if torch.cuda.is_available() else 'cpu')


def test_set_backend_accepts_every_backend():
    try:
        for be in BACKENDS: set_backend(be); assert na_context.backend == be
    finally: set_backend('auto')
    with pytest.raises(ValueError, match="backend must be one of 'auto', 'torch', 'gather'"): set_backend('fast')


# ---- torch.compile --------------------------------------------------------------------------------------------

def test_shifted_window_attention_compiles_on_cpu():
    "torch.compile (inductor) of a shifted-window layer, forward and backward, equals the eager result."
    torch._dynamo.reset()
    q, k, v = _qkv((1, 4, 4, 1, 4), requires_grad=True)
    f = lambda q, k, v: shifted_window_attention(q, k, v, 2, shift=1, scale=0.5)
    out = torch.compile(f)(q, k, v)
    ref = f(q, k, v)
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(out)
    for a, b in zip(torch.autograd.grad(out, (q, k, v), g), torch.autograd.grad(ref, (q, k, v), g)):
        torch.testing.assert_close(a, b)


# ---- on a GPU (skipped without CUDA) ----------------------------------------------------------------------------

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')


@cuda
@pytest.mark.parametrize('hw,ks,dil', [((16, 16), 7, 1), ((24, 40), 7, 1), ((19, 23), 5, 2), ((64, 64), 7, 1)])
def test_gpu_flex_forward_and_backward_match_gather(hw, ks, dil):
    q, k, v = (t.cuda() for t in _qkv((2, *hw, 2, 64), seed=21, requires_grad=False))
    for t in (q, k, v): t.requires_grad_()
    g = torch.randn_like(q)
    res = {}
    for be in ('gather', 'flex', 'tiled'):
        out = na2d(q, k, v, ks, dil, scale=0.3, backend=be)
        res[be] = (out, *torch.autograd.grad(out, (q, k, v), g))
    for be in ('flex', 'tiled'):
        for a, b in zip(res[be], res['gather']): torch.testing.assert_close(a, b, atol=2e-4, rtol=2e-4)


@cuda
@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_gpu_flex_low_precision(dtype):
    q, k, v = (t.cuda() for t in _qkv((2, 32, 32, 4, 64), seed=22))
    ref = na2d(q, k, v, 7, backend='gather')
    ql, kl, vl = (t.to(dtype).requires_grad_() for t in (q, k, v))
    out = na2d(ql, kl, vl, 7, backend='flex')
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), ref, atol=3e-2, rtol=3e-2)
    out.float().square().sum().backward()
    assert all(t.grad.dtype == dtype and torch.isfinite(t.grad).all() for t in (ql, kl, vl))


@cuda
def test_gpu_flex_compiles_once_for_every_batch_size():
    "flex_attention is compiled once and reused: new batch sizes do not recompile (the batch dim is dynamic)."
    from torch._dynamo.utils import counters
    torch._dynamo.reset(); counters.clear()
    for b in (2, 3, 5, 8, 2):
        q = torch.randn(b, 32, 32, 2, 64, device='cuda', dtype=torch.bfloat16)
        na2d(q, q, q, 7, backend='flex')
    assert counters['stats']['unique_graphs'] <= 2            # a static first compile, then one dynamic one


@cuda
def test_gpu_auto_prefers_fused_paths():
    x = torch.randn(1, 32, 32, 2, 64, device='cuda', dtype=torch.bfloat16)
    assert fa._choose_backend(x, x, x, 'auto') in ('natten', 'flex')
    assert any(s in describe_backend('cuda') for s in ("NATTEN", 'flex_attention (compiled)'))


@pytest.mark.parametrize('backend', CPU_BACKENDS + ('auto',))
def test_na2d_on_the_meta_device(backend):
    "Shape-only runs (e.g. building a large model on the meta device) work for every pure-PyTorch backend."
    with torch.device('meta'):
        q = torch.empty(2, 24, 32, 3, 16)
        out = na2d(q, q, q, 7, backend=backend)
    assert out.is_meta and out.shape == q.shape


# ---- the settings context --------------------------------------------------------------------------------------

def test_context_reset_and_scoped_settings():
    assert (na_context.backend, na_context.dense_max_tokens, na_context.cpu_tile, na_context.cpu_block_bytes) == (
        'auto', fa.DENSE_MAX_TOKENS, fa.CPU_TILE, fa.CPU_BLOCK_BYTES)
    with pytest.raises(RuntimeError):
        with use_backend('dense', cpu_tile=4) as ctx:
            assert ctx is na_context and (ctx.backend, ctx.cpu_tile) == ('dense', 4)
            raise RuntimeError('boom')
    assert (na_context.backend, na_context.cpu_tile) == ('auto', fa.CPU_TILE)     # restored after the error
    na_context.update(backend='gather', cpu_block_bytes=1, dense_max_tokens=0)
    na_context.reset()
    assert na_context == fa.NAContext()
    for bad, msg in [(dict(backend='fast'), 'backend must be one of'), (dict(cpu_tile=0), 'cpu_tile must be an int'),
                     (dict(cpu_block_bytes=2.5), 'must be an int'), (dict(tile=8), 'unknown setting')]:
        with pytest.raises(ValueError, match=msg): na_context.update(**bad)
        with pytest.raises(ValueError, match=msg):
            with use_backend(**bad): pass
    assert na_context == fa.NAContext()


def test_settings_are_checked_when_assigned():
    "Assigning a setting goes through the same check as `update`: no silent bad backend or tile size."
    with pytest.raises(ValueError, match="backend must be one of 'auto'"): na_context.backend = 'fast'
    with pytest.raises(ValueError, match='cpu_tile must be an int >= 1, got 0'): na_context.cpu_tile = 0
    with pytest.raises(ValueError, match="unknown setting 'tile'"): na_context.update(tile=3)
    assert (na_context.backend, na_context.cpu_tile) == ('auto', fa.CPU_TILE)


def test_describe_backend_asks_the_chooser(monkeypatch):
    "The line names what `_choose_backend` picks for a large map: faking the chooser changes the line."
    monkeypatch.setattr(fa, '_choose_backend', lambda q, k, v, backend: 'gather')
    assert describe_backend('cpu').startswith('neighborhood attention: the pure-PyTorch gather loop on cpu')


def test_describe_backend_short_names_only_the_choice(monkeypatch):
    "The short form (the CLI's attention line) names what the chooser picks, without the reasons."
    assert describe_backend('cpu', short=True) == 'pure PyTorch on cpu'
    monkeypatch.setattr(fa, '_choose_backend', lambda q, k, v, backend: 'gather')
    assert describe_backend('cpu', short=True) == 'the pure-PyTorch gather loop on cpu'
