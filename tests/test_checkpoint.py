"""The checkpoint module (appendix_checkpoints): exact-resume randomness, re-exports from hdit_edu.training, and an
import graph without cycles (checkpoint never imports training at module level)."""
import json
from pathlib import Path

import pytest
import torch

import hdit_edu.checkpoint as checkpoint
import hdit_edu.training as training
from hdit_edu.diffusion import sigma_sampler

# Public names hdit_edu.training offered before the checkpoint code moved out; every one must stay importable there.
BEFORE = ['CHECKPOINT_FORMAT', 'CheckpointError', 'ConfigMismatchError', 'DATA_STREAM', 'DRAW_STREAM',
          'GLOBAL_STREAM', 'StreamSampler', 'TRAJECTORY_FIELDS', 'TrainConfig', 'Trainer', 'auto_threads',
          'checkpoint_sigma_data', 'config_diffs', 'cpu_threads', 'ema_decay', 'ema_update', 'find_checkpoint',
          'list_checkpoints', 'load_checkpoint_model', 'load_weights', 'make_optimizer', 'param_groups',
          'plot_losses', 'prune_checkpoints', 'read_checkpoint', 'save_weights', 'seed_for', 'small_hdit_config',
          'smooth_losses', 'step_generator', 'write_checkpoint', 'load_pretrained', 'load_model', 'save_model',
          'HDiT', 'HDiTConfig', 'LevelConfig', 'image_grid', 'sample_images', 'Denoiser', 'sigma_sampler']


@pytest.mark.parametrize('name', BEFORE)
def test_every_old_name_is_still_importable_from_training(name):
    assert getattr(training, name) is not None


def test_moved_names_are_the_same_objects():
    for name in ['StreamSampler', 'CheckpointError', 'read_checkpoint', 'write_checkpoint', 'seed_for',
                 'load_checkpoint_model', 'TRAJECTORY_FIELDS']:
        assert getattr(training, name) is getattr(checkpoint, name), name
    assert issubclass(training.Trainer, checkpoint.Resumable)


def test_no_public_attribute_is_a_patch_leftover():
    for mod in (training, checkpoint):
        assert not [k for k, v in vars(mod).items() if v is None and not k.startswith('__')], mod.__name__


def test_checkpoint_does_not_import_training_at_module_level():
    "training imports checkpoint; the other way round would be an import cycle."
    import ast
    tree = ast.parse(Path(checkpoint.__file__).read_text())
    mods = [n.module or '' for n in tree.body if isinstance(n, ast.ImportFrom)]
    mods += [a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in mods if m.endswith('training')], mods


def test_step_draws_are_a_pure_function_of_seed_and_step():
    sig = sigma_sampler('log-normal')
    a = checkpoint.step_draws(3, 7, 8, (3, 4, 4), sig, 0.5)
    torch.randn(100)                                       # hidden global state moves on ...
    b = checkpoint.step_draws(3, 7, 8, (3, 4, 4), sig, 0.5)
    assert all(torch.equal(u, v) for u, v in zip(a, b))    # ... the draws do not
    c = checkpoint.step_draws(3, 8, 8, (3, 4, 4), sig, 0.5)
    assert not torch.equal(a[3], c[3])
    sigma, drop, flip, noise = a
    assert sigma.shape == drop.shape == flip.shape == (8,) and noise.shape == (8, 3, 4, 4)
    assert drop.dtype == flip.dtype == torch.bool and (sigma > 0).all()


def test_step_draws_follow_the_step_generator_order():
    "The documented order: noise levels, dropout mask, flips, noise, all from `step_generator(seed, step)`."
    sig = sigma_sampler('log-normal')
    g = checkpoint.step_generator(1, 2)
    want = (sig(4, generator=g), torch.rand(4, generator=g) < 0.1, torch.rand(4, generator=g) < 0.5,
            torch.randn((4, 3, 2, 2), generator=g))
    got = checkpoint.step_draws(1, 2, 4, (3, 2, 2), sig, 0.1)
    assert all(torch.equal(u, v) for u, v in zip(got, want))


def test_train_config_splits_trajectory_from_session_settings():
    from dataclasses import fields
    names = [f.name for f in fields(training.TrainConfig)]
    assert set(checkpoint.TRAJECTORY_FIELDS) <= set(names)
    session = set(names) - set(checkpoint.TRAJECTORY_FIELDS)
    assert {'out_dir', 'steps', 'minutes', 'grad_accum', 'progress', 'sample_n'} <= session


def test_make_accelerator_follows_the_config():
    acc = checkpoint.make_accelerator(training.TrainConfig(mixed_precision='no', grad_accum=2, batch_size=4))
    assert acc.split_batches and acc.gradient_accumulation_steps == 2 and acc.num_processes == 1
    assert str(acc.mixed_precision) == 'no'


def test_a_checkpoint_records_its_checksums(tmp_path):
    net = torch.nn.Linear(3, 2)
    opt = training.make_optimizer(net)
    net(torch.randn(2, 3)).sum().backward(); opt.step()
    ck = checkpoint.write_checkpoint(tmp_path, 3, net, net, opt, {'note': 1})
    meta = json.loads((ck / 'trainer.json').read_text())
    assert meta['format'] == checkpoint.CHECKPOINT_FORMAT and meta['step'] == 3
    assert sorted(meta['files']) == ['ema.json', 'ema.safetensors', 'model.json', 'model.safetensors',
                                     'optimizer.safetensors']
    assert all(len(h) == 64 for h in meta['files'].values())
    assert not [p for p in (tmp_path / 'checkpoints').iterdir() if p.name.startswith('.tmp')]
