"""Issue 28, "nothing silent", on the command line: each case is one line that says what to do (exit status 2), or
works as documented. `train` trains all its steps unless `--minutes` asks for a limit; `--out` is checked before any
work; `--raw` is refused where there are no raw weights; seeds, learning rates and guidance scales out of range are
refused by the parser; a diverged run exits with one line; `--class` takes names; the attention line is short;
`python -m hdit_edu` is the command line; the run's first line comes before the slow setup."""
import os, re, shlex, subprocess, sys, time
from pathlib import Path

import pytest
from PIL import Image

import hdit_edu.cli_sample as cli_sample
import hdit_edu.cli_train as cli_train
from hdit_edu.cli import build_parser
from hdit_edu.checkpoint import list_checkpoints
from hdit_edu.training import Trainer, TrainingDivergedError

sys.path.insert(0, str(Path(__file__).parent))
from cli_util import run_cli, one_line_error as _one_line_error, write_edit_files  # noqa: E402

TINY = ['--size', '16', '--limit', '32', '--width', '32', '--depths', '1', '1', '--batch-size', '8', '--quiet',
        '--threads', '1']
FAST = ['--steps', '1', '--device', 'cpu', '--threads', '1']
ROOT = hasattr(os, 'geteuid') and os.geteuid() == 0


def one_line_error(argv, *fragments): return _one_line_error(argv, *fragments, command_prefix=True)


@pytest.fixture
def no_loading(monkeypatch):
    "Make loading a model an error: a check that must come before the loading fails the test if it does not."
    def load(*a, **k): raise AssertionError('the model was loaded before the check')
    monkeypatch.setattr(cli_sample, 'load_checkpoint_model', load)


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    "An emoji at the shipped model's 64 px and a mask painting its upper half."
    d = tmp_path_factory.mktemp('files')
    write_edit_files(d)
    return d


@pytest.fixture(scope='module')
def run2(tmp_path_factory):
    "A finished 2-step tiny run (raw and EMA weights)."
    out = tmp_path_factory.mktemp('cli_errors') / 'run'
    assert run_cli(['train', *TINY, '--steps', '2', '--out', str(out)])[0] == 0
    return out


# 1. train trains all its steps by default; the time limit is opt-in

def test_train_has_no_time_limit_by_default(tmp_path):
    assert build_parser().parse_args(['train']).minutes is None
    status, out, err = run_cli(['train', *TINY, '--steps', '3', '--out', str(tmp_path / 'r')])
    assert status == 0, err
    assert 'no time limit' in out.splitlines()[0], out
    assert 'Done: step 3/3' in out and 'Run the same command again' not in out, out


def test_the_help_says_the_limit_is_opt_in():
    text = ' '.join(build_parser()._subparsers._group_actions[0].choices['train'].format_help().split())
    assert 'stop after this many minutes, with a checkpoint; run again to go on (default: no limit)' in text
    assert 'No time limit unless --minutes' in text


def test_a_time_limit_is_named_in_the_first_line(monkeypatch, tmp_path):
    def stop(args): raise ValueError('stopped before the data')
    monkeypatch.setattr(cli_train, 'build_trainer', stop)
    status, out, _ = run_cli(['train', *TINY, '--minutes', '2.5', '--out', str(tmp_path / 'r')])
    assert status == 2 and 'stopping after 2.5 minutes' in out.splitlines()[0], out


# 2. --out is checked before any work

def test_out_under_proc_is_refused_before_loading(no_loading, files):
    if not Path('/proc').is_dir(): pytest.skip('no /proc here')
    one_line_error(['sample', '--out', '/proc/grid.png'], '--out /proc/grid.png: cannot create files in /proc',
                   'pass another --out')
    one_line_error(['img2img', '--image', str(files / 'emoji.png'), '--out', '/proc/x/y.png'],
                   'cannot create files in /proc')


def test_a_file_in_the_way_is_refused_before_any_work(no_loading, tmp_path):
    f = tmp_path / 'notes.txt'; f.write_text('x')
    one_line_error(['sample', '--out', str(f / 'grid.png')], f'{f} is a file, not a folder: pass another --out')
    t0 = time.perf_counter()
    one_line_error(['train', *TINY, '--out', str(f / 'run')], f'{f} is a file, not a folder')
    assert time.perf_counter() - t0 < 2 and f.read_text() == 'x'


@pytest.mark.skipif(ROOT, reason='root may write into a read-only folder')
def test_a_read_only_folder_is_refused_before_loading(no_loading, tmp_path):
    ro = tmp_path / 'ro'; ro.mkdir(); ro.chmod(0o555)
    try:
        one_line_error(['sample', '--out', str(ro / 'g.png')], f'cannot create files in {ro} (Permission denied)',
                       'make it writable or pass another --out')
        one_line_error(['train', *TINY, '--out', str(ro / 'run')], 'make it writable or pass another --out')
    finally: ro.chmod(0o755)


def test_a_folder_that_refuses_files_is_one_line(no_loading, tmp_path, monkeypatch):
    "What a read-only folder does to the check, simulated (the tests may run as root, who may write anywhere)."
    import errno, tempfile
    import hdit_edu.cli_args as cli_args
    def denied(*a, dir=None, **k): raise PermissionError(errno.EACCES, 'Permission denied', str(dir))
    monkeypatch.setattr(cli_args.tempfile, 'TemporaryFile', denied)
    one_line_error(['sample', '--out', str(tmp_path / 'g.png')], f'cannot create files in {tmp_path}',
                   '(Permission denied): make it writable or pass another --out')
    monkeypatch.setattr(cli_args.tempfile, 'TemporaryFile', tempfile.TemporaryFile)


@pytest.mark.parametrize('cmd', ['img2img', 'inpaint-image', 'inpaint-mask', 'sample-image-prompt'])
def test_out_may_not_replace_an_input(no_loading, files, tmp_path, monkeypatch, cmd):
    img, mask = tmp_path / 'in.png', tmp_path / 'mask.png'
    Image.open(files / 'emoji.png').save(img); Image.open(files / 'mask.png').save(mask)
    before = img.read_bytes()
    argv, flag, out = {
        'img2img': (['img2img', '--image', str(img)], '--image', img),
        'inpaint-image': (['inpaint', '--image', str(img), '--mask', str(mask)], '--image', img),
        'inpaint-mask': (['inpaint', '--image', str(img), '--mask', str(mask)], '--mask', mask),
        'sample-image-prompt': (['sample', '--image-prompt', str(img)], '--image-prompt', img)}[cmd]
    monkeypatch.chdir(tmp_path)
    one_line_error(argv + ['--out', out.name], f'--out {out.name} is also the {flag}',
                   'writing it would replace your input; pass another --out, such as ' + out.stem + '-new.png')
    assert img.read_bytes() == before


def test_a_missing_input_is_refused_before_loading(no_loading, tmp_path):
    one_line_error(['img2img', '--image', str(tmp_path / 'nope.png'), '--out', str(tmp_path / 'o.png')],
                   'nope.png: no such file')


# 3. --raw with a model that has no raw weights

def test_raw_with_a_pretrained_model_or_a_model_file_is_refused(no_loading, files, tmp_path):
    one_line_error(['sample', '--raw'], '--raw picks the raw (not EMA) weights of a training run',
                   'openmoji64 is a pretrained model', 'leave out --raw, or pass a run folder')
    (tmp_path / 'm.safetensors').write_bytes(b'')
    one_line_error(['img2img', '--image', str(files / 'emoji.png'), '--raw',
                    '--checkpoint', str(tmp_path / 'm.safetensors'), '--out', str(tmp_path / 'o.png')],
                   'is a model file, with one set of weights')


def test_raw_with_a_run_uses_its_raw_weights(run2, tmp_path, monkeypatch):
    seen = []
    real = cli_sample.load_checkpoint_model
    monkeypatch.setattr(cli_sample, 'load_checkpoint_model', lambda p, ema, **k: seen.append(ema) or real(p, ema, **k))
    status, _, err = run_cli(['sample', '--checkpoint', str(run2), '--raw', '--n', '1', *FAST,
                              '--out', str(tmp_path / 'g.png')])
    assert status == 0 and seen == [False], err


# 4. seeds

@pytest.mark.parametrize('cmd', [['train'], ['sample'], ['img2img', '--image', 'x.png'],
                                 ['inpaint', '--image', 'x.png', '--mask', 'm.png']])
@pytest.mark.parametrize('seed', [str(2 ** 70), '2**70', '-1', '1.5'])
def test_seed_out_of_range_names_the_range(cmd, seed):
    one_line_error(cmd + ['--seed', seed], 'argument --seed: must be a whole number from 0 to 2**63 - 1',
                   f'got {seed}')


def test_the_largest_seed_samples(run2, tmp_path):
    status, _, err = run_cli(['sample', '--checkpoint', str(run2), '--seed', str(2 ** 63 - 1), '--n', '1', *FAST,
                              '--out', str(tmp_path / 'g.png')])
    assert status == 0, err


# 5. learning rates

@pytest.mark.parametrize('lr', ['inf', 'nan', '0', '-1e-3', '-inf'])
def test_lr_must_be_finite_and_positive(lr):
    one_line_error(['train', f'--lr={lr}'], 'argument --lr: must be a finite number > 0, such as 2e-3', f'got {lr}')


def test_lr_not_a_number():
    one_line_error(['train', '--lr', 'fast'], 'argument --lr: expected a learning rate such as 2e-3', "'fast'")


def test_a_diverged_run_is_one_line_with_exit_2(tmp_path, monkeypatch):
    "A huge finite --lr passes the parser; the trainer's TrainingDivergedError becomes one line in the options' words."
    def diverge(self, *a, **k): raise TrainingDivergedError('training diverged at step 3: the loss is nan; lr=...')
    monkeypatch.setattr(Trainer, 'fit', diverge)
    err = one_line_error(['train', *TINY, '--lr', '1e9', '--out', str(tmp_path / 'r')],
                         'training diverged at step 3: the loss is nan', '--lr 1e+09 is most likely too high',
                         'e.g. --lr 0.002', '(no checkpoint was written)')
    assert 'lr=' not in err


def test_a_diverged_resumed_run_names_the_kept_checkpoint(run2, monkeypatch):
    def diverge(self, *a, **k): raise TrainingDivergedError('training diverged at step 3: the loss is inf; ...')
    monkeypatch.setattr(Trainer, 'fit', diverge)
    one_line_error(['train', *TINY, '--steps', '4', '--out', str(run2)], 'e.g. --lr 0.0002',
                   'and another --out (the last good checkpoint', 'step_0000002, is kept)')


# 6. discoverable: class names, the shipped model by default, a short attention line, python -m hdit_edu

def _help(cmd):
    return ' '.join(build_parser()._subparsers._group_actions[0].choices[cmd].format_help().split())


@pytest.mark.parametrize('cmd', ['sample', 'inpaint', 'img2img'])
def test_help_lists_the_shipped_class_names(cmd):
    assert 'a class number or name (openmoji64: 0 faces, 1 nature, 2 food)' in _help(cmd)


def test_class_by_name_reaches_the_sampler(monkeypatch, tmp_path):
    seen = {}
    def spy(den, n, size, **kw):
        import torch
        seen.update(kw); return torch.zeros(n, 3, *size)
    monkeypatch.setattr(cli_sample, 'sample', spy)
    status, _, err = run_cli(['sample', '--class', 'Food', '--n', '2', *FAST, '--out', str(tmp_path / 'g.png')])
    assert status == 0 and seen['class_cond'] == 2, err


def test_a_wrong_class_name_lists_the_names(files, tmp_path):
    one_line_error(['sample', '--class', 'animals', *FAST, '--out', str(tmp_path / 'g.png')],
                   '--class animals is not a class of this model: pass one of 0 faces, 1 nature, 2 food')
    one_line_error(['img2img', '--image', str(files / 'emoji.png'), '--class', '5', *FAST,
                    '--out', str(tmp_path / 'o.png')], '--class must be in [0, 3) for this model (0 faces, 1 nature')


def test_a_class_name_for_a_model_without_names(run2, tmp_path, monkeypatch):
    import hdit_edu.checkpoint as ck
    real = ck.load_checkpoint_model
    def nameless(*a, **k):
        m = real(*a, **k); m.config.class_names = None; return m
    monkeypatch.setattr(cli_sample, 'load_checkpoint_model', nameless)
    one_line_error(['sample', '--checkpoint', str(run2), '--class', 'faces', *FAST, '--out', str(tmp_path / 'g.png')],
                   '--class faces: this model has no class names: pass a number, 0 to 2')


def test_sample_defaults_to_the_shipped_model():
    assert build_parser().parse_args(['sample']).checkpoint == 'openmoji64'
    assert '(default: the shipped openmoji64)' in _help('sample')


def test_the_attention_line_is_short_and_verbose_explains(run2, tmp_path):
    base = ['sample', '--checkpoint', str(run2), '--n', '1', *FAST, '--out', str(tmp_path / 'g.png')]
    status, out, _ = run_cli(base)
    line = next(l for l in out.splitlines() if l.startswith('attention'))
    assert status == 0 and line == 'attention: neighborhood, pure PyTorch on cpu', line
    status, out, _ = run_cli(base + ['--verbose'])
    line = next(l for l in out.splitlines() if l.startswith('attention'))
    assert status == 0 and 'NATTEN not used' in line, line
    status, out, _ = run_cli(['train', *TINY, '--steps', '2', '--out', str(run2)])
    assert 'attention: neighborhood, pure PyTorch on cpu' in out.splitlines(), out


def test_python_m_hdit_edu_is_the_command_line():
    r = subprocess.run([sys.executable, '-m', 'hdit_edu', 'train', '--lr', 'inf'], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and r.stderr.startswith('hdit-edu train: error: argument --lr'), r


def test_every_readme_command_parses():
    "The README's `hdit-edu ...` commands (an inpaint and an img2img example among them) are accepted by the parser."
    text = (Path(__file__).parents[1] / 'README.md').read_text().replace('\\\n', ' ')
    cmds = [shlex.split(line.split('#')[0])[1:] for block in text.split('```')[1::2] for line in block.splitlines()
            if line.startswith('hdit-edu ')]
    cmds += [shlex.split(c)[1:] for c in re.findall(r'`(hdit-edu [^`]+)`', text)]
    assert {'inpaint', 'img2img'} <= {c[0] for c in cmds}, cmds
    p = build_parser()
    for c in cmds:
        if c[0] in ('train', 'sample', 'inpaint', 'img2img') and not {'RUN', '--help'} & set(c):
            p.parse_args(c)


# 7. guidance

@pytest.mark.parametrize('cfg', ['1e30', 'inf', '101'])
def test_cfg_scale_above_the_library_bound_is_refused(cfg):
    for cmd in (['sample'], ['img2img', '--image', 'x.png']):
        one_line_error(cmd + ['--cfg-scale', cfg], 'argument --cfg-scale: must be a finite number from 0 to 100',
                       '3-10: strong guidance')


def test_cfg_scale_100_is_accepted():
    assert build_parser().parse_args(['sample', '--cfg-scale', '100']).cfg_scale == 100.


# 8. the run's first line comes before the slow setup

def test_the_first_line_comes_before_the_data(monkeypatch, tmp_path):
    def slow(args): raise ValueError('the data would be built now')
    monkeypatch.setattr(cli_train, 'build_trainer', slow)
    status, out, err = run_cli(['train', '--size', '4096', '--out', str(tmp_path / 'r')])
    assert status == 2 and 'the data would be built now' in err
    assert out.splitlines() == [f'hdit-edu train: openmoji at 4096px; HDiT width 64, depths 2 4, neighborhood '
                                f'attention; batch 32, 3000 steps, no time limit; output {tmp_path / "r"}'], out
    assert not list_checkpoints(tmp_path / 'r')


def test_a_run_that_cannot_fit_is_refused_before_the_data(tmp_path, monkeypatch):
    "`--size 4096` is refused by the memory estimate before any emoji is rendered (rendering them takes minutes)."
    def no_data(args): raise AssertionError('the data was built before the memory check')
    monkeypatch.setattr(cli_train, '_dataset', no_data)
    t0 = time.time()
    one_line_error(['train', '--size', '4096', '--out', str(tmp_path / 'r')],
                   'batch_size=32 of 4096x4096 images needs about', 'even one image at a time does not fit')
    assert time.time() - t0 < 30
