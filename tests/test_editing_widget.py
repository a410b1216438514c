"""The editing widget: its computation on the shipped model, the brush grid, uploads, and the controls driven as a
user does."""
import io
from datetime import datetime, timezone
import pytest
import torch
from PIL import Image
from hdit_edu.data import openmoji_group
from hdit_edu.editing import inpaint, img2img
from hdit_edu.editing_widget import (EDITING_EMOJI, MASK_PRESETS, ImageEditor, brush_mask, emoji_image, preset_cells,
                                     read_image, run_edit)

STEPS = 4   # few steps: each test takes a second or two on one CPU thread


@pytest.fixture(scope='module')
def den():
    from hdit_edu.model_files import load_pretrained
    from hdit_edu.diffusion import Denoiser
    torch.set_num_threads(1)
    return Denoiser(load_pretrained('openmoji64'))


@pytest.fixture
def editor(den):
    return ImageEditor(den, steps=STEPS, resample=1, run=False)


def _png(size=(40, 30), colour=(0, 128, 255, 255), fmt='PNG'):
    buf = io.BytesIO(); Image.new('RGBA', size, colour).save(buf, format=fmt); return buf.getvalue()


def test_known_pixels_come_back_exactly_and_equal_inpaint(den):
    image, mask = emoji_image('1F600'), brush_mask(preset_cells('left half'))
    out = run_edit(den, image, mask, 'inpaint', class_cond=0, steps=STEPS, resample=2, seed=3, previews=3)
    assert torch.equal(out['result'][:, ~mask], image[:, ~mask])                   # bit for bit
    assert (out['result'][:, mask] - image[:, mask]).abs().max() > 0.1            # and it did paint
    ref = inpaint(den, image, mask, steps=STEPS, resample=2, seed=3, class_cond=0)[0]
    assert torch.equal(out['result'], ref)                                         # it is inpaint, nothing else
    steps = [i for i, _, _ in out['previews']]
    assert len(steps) == 3 and steps[0] == 0 and steps[-1] == STEPS - 1
    sigmas = [s for _, s, _ in out['previews']]
    assert sigmas == sorted(sigmas, reverse=True) and sigmas[0] == pytest.approx(80.)
    for _, _, d in out['previews']:                                               # previews keep the known pixels
        assert d.shape == (3, 64, 64) and torch.equal(d[:, ~mask], image[:, ~mask])


def test_the_editor_run_is_run_edit_of_its_state(editor, den):
    editor.set(emoji='1F418', mask='centre', cfg_scale=2., seed=5).toggle(0, 0)
    editor.run()
    assert editor.message == '' and editor.label == 1 and editor.class_label == 1    # 🐘 is 'nature'
    ref = run_edit(den, emoji_image('1F418'), editor.mask, steps=STEPS, resample=1, class_cond=1, cfg_scale=2.,
                   seed=5)
    assert torch.equal(editor.output['result'], ref['result'])
    m = editor.mask
    assert torch.equal(editor.output['result'][:, ~m], editor.image[:, ~m])
    assert 'class nature' in editor.output['caption'] and 'guidance 2' in editor.output['caption']
    assert editor.to_png()[:8] == b'\x89PNG\r\n\x1a\n'


@pytest.mark.parametrize('row,col', [(0, 0), (2, 5), (7, 7), (7, 0)])
def test_a_brush_cell_is_the_block_it_covers(editor, row, col):
    editor.set(mask='nothing')
    assert not editor.mask.any()
    editor.toggle(row, col)
    expected = torch.zeros(64, 64, dtype=torch.bool)
    expected[row * 8:(row + 1) * 8, col * 8:(col + 1) * 8] = True
    assert torch.equal(editor.mask, expected) and editor.mask_name == 'custom'
    editor.toggle(row, col)
    assert not editor.mask.any()


def test_presets_and_grid_sizes():
    box = torch.zeros(64, 64, dtype=torch.bool); box[16:48, 16:48] = True
    assert torch.equal(brush_mask(preset_cells('centre')), box)                 # the editing notebook's square
    left = brush_mask(preset_cells('left half'))
    assert left[:, :32].all() and not left[:, 32:].any()
    top = brush_mask(preset_cells('top half', grid=4), size=64)
    assert top[:32].all() and not top[32:].any()
    assert brush_mask(preset_cells('everything')).all() and not brush_mask(preset_cells('nothing')).any()
    assert set(MASK_PRESETS) >= {'centre', 'left half', 'right half', 'top half', 'bottom half'}
    for bad in [lambda: preset_cells('circle'), lambda: brush_mask(torch.ones(8, 4, dtype=torch.bool)),
                lambda: brush_mask(torch.ones(7, 7, dtype=torch.bool), 64)]:
        with pytest.raises(ValueError) as e: bad()
        assert '\n' not in str(e.value)


def test_uploads_good_and_bad(editor):
    x = read_image(_png())
    assert x.shape == (3, 64, 64) and x.min() >= -1 and x.max() <= 1
    assert torch.allclose(x[:, 32, 32], torch.tensor([-1., 0.0039, 1.]), atol=0.01)   # the colour, resized
    before = editor.image.clone()
    for bad in [b'', b'hello, not an image', _png()[:50], b'GIF89a' + bytes(20)]:
        editor.upload(bad, 'bad.png')
        assert editor.message.startswith('bad.png: ') and '\n' not in editor.message, editor.message
        assert '<' not in editor.message and 'upload a PNG or JPEG' in editor.message
        assert torch.equal(editor.image, before) and editor.emoji == EDITING_EMOJI[13]   # image unchanged
    editor.upload(_png(colour=(255, 0, 0, 255), fmt='PNG'), 'red.png')
    assert editor.message == '' and editor.emoji is None and editor.source == 'red.png'
    assert editor.class_label == editor.num_classes                          # 'same' for an upload: no class
    editor.run()
    m = editor.mask
    assert torch.equal(editor.output['result'][:, ~m], editor.image[:, ~m]) and 'no class' in editor.output['caption']


def test_img2img_path(editor, den):
    editor.set(mode='img2img', sigma_start=1.5, class_cond=2, steps=3)
    editor.run()
    assert editor.message == ''
    ref = img2img(den, emoji_image(EDITING_EMOJI[13]), sigma_start=1.5, steps=3, class_cond=2)[0]
    assert torch.equal(editor.output['result'], ref)
    assert len(editor.output['previews']) == 3 and editor.output['previews'][0][1] == pytest.approx(1.5)
    assert 'img2img from σ = 1.5' in editor.output['caption'] and 'food' in editor.output['caption']
    editor.set(sigma_start=500.)                                                 # out of range: a one-line message
    editor.run()
    assert 'sigma_start' in editor.message and '\n' not in editor.message


def test_errors_are_one_line(editor, den):
    editor.set(mask='nothing')
    editor.run()
    assert 'mask is empty' in editor.message and editor.output is None
    with pytest.raises(ValueError, match='unknown setting'): editor.set(colour='red')
    with pytest.raises(ValueError, match='mode'): editor.set(mode='outpaint')
    with pytest.raises(ValueError, match='mode'): run_edit(den, emoji_image('1F600'), mode='paint')


def test_the_twenty_emoji_render():
    assert len(EDITING_EMOJI) == 20 == len(set(EDITING_EMOJI))
    groups = [openmoji_group(h) for h in EDITING_EMOJI]
    assert set(groups) == {'faces', 'nature', 'food'}
    x = emoji_image(EDITING_EMOJI[0])
    assert x.shape == (3, 64, 64) and x.min() < -0.5 and x[:, 0, 0].tolist() == [1., 1., 1.]   # ink on white


def test_widget_controls_drive_the_state(den):
    pytest.importorskip('ipywidgets')
    ed = ImageEditor(den, steps=STEPS, resample=1)
    assert ed.widget is not None                                              # builds the view
    assert ed._picture.value[:4] == b'\x89PNG' and ed._input.value[:4] == b'\x89PNG'
    ed._cells[0][7].value = True                                              # a click on a brush cell
    assert ed.cells[0, 7] and ed.mask_name == 'custom' and ed.controls['mask'].value == 'custom'
    assert ed._cells[0][7].button_style == 'danger'
    ed.controls['mask'].value = 'top half'                                    # a preset redraws the grid
    assert ed._cells[0][0].value and not ed._cells[7][0].value and not ed.cells[4:].any()
    ed.controls['emoji'].value = EDITING_EMOJI[1]
    assert torch.equal(ed.image, emoji_image(EDITING_EMOJI[1])) and ed.class_label == 2
    ed.controls['mode'].value = 'img2img'
    assert not ed.controls['sigma_start'].disabled and ed.controls['resample'].disabled
    ed.controls['class_cond'].value = 0; ed.controls['steps'].value = 3; ed.controls['seed'].value = 9
    before = ed._picture.value
    ed._run_button.click()
    assert ed._picture.value != before and ed.output['caption'] in ed._caption.value
    assert 'class faces' in ed._caption.value and '3 steps, seed 9' in ed._caption.value
    ed._upload.value = ({'name': 'x.jpg', 'type': 'image/jpeg', 'size': 6, 'content': memoryview(b'broken'),
                         'last_modified': datetime.now(timezone.utc)},)       # a bad upload: one red line
    assert 'x.jpg: could not read' in ed._message.value and 'color' in ed._message.value
    ed.set(seed=1)
    assert ed._message.value == '' and ed.controls['seed'].value == 1          # set from code moves the control
    bundle = ed._repr_mimebundle_()
    assert {'image/png', 'application/vnd.jupyter.widget-view+json'} <= set(bundle)
    assert bundle['text/plain'].startswith('ImageEditor: ') and 'HBox' not in bundle['text/plain']
