"make_axial_pos against k-diffusion's formula, including a pixel aspect ratio other than 1."
import itertools
import pytest
import torch
from hdit_edu.patching import make_axial_pos, downscale_pos


def kd_make_axial_pos(h, w, pixel_aspect_ratio=1.0, align_corners=False):
    "k-diffusion's `bounding_box` + `make_axial_pos` (k_diffusion/models/axial_rope.py), written out for the test."
    ar = w / (h * pixel_aspect_ratio)                    # w_adj = w, h_adj = h * pixel_aspect_ratio
    y_min, y_max, x_min, x_max = -1.0, 1.0, -1.0, 1.0
    if ar > 1: y_min, y_max = -1 / ar, 1 / ar
    elif ar < 1: x_min, x_max = -ar, ar
    def centers(a, b, n):
        e = torch.linspace(a, b, n + 1)
        return (e[:-1] + e[1:]) / 2
    if align_corners: hp, wp = torch.linspace(y_min, y_max, h), torch.linspace(x_min, x_max, w)
    else: hp, wp = centers(y_min, y_max, h), centers(x_min, x_max, w)
    return torch.stack(torch.meshgrid(hp, wp, indexing='ij'), dim=-1)


@pytest.mark.parametrize('h,w,par,align', itertools.product([2, 4, 6], [4, 8], [0.5, 1.0, 2.0, 3.0], [False, True]))
def test_make_axial_pos_matches_k_diffusion(h, w, par, align):
    torch.testing.assert_close(make_axial_pos(h, w, par, align_corners=align), kd_make_axial_pos(h, w, par, align))


def test_pixel_aspect_ratio_is_pixel_height_over_width():
    tall = make_axial_pos(2, 4, pixel_aspect_ratio=2.0)      # 2x4 pixels, each twice as tall as wide: square picture
    assert tall[:, 0, 0].tolist() == [-0.5, 0.5] and tall[0, :, 1].tolist() == [-0.75, -0.25, 0.25, 0.75]
    wide = make_axial_pos(4, 4, pixel_aspect_ratio=0.5)      # 4x4 pixels, each twice as wide as tall: rows shrink
    torch.testing.assert_close(wide[:, 0, 0], torch.tensor([-0.375, -0.125, 0.125, 0.375]))
    torch.testing.assert_close(downscale_pos(make_axial_pos(4, 8, 2.0)), make_axial_pos(2, 4, 2.0))
