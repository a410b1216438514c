"""`hdit-edu` under bad input and bad luck: `--version`, too many threads, negative guidance, an `--out` of the wrong
kind, a full disk or a read-only folder (one line, the last good checkpoint survives), a corrupt training image
(a hint the command line can follow), and a run that has nothing left to train (no speed reported)."""
import errno, shutil, subprocess, sys

import pytest
from PIL import Image
import safetensors.torch
from safetensors import SafetensorError

import hdit_edu
from hdit_edu.threads import cpu_count
from hdit_edu.checkpoint import read_checkpoint, list_checkpoints
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
from cli_util import run_cli, one_line_error  # noqa: E402

TINY = ['--size', '16', '--limit', '32', '--width', '32', '--depths', '1', '1', '--batch-size', '8', '--quiet',
        '--threads', '1']



@pytest.fixture
def run2(tmp_path):
    "A finished 2-step tiny run with a checkpoint at step 2."
    out = tmp_path / 'run'
    assert run_cli(['train', *TINY, '--steps', '2', '--out', str(out)])[0] == 0
    assert [p.name for p in list_checkpoints(out)] == ['step_0000002']
    return out


def test_version():
    status, out, _ = run_cli(['--version'])
    assert status == 0 and out.strip() == f'hdit-edu {hdit_edu.__version__}'


@pytest.mark.skipif(shutil.which('hdit-edu') is None, reason='the console script is not installed')
def test_version_of_the_console_script():
    r = subprocess.run(['hdit-edu', '--version'], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == f'hdit-edu {hdit_edu.__version__}', r


def test_more_threads_than_cores_is_refused():
    n = cpu_count()
    for cmd in (['train'], ['sample', '--checkpoint', 'openmoji64'], ['img2img', '--image', 'x.png']):
        one_line_error(cmd + ['--threads', str(100 * n)], f'argument --threads: {100 * n} threads but only {n} CPU',
                       f'pass at most {n}, or 0 to choose automatically')
    assert run_cli(['train', '--threads', str(n), '--size', '36'])[2].count('--size must be') == 1   # n is fine


def test_negative_guidance_is_refused():
    for cmd in (['sample', '--checkpoint', 'openmoji64'], ['img2img', '--image', 'x.png'],
                ['inpaint', '--image', 'x.png', '--mask', 'm.png']):
        one_line_error(cmd + ['--cfg-scale', '-5'], 'argument --cfg-scale: must be a finite number from 0 to 100',
                       'got -5')
    one_line_error(['sample', '--checkpoint', 'openmoji64', '--cfg-scale', 'nan'], 'from 0 to 100')


def test_out_of_the_wrong_kind(tmp_path):
    f = tmp_path / 'notes.txt'; f.write_text('x')
    one_line_error(['train', *TINY, '--out', str(f)], f'--out {f} is a file, but train writes a folder')
    one_line_error(['sample', '--checkpoint', 'openmoji64', '--out', str(tmp_path)],
                   f'--out {tmp_path} is a folder: pass an image file name')
    one_line_error(['sample', '--checkpoint', 'openmoji64', '--out', str(tmp_path / 'x.txt')], 'unknown image type')
    assert f.read_text() == 'x'


def test_already_finished_run_reports_no_speed(run2):
    status, out, _ = run_cli(['train', *TINY, '--steps', '2', '--out', str(run2)])
    assert status == 0
    done = next(l for l in out.splitlines() if l.startswith('Done:'))
    assert 'images/s' not in done and 'nothing to train in this session' in done, done


def test_a_session_that_trained_reports_its_speed(run2):
    status, out, _ = run_cli(['train', *TINY, '--steps', '3', '--out', str(run2)])
    done = next(l for l in out.splitlines() if l.startswith('Done:'))
    assert status == 0 and 'images/s in this session' in done, done


@pytest.mark.parametrize('error', [
    OSError(errno.ENOSPC, 'No space left on device'),
    # what safetensors really raises on a full disk (measured on a 6 MB tmpfs): not an OSError
    SafetensorError('Error while serializing: I/O error: No space left on device (os error 28)')],
    ids=['OSError', 'SafetensorError'])
def test_full_disk_keeps_the_last_checkpoint(run2, monkeypatch, error):
    def full(*a, **k): raise error
    monkeypatch.setattr(safetensors.torch, 'save_file', full)              # for modules that import it late
    for mod in [m for name, m in list(sys.modules.items()) if name.startswith('hdit_edu')]:
        if getattr(mod, 'save_file', None) is safetensors.torch.save_file: monkeypatch.setattr(mod, 'save_file', full)
    err = one_line_error(['train', *TINY, '--steps', '4', '--out', str(run2)],
                         'No space left on device', 'step_0000002', 'is kept')
    assert 'free some' in err.lower() and ('run again' in err or 'run the same command again' in err), err
    monkeypatch.undo()
    assert read_checkpoint(run2)['step'] == 2                              # checksums verified: intact
    assert not [p for p in (run2 / 'checkpoints').iterdir() if p.name.startswith('.tmp')]   # nothing half written
    assert run_cli(['train', *TINY, '--steps', '4', '--out', str(run2)])[0] == 0    # and the run goes on
    assert read_checkpoint(run2)['step'] == 4


def test_read_only_folder_is_one_line(run2, monkeypatch, tmp_path):
    def denied(self, fp, *a, **k): raise PermissionError(errno.EACCES, 'Permission denied', str(fp))
    monkeypatch.setattr(Image.Image, 'save', denied)
    out = tmp_path / 'ro' / 'grid.png'
    one_line_error(['sample', '--checkpoint', str(run2), '--n', '1', '--steps', '1', '--device', 'cpu',
                    '--out', str(out)], f'could not write {out}: Permission denied', 'make', 'writable or pass another --out')
    one_line_error(['train', *TINY, '--steps', '3', '--out', str(run2)], 'Permission denied',
                   'the last good checkpoint')
    assert read_checkpoint(run2)['step'] >= 2


def test_corrupt_image_hint_fits_the_command_line(tmp_path):
    d = tmp_path / 'imgs'; d.mkdir()
    for i in range(3): Image.new('RGB', (16, 16), (40 * i, 0, 0)).save(d / f'{i}.png')
    (d / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n truncated')
    err = one_line_error(['train', *TINY, '--data', str(d), '--out', str(tmp_path / 'r')],
                         '1 unreadable image(s)', 'broken.png', 'Remove or replace them')
    assert 'verify=False' not in err and 'verify' not in err


def test_bad_schedule_options_are_one_line():
    one_line_error(['train', '--lr-final', '1.5'], 'argument --lr-final: must be from 0 to 1', 'got 1.5')
    one_line_error(['train', '--lr-final', 'half'], 'expected a number from 0 to 1', "'half'")
    one_line_error(['train', '--lr-schedule', 'linear'], 'argument --lr-schedule: invalid choice', "'cosine'")
    one_line_error(['train', '--warmup-steps', '-3'], 'argument --warmup-steps: must be >= 0, got -3')
    one_line_error(['train', '--ema-power', '-1'], 'argument --ema-power: must be >= 0')


def test_schedule_options_reach_the_trainer(tmp_path):
    from hdit_edu.cli import build_parser
    from hdit_edu.cli_train import build_trainer
    args = build_parser().parse_args(['train', '--out', str(tmp_path), '--limit', '8', '--size', '16',
                                      '--lr-schedule', 'cosine', '--warmup-steps', '7', '--lr-final', '0.1',
                                      '--ema-power', '0.6667', '--no-hflip'])
    c = build_trainer(args).config
    assert (c.lr_schedule, c.warmup_steps, c.lr_final, c.ema_power, c.hflip) == ('cosine', 7, 0.1, 0.6667, False)
