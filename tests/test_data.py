"Checks of hdit_edu.data that read better as plain tests: offline behaviour, worker processes, error messages."
import os, pickle, subprocess, sys, time
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from hdit_edu.data import (openmoji_dataset, openmoji_codes, openmoji_group, render_emoji, DEFAULT_GROUPS, ImageDataset, UNLABELED, image_folder_dataset, load_hf_dataset, standardize_columns, image_grid,
                           show_images, pil_to_tensor, tensor_to_pil, image_transform, to_rgb)


def test_default_subset_is_the_three_groups_and_every_emoji_renders():
    ds = openmoji_dataset(32)
    expected = [c for c in openmoji_codes() if openmoji_group(c) in DEFAULT_GROUPS]
    assert ds['hexcode'] == expected                 # nothing was dropped as blank or multi-glyph
    assert ds.features['label'].names == list(DEFAULT_GROUPS)
    assert [DEFAULT_GROUPS[l] for l in ds['label']] == [openmoji_group(c) for c in ds['hexcode']]
    im = np.asarray(ds[0]['image'])
    assert im.shape == (32, 32, 3) and (im != 255).any(-1).mean() > 0.15   # a visible glyph, not a blank canvas


def test_openmoji_subsets_and_background():
    faces = openmoji_dataset(16, subset=['faces'])
    assert set(faces['label']) == {0} and faces.features['label'].names == ['faces']
    two = openmoji_dataset(16, subset=('food', 'faces'))     # order follows OPENMOJI_GROUPS, not the argument
    assert two.features['label'].names == ['faces', 'food']
    black = openmoji_dataset(16, subset='faces', limit=3, background=(0, 0, 0))
    assert all(np.asarray(im)[0, 0].tolist() == [0, 0, 0] for im in black['image'])
    with pytest.raises(ValueError, match='positive'): openmoji_dataset(16, limit=0)
    with pytest.raises(ValueError, match='group names'): openmoji_dataset(16, subset=[])


def test_rendering_is_fast_and_cached():
    t0 = time.perf_counter(); openmoji_dataset(24, limit=100); first = time.perf_counter() - t0
    t0 = time.perf_counter(); openmoji_dataset(24, limit=100); second = time.perf_counter() - t0
    assert first < 10 and second < 0.05, (first, second)


def _fresh_python(code, env_extra):
    env = {**os.environ, **env_extra}
    return subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True, timeout=120)


def test_hub_offline_fails_fast_with_a_helpful_message():
    code = ("import time; from hdit_edu.data import load_hf_dataset\n"
            "t = time.time()\n"
            "try: load_hf_dataset('uoft-cs/cifar10')\n"
            "except ConnectionError as e: print('ERR', round(time.time() - t, 1), e)\n")
    r = _fresh_python(code, {'HF_DATASETS_OFFLINE': '1', 'HF_HUB_OFFLINE': '1'})
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith('ERR'), r.stdout + r.stderr
    secs = float(r.stdout.split()[1])
    assert secs < 10, f"offline failure took {secs} s: it must not wait on the network"
    for hint in ('offline mode is on', 'openmoji_dataset()', 'image_folder_dataset(path)', 'HF_DATASETS_OFFLINE'):
        assert hint in r.stdout


def test_hub_offline_flag_set_after_import_is_honoured(monkeypatch):
    "`datasets` reads the flag at import; setting it later must still keep the call off the network."
    import datasets
    monkeypatch.setattr(datasets.config, 'HF_HUB_OFFLINE', False)
    monkeypatch.setenv('HF_DATASETS_OFFLINE', '1')
    t0 = time.perf_counter()
    with pytest.raises(ConnectionError, match='openmoji_dataset'): load_hf_dataset('uoft-cs/cifar10')
    assert time.perf_counter() - t0 < 10
    assert datasets.config.HF_HUB_OFFLINE is False            # restored afterwards


def test_hub_unreachable_fails_fast_and_looks_only_in_the_cache(monkeypatch):
    "Online but without a reachable hub: one short request, then the local cache only (no half-minute of retries)."
    import datasets, huggingface_hub.constants as hc
    for v in ('HF_HUB_OFFLINE', 'HF_DATASETS_OFFLINE'): monkeypatch.delenv(v, raising=False)
    monkeypatch.setattr(datasets.config, 'HF_HUB_OFFLINE', False)
    monkeypatch.setattr(hc, 'ENDPOINT', 'http://127.0.0.1:9')          # nothing listens there: refused at once
    t0 = time.perf_counter()
    with pytest.raises(ConnectionError, match='could not be reached') as e: load_hf_dataset('someone/no-such-dataset')
    assert time.perf_counter() - t0 < 10
    assert e.value.reason == 'the hub could not be reached (within 5 s) and it is not in the local cache'
    assert datasets.config.HF_HUB_OFFLINE is False                      # the forced offline mode is undone


def test_hub_says_missing_or_the_name_is_invalid(monkeypatch):
    import hdit_edu.data as data
    for v in ('HF_HUB_OFFLINE', 'HF_DATASETS_OFFLINE'): monkeypatch.delenv(v, raising=False)
    assert data._hub_status('../my_folder') == 'missing'                # not a valid repo id: no request at all
    monkeypatch.setattr(data, '_hub_status', lambda name, timeout=5.: 'missing')
    with pytest.raises(FileNotFoundError, match='check the name') as e: load_hf_dataset('someone/typo')
    assert e.value.reason == 'not a dataset on the Hugging Face hub'


def test_standardize_columns_finds_image_and_label_columns():
    import datasets
    feats = datasets.Features({'id': datasets.Value('int64'), 'pic': datasets.Image(),
                               'kind': datasets.ClassLabel(names=['a', 'b'])})
    ds = datasets.Dataset.from_dict({'id': [0, 1], 'pic': [Image.new('RGB', (4, 4))] * 2, 'kind': [1, 0]}, features=feats)
    std = standardize_columns(ds)
    assert list(std.features) == ['image', 'label'] and std['label'] == [1, 0]
    with pytest.raises(ValueError, match='image_column'):
        standardize_columns(datasets.Dataset.from_dict({'x': [1, 2]}))


@pytest.fixture
def folder(tmp_path):
    for cls, codes in [('b_food', ['1F355', '1F354']), ('a_faces', ['1F600'])]:
        (tmp_path / cls / 'nested').mkdir(parents=True)
        for c in codes: render_emoji(c, 40).save(tmp_path / cls / 'nested' / f'{c}.png')
    Image.new('L', (50, 30), 100).save(tmp_path / 'a_faces' / 'grey.jpg')          # greyscale, not square
    return tmp_path


def test_image_folder_dataset_classes_and_conversion(folder):
    ds = image_folder_dataset(folder)
    assert ds.features['label'].names == ['a_faces', 'b_food'] and ds['label'] == [0, 0, 1, 1]
    ids = ImageDataset(ds, 16, hflip=False)
    x, y = ids[0]                                     # the greyscale jpg comes first (sorted paths)
    assert x.shape == (3, 16, 16) and y == 0
    assert torch.allclose(x, torch.full_like(x, 100 / 127.5 - 1), atol=2 / 127.5)   # grey -> RGB, resized, cropped


def test_image_folder_dataset_errors(folder, tmp_path_factory):
    with pytest.raises(FileNotFoundError, match='does not exist'): image_folder_dataset(folder / 'missing')
    with pytest.raises(NotADirectoryError, match='folder'): image_folder_dataset(folder / 'a_faces' / 'grey.jpg')
    empty = tmp_path_factory.mktemp('empty'); (empty / 'notes.txt').write_text('hi')
    with pytest.raises(ValueError, match='no images found'): image_folder_dataset(empty)
    (folder / 'b_food' / 'bad.png').write_bytes(b'\x89PNG\r\n\x1a\n garbage')
    with pytest.raises(ValueError, match=r'unreadable image.*bad\.png.*verify=False'): image_folder_dataset(folder)
    lazy = ImageDataset(image_folder_dataset(folder, verify=False), 16, preload=False)
    bad_idx = [i for i, p in enumerate(lazy.ds.cast_column('image', __import__('datasets').Image(decode=False))['image'])
               if p['path'].endswith('bad.png')][0]
    with pytest.raises(RuntimeError, match=f'could not read image {bad_idx}'): lazy[bad_idx]
    with pytest.raises(RuntimeError, match='could not read image'):
        ImageDataset(image_folder_dataset(folder, verify=False), 16)     # preloading finds it too


def test_image_dataset_flips_are_deterministic_across_workers_and_seeds():
    ds = openmoji_dataset(32, limit=40)
    a, b, c = ImageDataset(ds, 32, seed=1), ImageDataset(ds, 32, seed=1), ImageDataset(ds, 32, seed=2)
    xa = next(iter(DataLoader(a, batch_size=40)))[0]
    xb = next(iter(DataLoader(b, batch_size=40, num_workers=2)))[0]
    xc = next(iter(DataLoader(c, batch_size=40)))[0]
    assert torch.equal(xa, xb)                         # same seed, different worker count: same batch
    assert not torch.equal(xa, xc)                     # another seed flips other images
    plain = torch.stack([pil_to_tensor(im) for im in ds['image']])
    flipped = torch.tensor([torch.equal(xa[i], plain[i].flip(-1)) and not torch.equal(xa[i], plain[i]) for i in range(40)])
    same = torch.tensor([torch.equal(xa[i], plain[i]) for i in range(40)])
    assert 0 < flipped.sum() < 40 and bool((flipped | same).all())   # each item is either the image or its mirror


def test_image_dataset_is_picklable_and_unlabeled_is_minus_one(folder):
    ids = ImageDataset(image_folder_dataset(folder / 'b_food' / 'nested'), 8)   # no subfolders: no classes
    assert ids.num_classes == 0 and ids[0][1] == UNLABELED == -1
    clone = pickle.loads(pickle.dumps(ids))
    assert torch.equal(clone[1][0], ids[1][0])


def test_to_rgb_rejects_bad_channel_counts_with_advice():
    with pytest.raises(ValueError, match='transpose'): to_rgb(np.zeros((3, 5, 5), np.uint8))
    with pytest.raises(ValueError, match=r'C in \(1, 3, 4\)'): to_rgb(np.zeros((5, 5, 5), np.uint8))
    with pytest.raises(TypeError, match='PIL image'): to_rgb('a path')
    rgba = np.zeros((2, 2, 4), np.uint8); rgba[0, 0] = [10, 20, 30, 255]
    assert to_rgb(rgba).getpixel((0, 0)) == (10, 20, 30) and to_rgb(rgba).getpixel((1, 1)) == (255, 255, 255)


def test_image_transform_resizes_the_shorter_side_and_crops_the_centre():
    im = Image.new('RGB', (90, 30), (255, 0, 0)); im.paste((0, 0, 255), (30, 0, 60, 30))   # red | blue | red
    out = np.asarray(image_transform(im, 10))
    assert out.shape == (10, 10, 3)
    assert (out[:, 2:-2, 2] > 250).all() and (out[:, 2:-2, 0] < 5).all()   # the blue centre survives (edges blend)
    assert np.array_equal(out, np.asarray(im.resize((30, 10), Image.Resampling.BICUBIC))[:, 10:20])


def test_image_grid_and_show_images():
    x = torch.linspace(-1, 1, 2 * 3 * 4 * 4).reshape(2, 3, 4, 4)
    g = image_grid(x, nrow=2, padding=0)
    assert g.size == (8, 4)
    assert np.array_equal(np.asarray(g)[:, :4], np.asarray(tensor_to_pil(x[0])))
    fig = show_images(x, title='t')
    assert fig.axes[0].get_title() == 't'
    import matplotlib.pyplot as plt; plt.close(fig)
    with pytest.raises(ValueError, match='same shape'): image_grid([x[0], x[0, :, :2]])
