"""RoPE under bf16: hdit_edu keeps positions and angles in float32 (decision, issue 17).

k-diffusion's global-attention block casts the positions to the model's dtype before computing the angles; under
bf16 autocast that rounds angles of up to 10*pi rad to 8 significant bits. These tests measure both choices against
a float64 reference and pin the one hdit_edu makes."""
import torch
import pytest
from hdit_edu.rope import AxialRoPE, apply_rotary_emb
from hdit_edu.patching import make_axial_pos


@pytest.mark.parametrize('n', [16, 64])
def test_angles_stay_float32_under_bf16_autocast(n):
    rope, pos = AxialRoPE(32, 4), make_axial_pos(n, n)
    ref = rope(pos.double())
    with torch.autocast('cpu', dtype=torch.bfloat16):
        ours = rope(pos)
    assert ours.dtype == torch.float32
    assert (ours.double() - ref).abs().max() < 1e-5                        # float32 rounding only
    cast_first = rope(pos.to(torch.bfloat16)).double()                      # angles from bf16 positions
    assert (cast_first - ref).abs().max() > 0.05                            # measured 0.095 (16²), 0.107 (64²)


@pytest.mark.parametrize('n', [16, 64])
def test_bf16_rotation_error_is_the_inputs_rounding_not_the_angles(n):
    rope, pos = AxialRoPE(32, 4), make_axial_pos(n, n)
    ref = rope(pos.double())
    q = torch.randn(2, n, n, 4, 64, generator=torch.Generator().manual_seed(0))
    exact = apply_rotary_emb(q.double(), ref)
    rounding = (q.bfloat16().double() - q.double()).abs().max()             # what bf16 inputs cost anyway
    ours = apply_rotary_emb(q.bfloat16(), rope(pos)).double()
    cast_first = apply_rotary_emb(q.bfloat16(), rope(pos.to(torch.bfloat16))).double()
    err_ours, err_cast = (ours - exact).abs().max(), (cast_first - exact).abs().max()
    assert err_ours < 2 * rounding                                          # measured 1.3-1.5x the rounding
    assert err_cast > 10 * err_ours                                         # measured 16-20x worse
