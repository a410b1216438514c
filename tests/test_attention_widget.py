"The attention window explorer: driven from code and through its widgets, checked against na2d's definitions."
import pytest
import torch
import torch.nn.functional as F
from hdit_edu.neighborhood import (na2d_attention_map, na2d_weights, neighborhood_mask, shifted_window_attention,
                                   window_indices)
from hdit_edu.explorer_widget import AttentionExplorer, hourglass_token_sizes


def na_keys(h, w, row, col, ks, dil=1):
    "The keys of query (row, col) from window_indices: the set na2d uses."
    ih, iw = window_indices(h, ks, dil)[row].tolist(), window_indices(w, ks, dil)[col].tolist()
    m = torch.zeros(h, w, dtype=torch.bool)
    for r in ih:
        for c in iw: m[r, c] = True
    return m


def sw_keys(h, w, row, col, ws, shift):
    """Keys of (row, col) under shifted-window attention, from the rolled-window picture: roll by +shift, cut into
    windows, keep rolled-in tokens apart."""
    def rolled(i, n): return (i + shift) % n
    def group(i, n):
        r = rolled(i, n)
        return (r // ws, r // ws == 0 and r % ws < shift)       # window after the roll, rolled-in or not
    m = torch.zeros(h, w, dtype=torch.bool)
    for r in range(h):
        for c in range(w):
            m[r, c] = group(r, h) == group(row, h) and group(c, w) == group(col, w)
    return m


def test_token_sizes():
    assert hourglass_token_sizes(256, 4, 3) == [(64, 64), (32, 32), (16, 16)]
    assert hourglass_token_sizes((128, 64), (4, 2), 2) == [(32, 32), (16, 16)]
    with pytest.raises(ValueError, match='multiple'): hourglass_token_sizes(100, 4, 3)


@pytest.mark.parametrize('row,col,ks,dil', [(16, 16, 7, 1), (0, 0, 7, 1), (0, 31, 7, 1), (31, 0, 5, 1),
                                            (31, 31, 3, 1), (0, 17, 7, 1), (5, 5, 7, 2), (0, 0, 5, 3),
                                            (30, 1, 7, 4), (13, 22, 9, 3)])
def test_neighborhood_highlight_is_na2d_window(row, col, ks, dil):
    ex = AttentionExplorer(image_size=128, patch_size=4, levels=3)
    ex.set(row=row, col=col, kernel_size=ks, dilation=dil)
    assert ex.token_hw == (32, 32)
    expected = na_keys(32, 32, row, col, ks, dil)
    assert torch.equal(ex.key_mask, expected)
    assert int(ex.key_mask.sum()) == ks * ks                 # inward shift: always k² keys, also in corners
    assert torch.equal(ex.key_mask.flatten(), neighborhood_mask(32, 32, ks, dil)[row * 32 + col])
    assert torch.allclose(ex.weights.sum(), torch.tensor(1.0)) and torch.equal(ex.weights > 0, expected)
    assert ex.message == ''


def test_corner_window_is_shifted_inwards():
    ex = AttentionExplorer(image_size=64, patch_size=2, levels=2, row=0, col=0, kernel_size=5)
    rows, cols = ex.key_mask.nonzero().unbind(1)
    assert rows.tolist() and set(rows.tolist()) == set(range(5)) and set(cols.tolist()) == set(range(5))
    ex.set(row=31, col=31)
    rows, cols = ex.key_mask.nonzero().unbind(1)
    assert set(rows.tolist()) == set(range(27, 32)) and set(cols.tolist()) == set(range(27, 32))


def test_global_highlights_everything_at_every_level():
    ex = AttentionExplorer(image_size=256, patch_size=4, levels=4, kind='global')
    for level, hw in enumerate([(64, 64), (32, 32), (16, 16), (8, 8)]):
        ex.set(level=level)
        assert ex.token_hw == hw and ex.key_mask.shape == hw and bool(ex.key_mask.all())


@pytest.mark.parametrize('row,col,ws,shift', [(0, 0, 8, 0), (9, 17, 8, 0), (0, 0, 8, 4), (1, 9, 8, 4),
                                              (31, 31, 8, 4), (30, 2, 4, 1), (12, 27, 16, 8)])
def test_shifted_window_highlights_the_window(row, col, ws, shift):
    ex = AttentionExplorer(image_size=128, patch_size=4, levels=3, kind='shifted-window', window_size=ws, shift=shift)
    ex.set(row=row, col=col)
    assert torch.equal(ex.key_mask, sw_keys(32, 32, row, col, ws, shift))


def test_shifted_window_highlight_matches_the_attention_itself():
    "Perturbing a key changes the query's output exactly when the key is highlighted."
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 1, 8, 8, 1, 4, dtype=torch.float64).unbind(0)
    row, col = 0, 1
    out = shifted_window_attention(q, k, v, 4, shift=2)[0, row, col]
    ex = AttentionExplorer(image_size=8, patch_size=1, levels=1, kind='shifted-window', window_size=4, shift=2,
                           row=row, col=col)
    for r in range(8):
        for c in range(8):
            v2 = v.clone(); v2[0, r, c] += 1
            changed = not torch.allclose(shifted_window_attention(q, k, v2, 4, shift=2)[0, row, col], out)
            assert changed == bool(ex.key_mask[r, c]), (r, c)


def test_level_changes_clamp_the_query_and_errors_are_explained():
    ex = AttentionExplorer(image_size=128, patch_size=4, levels=3, row=30, col=31)
    ex.set(level=2)
    assert ex.token_hw == (8, 8) and (ex.row, ex.col) == (7, 7)
    assert torch.equal(ex.key_mask, na_keys(8, 8, 7, 7, 7))
    ex.set(dilation=2)                                        # 7*2 > 8: not possible, explained
    assert 'larger' in ex.message and not ex.key_mask.any()
    ex.set(kind='shifted-window', window_size=3)              # 3 does not divide 8
    assert 'cannot be cut' in ex.message
    ex.set(kind='neighborhood', dilation=1)
    assert ex.message == '' and int(ex.key_mask.sum()) == 49
    with pytest.raises(ValueError, match='unknown setting'): ex.set(radius=3)


def test_widget_controls_drive_the_state():
    pytest.importorskip('ipywidgets')
    ex = AttentionExplorer(image_size=128, patch_size=4, levels=3)
    w = ex.widget
    assert w is ex.widget                                     # built once
    c = ex.controls
    png0 = ex._picture.value
    c['row'].value, c['col'].value = 0, 31
    assert (ex.row, ex.col) == (0, 31) and torch.equal(ex.key_mask, na_keys(32, 32, 0, 31, 7))
    assert ex._picture.value != png0 and ex._picture.value[:4] == b'\x89PNG'
    c['dilation'].value = 3
    assert torch.equal(ex.key_mask, na_keys(32, 32, 0, 31, 7, 3))
    c['level'].value = 2                                      # 8x8 map: sliders follow, query clamped
    assert c['row'].max == 7 and c['col'].max == 7 and (ex.row, ex.col) == (0, 7) == (c['row'].value, c['col'].value)
    assert 'larger' in ex.message and 'larger' in ex._status.value
    c['kind'].value = 'global'
    assert ex.key_mask.all() and c['kernel_size'].disabled and c['shift'].disabled
    c['kind'].value = 'shifted-window'; c['level'].value = 0; c['window_size'].value = 8; c['shift'].value = 4
    assert not c['shift'].disabled and torch.equal(ex.key_mask, sw_keys(32, 32, ex.row, ex.col, 8, 4))
    ex.set(row=5)                                             # code -> widget as well
    assert c['row'].value == 5


class PatchAttention:
    "Tiny stand-in implementing the attention_maps contract (neighborhood level, then global after a 2x2 merge)."
    def __init__(self, heads=2, ks=3):
        self.heads, self.ks, self.calls = heads, ks, 0
        self.proj = torch.randn(3, heads * 4, generator=torch.Generator().manual_seed(0))

    def attention_maps(self, x, sigma, class_cond=None):
        self.calls += 1
        assert x.dim() == 4 and sigma.shape == (x.shape[0],)
        f = F.avg_pool2d(x, 4).permute(0, 2, 3, 1) @ self.proj
        t = f.unflatten(-1, (self.heads, 4))
        fine = na2d_attention_map(na2d_weights(t, t, self.ks), self.ks)
        g = F.avg_pool2d(f.permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1).unflatten(-1, (self.heads, 4))
        s = torch.einsum('bijnd,bklnd->bnijkl', g, g)
        coarse = s.flatten(-2).softmax(-1).view_as(s)
        h, w = t.shape[1:3]
        return [dict(level=0, layer=0, kind='neighborhood', token_hw=(h, w), weights=fine),
                dict(level=1, layer=0, kind='global', token_hw=(h // 2, w // 2), weights=coarse)]


def test_model_mode_shows_the_models_weights():
    model = PatchAttention()
    img = torch.rand(3, 48, 40) * 2 - 1
    ex = AttentionExplorer(model=model, image=img, sigma=2.0)
    assert model.calls == 1 and ex.token_hw == (12, 10) and ex.image_size == (48, 40)
    for layer, head, row, col in [(0, 0, 0, 0), (0, 1, 11, 9), (0, 1, 5, 0), (1, 0, 2, 3), (1, 1, 5, 4)]:
        ex.set(layer=layer, head=head, row=row, col=col)
        assert torch.equal(ex.weights, ex.maps[layer]['weights'][0, head, row, col])
        if layer == 0: assert torch.equal(ex.key_mask, na_keys(12, 10, row, col, 3))
        else: assert ex.key_mask.all() and ex.token_hw == (6, 5)
    assert model.calls == 1                                   # maps computed once
    png = ex.to_png()
    assert png[:4] == b'\x89PNG'


def test_model_mode_widget():
    pytest.importorskip('ipywidgets')
    ex = AttentionExplorer(model=PatchAttention(heads=3), image=torch.zeros(1, 3, 32, 32))
    _ = ex.widget
    c = ex.controls
    assert set(c) == {'layer', 'head', 'row', 'col'} and c['head'].max == 2
    c['layer'].value = 1
    assert ex.layer == 1 and c['row'].max == 3 and ex.token_hw == (4, 4)
    c['head'].value, c['row'].value, c['col'].value = 2, 1, 3
    assert torch.equal(ex.weights, ex.maps[1]['weights'][0, 2, 1, 3])


def test_model_mode_needs_an_image():
    with pytest.raises(ValueError, match='needs an image'): AttentionExplorer(model=PatchAttention())


def test_with_real_hdit():
    "The explorer on HDiT.attention_maps (hdit_edu.model): neighborhood layers highlight exactly na2d's window."
    model_mod = pytest.importorskip('hdit_edu.model')
    if not hasattr(model_mod.HDiT, 'attention_maps'): pytest.skip('HDiT.attention_maps not available')
    cfg = model_mod.HDiTConfig([model_mod.LevelConfig(1, 32, 'neighborhood', d_head=16, kernel_size=5),
                                model_mod.LevelConfig(1, 64, 'global', d_head=16)],
                               patch_size=2, input_size=32, mapping_width=32)
    torch.manual_seed(0)
    model = model_mod.HDiT(cfg).eval()
    ex = AttentionExplorer(model=model, image=torch.rand(3, 32, 32) * 2 - 1, sigma=1.0)
    kinds = [m['kind'] for m in ex.maps]
    assert 'neighborhood' in kinds and 'global' in kinds
    i = kinds.index('neighborhood')
    for row, col in [(0, 0), (15, 15), (7, 2)]:
        ex.set(layer=i, head=1, row=row, col=col)
        assert ex.token_hw == (16, 16)
        assert torch.equal(ex.key_mask, na_keys(16, 16, row, col, 5))
        assert torch.allclose(ex.weights.sum(), torch.tensor(1.0), atol=1e-5)
    ex.set(layer=kinds.index('global'))
    assert ex.token_hw == (8, 8) and ex.key_mask.all()


def test_model_input_is_what_the_model_sees():
    "With model_input= the model gets that tensor (e.g. the noised, c_in-scaled image) while the image is drawn."
    seen = []
    class Spy(PatchAttention):
        def attention_maps(self, x, sigma, class_cond=None):
            seen.append((x.clone(), class_cond)); return super().attention_maps(x, sigma, class_cond)
    img = torch.rand(3, 32, 32) * 2 - 1
    ex = AttentionExplorer(model=Spy(), image=img, model_input=img * 2, class_cond=torch.tensor([1]))
    assert torch.equal(seen[0][0], (img * 2)[None]) and torch.equal(seen[0][1], torch.tensor([1]))
    assert torch.equal(ex.image, img)
    AttentionExplorer(model=Spy(), image=img)
    assert torch.equal(seen[1][0], img[None])


def test_explorer_module_has_no_patch_leftovers():
    from hdit_edu import explorer_widget as ew
    assert getattr(ew, 'set', set) is set and not [k for k, v in vars(ew).items() if v is None]
    for name in ('plot', 'update', 'to_png', 'describe', 'widget', 'token_hw', 'layer_names'):
        assert not hasattr(ew, name) and hasattr(ew.AttentionExplorer, name)
