"""The checkpoint and randomness modules (appendix_checkpoints, appendix_randomness): exact-resume randomness,
checkpoint files, and one home per name: the Trainer is one class in hdit_edu.training, checkpoint never imports
training, and randomness needs nothing but torch."""
import ast, json
from pathlib import Path

import pytest
import torch

import hdit_edu.checkpoint as checkpoint
import hdit_edu.randomness as randomness
import hdit_edu.training as training
from hdit_edu.diffusion import sigma_sampler

HOMES = {randomness: ['seed_for', 'step_generator', 'step_draws', 'DATA_STREAM', 'DRAW_STREAM', 'GLOBAL_STREAM',
                      'StreamSampler'],
         checkpoint: ['CHECKPOINT_FORMAT', 'CheckpointError', 'ConfigMismatchError', 'TRAJECTORY_FIELDS',
                      'save_weights', 'load_weights', 'list_checkpoints', 'find_checkpoint', 'read_checkpoint',
                      'write_checkpoint', 'prune_checkpoints', 'config_diffs', 'make_accelerator',
                      'load_checkpoint_model', 'checkpoint_sigma_data'],
         training: ['LR_SCHEDULES', 'ema_decay', 'ema_update', 'param_groups', 'make_optimizer', 'lr_factor',
                    'TrainConfig', 'Trainer', 'TrainingDivergedError', 'smooth_losses',
                    'plot_losses']}


def _imports(mod, top_level_only=False):
    "The modules `mod` imports (relative imports resolved to `hdit_edu.x`), at the top level or anywhere."
    tree = ast.parse(Path(mod.__file__).read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out = []
    for n in nodes:
        if isinstance(n, ast.ImportFrom): out.append(('hdit_edu.' if n.level else '') + (n.module or ''))
        elif isinstance(n, ast.Import): out += [a.name for a in n.names]
    return out


@pytest.mark.parametrize('mod', list(HOMES), ids=lambda m: m.__name__)
def test_every_name_lives_in_its_home(mod):
    assert sorted(mod.__all__) == sorted(HOMES[mod])
    for name in HOMES[mod]:
        obj = getattr(mod, name)
        assert getattr(obj, '__module__', mod.__name__) == mod.__name__, name


def test_trainer_is_one_class_with_its_own_methods():
    assert training.Trainer.__mro__ == (training.Trainer, object)
    for name in ['fit', '_save_checkpoint', '_load_checkpoint', '_check_compatible', '_meta', '_should_stop',
                 '_signals_to_flag', '_survive', '_save_if_consistent', '_resume', '_nothing_to_train', '_batch_split',
                 '_data_loader', '_periodic_outputs', '_finish', '_write_outputs', 'sample', 'real_images']:
        assert name in vars(training.Trainer), name
    assert not [k for k, v in vars(checkpoint).items() if isinstance(v, type) and v.__module__ == checkpoint.__name__
                and not issubclass(v, Exception)]                  # checkpoint: functions over files, no mixins


def test_no_attribute_is_a_patch_leftover():
    for mod in (training, checkpoint, randomness):
        assert not [k for k, v in vars(mod).items() if v is None and not k.startswith('__')], mod.__name__


def test_imports_follow_the_layers():
    "training imports checkpoint, never the other way round (also not inside functions); randomness needs only torch."
    assert not [m for m in _imports(checkpoint) if m.endswith('training')]
    assert 'hdit_edu.checkpoint' in _imports(training, top_level_only=True)
    assert {m.split('.')[0] for m in _imports(randomness)} <= {'__future__', 'torch'}


@pytest.mark.parametrize('mod', [training, checkpoint, randomness], ids=lambda m: m.__name__)
def test_heavy_libraries_are_imported_where_they_are_needed(mod):
    heavy = {'matplotlib', 'accelerate', 'datasets', 'pandas', 'pyarrow', 'ipywidgets'}
    assert not [m for m in _imports(mod, top_level_only=True) if m.split('.')[0] in heavy]


def test_step_draws_are_a_pure_function_of_seed_and_step():
    sig = sigma_sampler('log-normal')
    a = randomness.step_draws(3, 7, 8, (3, 4, 4), sig, 0.5)
    torch.randn(100)                                       # hidden global state moves on ...
    b = randomness.step_draws(3, 7, 8, (3, 4, 4), sig, 0.5)
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))    # ... the draws do not
    c = randomness.step_draws(3, 8, 8, (3, 4, 4), sig, 0.5)
    assert not torch.equal(a[3], c[3])
    sigma, drop, flip, noise = a
    assert sigma.shape == drop.shape == flip.shape == (8,) and noise.shape == (8, 3, 4, 4)
    assert drop.dtype == flip.dtype == torch.bool and (sigma > 0).all()


def test_step_draws_follow_the_step_generator_order():
    "The documented order: noise levels, dropout mask, flips, noise, all from `step_generator(seed, step)`."
    sig = sigma_sampler('log-normal')
    g = randomness.step_generator(1, 2)
    want = (sig(4, generator=g), torch.rand(4, generator=g) < 0.1, torch.rand(4, generator=g) < 0.5,
            torch.randn((4, 3, 2, 2), generator=g))
    got = randomness.step_draws(1, 2, 4, (3, 2, 2), sig, 0.1)
    assert all(torch.equal(u, v) for u, v in zip(got, want, strict=True))


def test_stream_sampler_resumes_mid_epoch():
    whole = list(randomness.StreamSampler(10, seed=4, length=25))
    assert list(randomness.StreamSampler(10, seed=4, start=13, length=12)) == whole[13:]
    assert sorted(whole[:10]) == list(range(10)) and whole[:10] != whole[10:20]


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
