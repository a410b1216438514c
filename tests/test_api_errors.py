"""Nothing silent (issue 28): each plausible mistake with the Python API is one line that names the argument and
the fix, or simply works where the intent is clear (a PIL image, a class name, numpy counts, a bfloat16 model)."""
import warnings
import numpy as np
import pytest
import torch
from PIL import Image
from hdit_edu.model import HDiT, HDiTConfig, small_hdit_config
from hdit_edu.model_files import load_pretrained, load_model, save_model, PRETRAINED_DIR
from hdit_edu.sampling import sample, check_cfg_scale, GaussianMixtureDenoiser
from hdit_edu.editing import inpaint, img2img
from hdit_edu.data import image_grid, show_images, pil_to_tensor, openmoji_dataset

torch.set_num_threads(1)
NAMES = ['faces', 'nature', 'food']


@pytest.fixture(scope='module')
def om():
    "The shipped 64 px model, three classes."
    return load_pretrained('openmoji64')


@pytest.fixture
def img():
    torch.manual_seed(0)
    return torch.rand(1, 3, 64, 64) * 2 - 1


@pytest.fixture
def box():
    m = torch.zeros(64, 64, dtype=torch.bool); m[16:48, 16:48] = True
    return m


def one_line(excinfo):
    msg = str(excinfo.value)
    assert '\n' not in msg, msg
    return msg


def no_warnings(fn):
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        return fn()


# 1. sizes other than the one the model was trained at
@pytest.mark.parametrize('size', [32, 48, 128, (64, 32)])
def test_sampling_at_another_size_warns_once(om, size):
    with pytest.warns(UserWarning) as rec:
        x = sample(om, 1, size, steps=1, class_cond=0)
    assert len(rec) == 1 and rec[0].filename == __file__          # one warning, pointing at the caller's line
    msg = str(rec[0].message)
    assert '\n' not in msg and 'trained at 64x64 px' in msg and 'pass size=64' in msg, msg
    assert x.shape[-2:] == ((size, size) if isinstance(size, int) else size)


def test_the_trained_size_does_not_warn_and_impossible_sizes_still_fail(om, img, box):
    no_warnings(lambda: sample(om, 1, 64, steps=1, class_cond=0))
    no_warnings(lambda: img2img(om, img, steps=1))
    with pytest.raises(ValueError, match='multiples of') as e: sample(om, 1, 60, steps=1, class_cond=0)
    one_line(e)


def test_editing_at_another_size_warns_once(om):
    small, mask = torch.zeros(1, 3, 32, 32), torch.ones(32, 32, dtype=torch.bool)
    for fn in (lambda: img2img(om, small, steps=1), lambda: inpaint(om, small, mask, steps=1)):
        with pytest.warns(UserWarning, match=r'image 32x32: this model was trained at 64x64 px') as rec: fn()
        assert len(rec) == 1 and rec[0].filename == __file__


# 2. guidance scale, empty masks, guidance towards no class
@pytest.mark.parametrize('bad', [-5, -0.1, 100.5, 1e30, float('nan'), float('inf'), 'strong', None, True])
def test_cfg_scale_is_one_shared_rule(om, img, bad):
    pattern = r'cfg_scale must be a finite number from 0 to 100 \(1: no guidance, 0: unconditional'
    with pytest.raises(ValueError, match=pattern): check_cfg_scale(bad)
    for fn in (lambda: sample(om, 1, 64, steps=1, class_cond=0, cfg_scale=bad),
               lambda: img2img(om, img, steps=1, class_cond=0, cfg_scale=bad)):
        with pytest.raises(ValueError, match=pattern) as e: fn()
        one_line(e)


def test_cfg_scale_bounds_and_numbers_are_accepted():
    assert [check_cfg_scale(v) for v in (0, 1, 3.5, 100, np.float32(2.), torch.tensor(4.))] == [0., 1., 3.5, 100., 2., 4.]


def test_an_all_false_mask_is_refused(om, img):
    with pytest.raises(ValueError, match='mask is all False: nothing to inpaint; pass a mask with True where') as e:
        inpaint(om, img, torch.zeros(64, 64, dtype=torch.bool), steps=1)
    one_line(e)


def test_guidance_without_a_class_is_refused_by_editing_as_by_sample(om, img, box):
    want = r"cfg_scale=3 guides towards a class or prompt, but none was given .* pass class_cond= \(0 faces, 1 nature"
    for fn in (lambda: img2img(om, img, steps=1, cfg_scale=3.), lambda: inpaint(om, img, box, steps=1, cfg_scale=3.)):
        with pytest.raises(ValueError, match=want) as e: fn()
        one_line(e)
    with pytest.raises(ValueError, match='pass class_cond='): sample(om, 1, 64, steps=1, cfg_scale=3.)
    img2img(om, img, steps=1, cfg_scale=3., class_cond=1)                  # with a class: guided
    img2img(om, img, steps=1, cfg_scale=0.)                                # 0 = unconditional: what no class is


def test_guidance_on_a_text_model_needs_a_prompt():
    torch.manual_seed(0)
    m = HDiT(small_hdit_config(16, width=32, depths=(1, 1), patch_size=2, text_vocab=['red', 'fox'], text_width=32,
                               text_depth=1, text_max_len=4))
    with pytest.raises(ValueError, match=r'none was given .* pass prompt=, or leave cfg_scale=1') as e:
        sample(m, 1, 16, steps=1, cfg_scale=3.)
    one_line(e)
    with pytest.raises(ValueError, match='pass prompt='): img2img(m, torch.zeros(3, 16, 16), steps=1, cfg_scale=3.)
    sample(m, 1, 16, steps=1, cfg_scale=3., prompt='red fox')


# 3. raw exceptions that became one line, or just work
def test_pil_images_and_masks_are_accepted(om, box):
    ds = openmoji_dataset(64, limit=2)
    pil = ds[0]['image']
    x = pil_to_tensor(pil)[None]
    torch.testing.assert_close(img2img(om, pil, steps=2), img2img(om, x, steps=2), rtol=0, atol=0)
    torch.testing.assert_close(img2img(om, [ds[0]['image'], ds[1]['image']], steps=2),
                               img2img(om, torch.stack([x[0], pil_to_tensor(ds[1]['image'])]), steps=2))
    rgba = Image.new('RGBA', (64, 64), (0, 0, 0, 0))                        # transparent: composited on white
    assert (inpaint(om, rgba, box, steps=1)[..., ~box] == 1).all()
    pil_mask = Image.fromarray(box.numpy().astype(np.uint8) * 255)         # white paints, as on the command line
    torch.testing.assert_close(inpaint(om, pil, pil_mask, steps=1), inpaint(om, x, box, steps=1))
    with pytest.raises(TypeError, match='image must be a tensor .* or a PIL image, got str') as e:
        img2img(om, 'emoji.png', steps=1)
    one_line(e)


def test_class_names_work_and_wrong_names_list_the_names(om, img):
    a = sample(om, 2, 64, steps=1, class_cond=[0, 2])
    assert torch.equal(sample(om, 2, 64, steps=1, class_cond=['faces', 'food']), a)
    assert torch.equal(sample(om, 2, 64, steps=1, class_cond='nature'), sample(om, 2, 64, steps=1, class_cond=1))
    assert torch.equal(img2img(om, img, steps=1, class_cond='food'), img2img(om, img, steps=1, class_cond=2))
    with pytest.raises(ValueError, match="class_cond 'face' is not a class of this model: use one of 'faces', "
                                         "'nature', 'food'") as e:
        sample(om, 1, 64, steps=1, class_cond='face')
    one_line(e)
    mix = GaussianMixtureDenoiser(torch.zeros(2, 3, 8, 8), 0.1, class_conditional=True)   # no names
    with pytest.raises(ValueError, match=r"names a class, but this model carries no class names .* 0\.\.1") as e:
        sample(mix, 1, 8, steps=1, class_cond='faces')
    one_line(e)


@pytest.mark.parametrize('bad', [2.5, float('nan'), float('inf'), 0, -1, '2', None, True])
def test_counts_that_are_not_whole_numbers_are_one_line(om, img, box, bad):
    for name, fn in [('steps', lambda: sample(om, 1, 64, steps=bad, class_cond=0)),
                     ('n', lambda: sample(om, bad, 64, steps=1, class_cond=0)),
                     ('steps', lambda: img2img(om, img, steps=bad)),
                     ('resample', lambda: inpaint(om, img, box, steps=1, resample=bad))]:
        with pytest.raises(ValueError, match=f'{name} must be a whole number >= 1') as e: fn()
        assert f'{name}={bad!r}' in one_line(e)


def test_numpy_and_whole_float_counts_work(om, img, box):
    a = sample(om, 2, 64, steps=2, class_cond=0)
    for n, steps in [(np.int64(2), np.int64(2)), (2.0, 2.0), (torch.tensor(2), np.int32(2))]:
        assert torch.equal(sample(om, n, 64, steps=steps, class_cond=0), a)
    b = img2img(om, img, steps=2)
    assert torch.equal(img2img(om, img, steps=np.int64(2)), b) and torch.equal(img2img(om, img, steps=2.0), b)
    assert torch.equal(inpaint(om, img, box, steps=1, resample=np.int64(2)), inpaint(om, img, box, steps=1, resample=2))


def test_devices_that_cannot_work_are_one_line(om, img):
    if not torch.cuda.is_available():
        for fn in (lambda: sample(om, 1, 64, steps=1, class_cond=0, device='cuda'),
                   lambda: img2img(om, img, steps=1, device='cuda')):
            with pytest.raises(ValueError, match=r"device='cuda': (this PyTorch .* is built without CUDA|no CUDA GPU "
                                                 r"is visible); use device='cpu'") as e: fn()
            one_line(e)
    with pytest.raises(ValueError, match=r"device='gpu' is not a device: use 'cpu', 'cuda'") as e:
        sample(om, 1, 64, steps=1, class_cond=0, device='gpu')
    one_line(e)
    with pytest.raises(ValueError, match=r"device='meta' but the model is on cpu: move it first") as e:
        sample(om, 1, 64, steps=1, class_cond=0, device='meta')
    one_line(e)
    assert sample(om, 1, 64, steps=1, class_cond=0, device='cpu').device.type == 'cpu'


def test_other_dtypes_are_cast_to_the_model(om, img, box):
    a = img2img(om, img, steps=2)
    torch.testing.assert_close(img2img(om, img.double(), steps=2), a)               # a float64 image
    assert img2img(om, img.numpy().astype(np.float64), steps=2).dtype == torch.float32
    bf = load_pretrained('openmoji64').to(torch.bfloat16)
    x = sample(bf, 2, 64, steps=3, class_cond=[0, 1], cfg_scale=2.)
    ref = sample(om, 2, 64, steps=3, class_cond=[0, 1], cfg_scale=2.)
    assert x.dtype == torch.float32 and torch.isfinite(x).all() and (x - ref).abs().mean() < 0.2
    assert torch.isfinite(inpaint(bf, img, box, steps=2, class_cond='faces')).all()


def test_an_empty_batch_is_one_line(om, img, box):
    for fn in (lambda: img2img(om, img[:0], steps=1), lambda: inpaint(om, img[:0], box, steps=1)):
        with pytest.raises(ValueError, match=r'image is empty \(shape \[0, 3, 64, 64\]\): pass at least one') as e:
            fn()
        one_line(e)


@pytest.mark.parametrize('nrow', [0, -1, 2.5, None])
def test_image_grid_nrow(nrow):
    with pytest.raises(ValueError, match=r'nrow \(images per row\) must be a whole number >= 1') as e:
        image_grid(torch.zeros(2, 3, 8, 8), nrow=nrow)
    one_line(e)
    with pytest.raises(ValueError, match='nrow'): show_images(torch.zeros(2, 3, 8, 8), nrow=nrow)
    assert image_grid(torch.zeros(2, 3, 8, 8), nrow=np.int64(1)).size == (12, 22)


def test_seeds_outside_the_generators_range_are_one_line(om, img):
    for fn in (lambda: sample(om, 1, 64, steps=1, class_cond=0, seed=2 ** 70),
               lambda: img2img(om, img, steps=1, seed=2 ** 70), lambda: sample(om, 1, 64, steps=1, class_cond=0,
                                                                               seed=1.5)):
        with pytest.raises(ValueError, match=r'seed must be a whole number from -2\*\*63 to 2\*\*64 - 1') as e: fn()
        one_line(e)
    a = sample(om, 1, 64, steps=1, class_cond=0, seed=7)
    assert torch.equal(sample(om, 1, 64, steps=1, class_cond=0, seed=np.int64(7)), a)
    assert torch.equal(sample(om, 1, 64, steps=1, class_cond=0, seed=7.0), a)
    sample(om, 1, 64, steps=1, class_cond=0, seed=2 ** 64 - 1); sample(om, 1, 64, steps=1, class_cond=0, seed=-1)


# 4. weights that hold NaN or inf
def test_loading_non_finite_weights_says_the_training_diverged(tmp_path):
    torch.manual_seed(0)
    m = HDiT(HDiTConfig.tiny(16, num_classes=2))
    with torch.no_grad(): m.time_in_proj.weight[0, 0] = float('nan')
    save_model(m, tmp_path / 'diverged')
    with pytest.raises(ValueError, match=r'diverged\.safetensors hold NaN or infinite values \(time_in_proj\.weight\): '
                                         r'the training that made them diverged') as e:
        load_model(tmp_path / 'diverged')
    one_line(e)


def test_sampling_with_non_finite_weights_says_so(img):
    m = load_pretrained('openmoji64')
    with torch.no_grad(): m.time_in_proj.weight[0, 0] = float('inf')
    for fn in (lambda: sample(m, 1, 64, steps=1, class_cond=0), lambda: img2img(m, img, steps=1)):
        with pytest.raises(ValueError, match=r"the model's weights hold NaN or infinite values \(.*\): the training "
                                             r"that made them diverged; load an earlier checkpoint") as e: fn()
        one_line(e)


# 5. the shipped model carries its class names
def test_the_shipped_model_carries_its_class_names_in_training_order(om):
    assert om.config.class_names == NAMES and om.class_names == NAMES
    assert openmoji_dataset(64, limit=1).features['label'].names == NAMES   # the labels it was trained with
    import json
    from safetensors import safe_open
    with safe_open(str(PRETRAINED_DIR / 'openmoji64.safetensors'), framework='pt') as f:
        meta = json.loads(f.metadata()['config'])
    config = json.loads((PRETRAINED_DIR / 'openmoji64.json').read_text())   # load_model reads the .json first
    assert config.pop('class_names') == NAMES and config == meta      # the weights file's own copy: otherwise equal


# 6. editing uses sample's thread choice; the model's training mode survives every call
def test_editing_sets_threads_inside_and_restores_them(om, img, box):
    before, seen = torch.get_num_threads(), []
    img2img(om, img, steps=2, threads=1, callback=lambda d: seen.append(torch.get_num_threads()))
    inpaint(om, img, box, steps=2, threads=1, callback=lambda d: seen.append(torch.get_num_threads()))
    assert seen == [1] * 4 and torch.get_num_threads() == before


def test_the_models_training_mode_is_restored(img, box):
    m = HDiT(HDiTConfig.tiny(16, num_classes=2)).eval()
    y, mask = torch.zeros(1, 3, 16, 16), torch.ones(16, 16, dtype=torch.bool)
    sample(m, 1, 16, steps=1, class_cond=0, cfg_scale=2.)
    inpaint(m, y, mask, steps=1, class_cond=0, cfg_scale=2.); img2img(m, y, steps=1, class_cond=0)
    assert not any(x.training for x in m.modules())                    # an eval model stays in eval mode
    m.train()
    sample(m, 1, 16, steps=1, class_cond=0, cfg_scale=2.)
    assert all(x.training for x in m.modules())                        # and a training one in training mode


def test_sampling_that_cannot_fit_is_refused_before_any_noise():
    "A sampling run whose memory estimate exceeds the free memory gets one line naming what fits."
    from hdit_edu.memory import check_sample_memory, estimate_sample_memory
    from hdit_edu.model_files import load_pretrained
    model = load_pretrained('openmoji64')
    assert estimate_sample_memory(model, 32, (3, 64, 64)) < estimate_sample_memory(model, 64, (3, 64, 64))
    assert estimate_sample_memory(model, 16, (3, 64, 64)) < 2**30                     # the course's samples: small
    with pytest.raises(ValueError, match=r'sampling 100000 images of 64x64 needs about .* use n=\d+ or fewer'):
        check_sample_memory(model, 100_000, (3, 64, 64))
    with pytest.warns(UserWarning, match='trained at 64x64'), \
            pytest.raises(ValueError, match='even one image does not fit: sample a smaller size'):
        sample(model, n=1, size=4096, class_cond=0)
