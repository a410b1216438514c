"""`hdit-edu inpaint` and `hdit-edu img2img` on the shipped model (a few steps, so each test takes seconds): the kept
pixels come back exactly, the options reach `hdit_edu.editing`, and every bad file is one line on stderr."""
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hdit_edu.cli import build_parser

sys.path.insert(0, str(Path(__file__).parent))
from cli_util import run_cli, one_line_error as _one_line_error, write_edit_files  # noqa: E402


def one_line_error(argv, *fragments): return _one_line_error(argv, *fragments, command_prefix=True)


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    "An emoji at the shipped model's 64 px, a mask painting its upper half, and a few bad files."
    d = tmp_path_factory.mktemp('edit')
    write_edit_files(d)
    Image.new('L', (64, 64), 0).save(d / 'black.png')
    Image.new('RGB', (32, 32), 'white').save(d / 'small.png')
    (d / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n not really')
    return d


FAST = ['--steps', '2', '--device', 'cpu', '--threads', '1']


def test_inpaint_keeps_the_black_part_and_paints_the_white(files, tmp_path):
    out = tmp_path / 'out.png'
    status, stdout, err = run_cli(['inpaint', '--image', str(files / 'emoji.png'), '--mask', str(files / 'mask.png'),
                                   *FAST, '--resample', '1', '--out', str(out)])
    assert status == 0, err
    assert f'Wrote {out} (2048 of 4096 pixels painted, resample 1, 2 steps, seed 0)' in stdout, stdout
    a, b = np.array(Image.open(files / 'emoji.png').convert('RGB')), np.array(Image.open(out).convert('RGB'))
    assert b.shape == (64, 64, 3)
    assert (a[32:] == b[32:]).all()                                        # kept exactly
    assert np.abs(a[:32].astype(int) - b[:32]).mean() > 1                  # painted anew


def test_inpaint_options_reach_the_editing_function(files, tmp_path, monkeypatch):
    import hdit_edu.cli_sample as cli_sample
    seen = {}
    def spy(den, image, mask, **kw):
        seen.update(kw, shape=tuple(image.shape), painted=int(mask.sum()))
        return image
    monkeypatch.setattr(cli_sample, 'inpaint', spy)
    status, _, err = run_cli(['inpaint', '--image', str(files / 'emoji.png'), '--mask', str(files / 'mask.png'),
                              '--steps', '3', '--seed', '7', '--class', '1', '--cfg-scale', '2', '--resample', '2',
                              '--device', 'cpu', '--out', str(tmp_path / 'o.png')])
    assert status == 0, err
    assert (seen['steps'], seen['seed'], seen['class_cond'], seen['cfg_scale'], seen['resample']) == (3, 7, 1, 2., 2)
    assert seen['shape'] == (1, 3, 64, 64) and seen['painted'] == 2048


def test_img2img_writes_an_image_near_its_input_at_small_sigma(files, tmp_path):
    out = tmp_path / 'i2i.png'
    status, stdout, err = run_cli(['img2img', '--image', str(files / 'emoji.png'), '--sigma-start', '0.05', *FAST,
                                   '--out', str(out)])
    assert status == 0 and 'from sigma 0.05' in stdout, err
    a, b = (np.array(Image.open(f).convert('RGB')).astype(int) for f in (files / 'emoji.png', out))
    assert np.abs(a - b).mean() < 10, np.abs(a - b).mean()               # a tiny sigma barely changes it


def test_img2img_with_class_and_guidance(files, tmp_path):
    out = tmp_path / 'i2i.png'
    status, _, err = run_cli(['img2img', '--image', str(files / 'emoji.png'), '--sigma-start', '2', '--class', '0',
                              '--cfg-scale', '2', *FAST, '--out', str(out)])
    assert status == 0 and Image.open(out).size == (64, 64), err


def test_checkpoint_defaults_to_the_shipped_model():
    p = build_parser()
    for cmd in (['inpaint', '--image', 'a.png', '--mask', 'm.png'], ['img2img', '--image', 'a.png'], ['sample']):
        assert p.parse_args(cmd).checkpoint == 'openmoji64'
    assert p.parse_args(['img2img', '--image', 'a.png']).sigma_start == 2.


@pytest.mark.parametrize('case', ['missing image', 'corrupt image', 'image size', 'mask size', 'missing mask',
                                  'black mask', 'image is a folder'])
def test_bad_files_are_one_line(files, tmp_path, case):
    img, mask = str(files / 'emoji.png'), str(files / 'mask.png')
    argv, want = {
        'missing image': ([str(files / 'nope.png'), mask], ['--image', 'nope.png: no such file']),
        'corrupt image': ([str(files / 'broken.png'), mask], ['broken.png is not a readable image', 'PNG or JPEG']),
        'image size': ([str(files / 'small.png'), mask], ['is 32x32 pixels, but the model makes 64x64',
                                                          'resize or crop it to 64x64']),
        'mask size': ([img, str(files / 'small.png')], ['--mask', 'is 32x32 pixels, but the model makes 64x64']),
        'missing mask': ([img, str(files / 'nomask.png')], ['--mask', 'nomask.png: no such file']),
        'black mask': ([img, str(files / 'black.png')], ['all black: nothing to paint', 'white = paint']),
        'image is a folder': ([str(files), mask], ['is a folder: pass an image file']),
    }[case]
    one_line_error(['inpaint', '--image', argv[0], '--mask', argv[1], *FAST, '--out', str(tmp_path / 'o.png')], *want)


def test_bad_settings_are_one_line(files, tmp_path):
    img, o = str(files / 'emoji.png'), str(tmp_path / 'o.png')
    for s in ('0', '100', 'nan'):
        one_line_error(['img2img', '--image', img, '--sigma-start', s, *FAST, '--out', o],
                       '--sigma-start must lie in (0.01, 80]')
    one_line_error(['img2img', '--image', img, '--class', '99', *FAST, '--out', o], '--class must be in [0, ')
    one_line_error(['img2img', '--image', img, *FAST, '--out', str(tmp_path)], 'is a folder: pass an image file')
    one_line_error(['img2img', '--image', img, '--checkpoint', str(tmp_path / 'nope'), *FAST, '--out', o],
                   'does not exist: expected a run directory')
    one_line_error(['inpaint', '--image', img, '--mask', img, '--resample', '0', '--out', o],
                   'argument --resample: must be >= 1')
    assert not (tmp_path / 'o.png').exists()
