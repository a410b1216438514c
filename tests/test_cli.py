"""`hdit-edu`: every bad input is one line on stderr with exit status 2 (never a traceback or a hang), the help shows
each default once, `--minutes 0` means no limit, a run's checkpoints/ folder is accepted, and Ctrl-C during `sample`
does not talk about resuming."""
import argparse, contextlib, io, time

import pytest
import torch

import hdit_edu.cli_sample as cli_sample
from hdit_edu.cli import build_parser, main
from hdit_edu.checkpoint import read_checkpoint
from hdit_edu.training import Trainer
from hdit_edu.threads import cpu_count

TINY = ['--size', '16', '--limit', '32', '--width', '32', '--depths', '1', '1', '--batch-size', '8', '--quiet',
        '--threads', '1']


def run_cli(argv):
    "Exit status and stderr of `main(argv)` (the parser exits by itself on bad options)."
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try: status = main(argv)
        except SystemExit as e: status = e.code
    return status, err.getvalue()


def assert_one_line_error(argv, *fragments, prefix='hdit-edu'):
    status, err = run_cli(argv)
    assert status == 2, (argv, status, err)
    assert len(err.strip().splitlines()) == 1, err              # one line, no usage block, no traceback
    assert err.startswith(f'{prefix}') and ': error: ' in err, err
    for f in fragments: assert f in err, (f, err)
    return err


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
    "A 4-step run of a tiny model (the checkpoint the sample/resume tests need)."
    out = tmp_path_factory.mktemp('cli') / 'run'
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(['train', *TINY, '--steps', '4', '--out', str(out)]) == 0
    return out


def test_negative_threads_is_refused():
    assert_one_line_error(['train', '--threads', '-1'], 'hdit-edu train: error: argument --threads: must be >= 0 (0: auto), got -1')
    assert_one_line_error(['sample', '--checkpoint', 'x', '--threads', '-2'], 'argument --threads: must be >= 0')
    assert_one_line_error(['train', '--num-workers', '-1'], 'argument --num-workers: must be >= 0')


def test_minutes_zero_is_no_limit_and_negative_is_refused(tmp_path):
    assert build_parser().parse_args(['train', '--minutes', '0']).minutes == 0
    assert_one_line_error(['train', '--minutes', '-5'], 'argument --minutes: must be >= 0 (0: no limit), got -5')
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(['train', *TINY, '--steps', '2', '--minutes', '0', '--out', str(tmp_path / 'r')]) == 0
    assert read_checkpoint(tmp_path / 'r')['train_config']['minutes'] is None


def test_unknown_device_is_refused_by_the_parser():
    assert_one_line_error(['sample', '--checkpoint', 'openmoji64', '--device', 'gpu'],
                          "hdit-edu sample: error: argument --device: unknown device 'gpu': use cpu, cuda")


def test_cuda_on_a_cpu_only_torch_says_so(monkeypatch):
    monkeypatch.setattr(torch.version, 'cuda', None)               # what a CPU build of torch reports
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    assert_one_line_error(['sample', '--checkpoint', 'openmoji64', '--device', 'cuda'],
                          'hdit-edu sample: error: --device cuda: this PyTorch', 'built without CUDA; use --device cpu')


def test_cuda_without_a_visible_gpu_says_so(monkeypatch):
    monkeypatch.setattr(torch.version, 'cuda', '12.8')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    assert_one_line_error(['sample', '--checkpoint', 'openmoji64', '--device', 'cuda:0'], 'no CUDA GPU is visible')


def test_mistyped_relative_folder_fails_at_once_when_offline(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    t0 = time.perf_counter()
    err = assert_one_line_error(['train', '--data', 'my_folder', '--out', str(tmp_path / 'r')],
                                "hdit-edu train: error: --data 'my_folder': no such folder or dataset",
                                'offline mode is on')
    assert time.perf_counter() - t0 < 5, 'offline must not wait for the network'
    assert 'Traceback' not in err


def test_mistyped_folder_fails_fast_when_the_hub_is_unreachable(monkeypatch, tmp_path):
    import huggingface_hub.constants as hc
    monkeypatch.chdir(tmp_path)
    for v in ('HF_HUB_OFFLINE', 'HF_DATASETS_OFFLINE'): monkeypatch.delenv(v, raising=False)
    monkeypatch.setattr(hc, 'ENDPOINT', 'http://127.0.0.1:9')    # nothing listens there: connection refused
    t0 = time.perf_counter()
    assert_one_line_error(['train', '--data', 'my_folder', '--out', str(tmp_path / 'r')],
                          "--data 'my_folder': no such folder or dataset", 'the hub could not be reached')
    assert time.perf_counter() - t0 < 10                       # one short request, no half-minute of retries


def test_a_name_the_hub_does_not_know(monkeypatch, tmp_path):
    import hdit_edu.data as data
    monkeypatch.chdir(tmp_path)
    for v in ('HF_HUB_OFFLINE', 'HF_DATASETS_OFFLINE'): monkeypatch.delenv(v, raising=False)
    monkeypatch.setattr(data, '_hub_status', lambda name, timeout=5.: 'missing')
    assert_one_line_error(['train', '--data', 'my_folder', '--out', str(tmp_path / 'r')],
                          "no such folder or dataset", 'not a dataset on the Hugging Face hub')


def test_a_missing_checkpoint(tmp_path):
    assert_one_line_error(['sample', '--checkpoint', str(tmp_path / 'runs' / 'nope')],
                          'hdit-edu sample: error:', 'nope does not exist: expected a run directory')


def test_a_file_given_as_data_folder(tmp_path):
    (tmp_path / 'x.png').write_bytes(b'')
    assert_one_line_error(['train', '--data', str(tmp_path / 'x.png')], 'is a file: pass the folder')


def test_sample_accepts_the_checkpoints_folder(tiny_run, tmp_path):
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert main(['sample', '--checkpoint', str(tiny_run / 'checkpoints'), '--n', '2', '--steps', '2',
                     '--device', 'cpu', '--out', str(tmp_path / 'g.png')]) == 0
    assert (tmp_path / 'g.png').exists() and 'Wrote 2 samples' in out.getvalue()


def test_attention_backend_is_named(tiny_run, tmp_path):
    with contextlib.redirect_stdout(io.StringIO()) as out:
        main(['sample', '--checkpoint', str(tiny_run), '--n', '1', '--steps', '1', '--device', 'cpu',
              '--out', str(tmp_path / 'g.png')])
    line = next(l for l in out.getvalue().splitlines() if l.startswith('attention: '))
    assert line.startswith('attention: neighborhood, ') and line.endswith(' on cpu') and len(line) < 80, line


def test_resuming_with_other_settings_names_the_options(tiny_run):
    base = ['train', *TINY, '--steps', '6', '--out', str(tiny_run)]
    err = assert_one_line_error(base[:base.index('--width') + 1] + ['64'] + base[base.index('--width') + 2:],
                                '(--width: checkpoint 32, now 64)', 'pass the same options to resume it')
    assert "'levels'" not in err and 'mapping_width' not in err   # no whole configs
    err = assert_one_line_error(base + ['--attention', 'shifted-window', '--batch-size', '16'],
                                '--attention: checkpoint neighborhood, now shifted-window', '--batch-size: checkpoint 8, now 16')
    assert_one_line_error(base + ['--seed', '3'], '(--seed: checkpoint 0, now 3)')


def test_ctrl_c_during_sample_does_not_mention_resuming(monkeypatch, tiny_run):
    def interrupted(*a, **k): raise KeyboardInterrupt
    monkeypatch.setattr(cli_sample, 'sample', interrupted)
    status, err = run_cli(['sample', '--checkpoint', str(tiny_run), '--device', 'cpu', '--out', 'unused.png'])
    assert status == 130 and err.strip() == 'Stopped.', err


def test_ctrl_c_during_train_says_how_to_resume(monkeypatch, tiny_run):
    def interrupted(self, *a, **k): raise KeyboardInterrupt
    monkeypatch.setattr(Trainer, 'fit', interrupted)
    status, err = run_cli(['train', *TINY, '--steps', '6', '--out', str(tiny_run)])
    assert status == 130 and 'Run the same command again to resume' in err


def _subparser(name):
    return next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices[name]


def test_help_shows_each_default_once_and_none_for_required_options():
    for name in ('train', 'sample'):
        p = _subparser(name)
        fmt = p._get_formatter()
        for action in p._actions:
            if not action.help: continue
            h = fmt._expand_help(action)                                  # the help text as printed
            assert h.count('(default') <= 1, (name, action.dest, h)
            if action.required or action.default is None: assert '(default: None)' not in h, (name, action.dest, h)
        text = ' '.join(p.format_help().split())                       # argparse wraps lines
        assert 'default: None' not in text and 'default: False' not in text, name
    t, s = (' '.join(_subparser(n).format_help().split()) for n in ('train', 'sample'))
    assert 'pretrained name (default: openmoji64) --n' in s            # the shipped model unless told otherwise
    assert 'sample grid every N steps (default: at the end) --checkpoint-every' in t
    assert 'always global) (default: neighborhood)' in t and 'run again to go on (default: no limit)' in t
    assert 'data order and noise (default: 0)' in t                    # a default of 0 is still shown


def test_main_job_defaults():
    a = build_parser().parse_args(['train'])
    assert (a.attention, a.size, a.width, a.depths, a.steps, a.minutes, a.batch_size) == \
           ('neighborhood', 32, 64, [2, 4], 3000, None, 32)        # no time limit: all 3000 steps


def test_help_imports_no_heavy_library():
    "`hdit-edu --help` answers without loading the data, plotting or launching libraries."
    import subprocess, sys
    code = ("import sys\nfrom hdit_edu.cli import main\ntry: main(['--help'])\nexcept SystemExit: pass\n"
            "print([m for m in ('datasets', 'matplotlib', 'accelerate', 'pandas') if m in sys.modules])")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip().splitlines()[-1] == '[]', (r.stdout[-300:], r.stderr[-300:])


def test_a_command_leaves_the_thread_count_as_it_was(tiny_run, tmp_path):
    before = torch.get_num_threads()
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(['sample', '--checkpoint', str(tiny_run), '--n', '1', '--steps', '1', '--device', 'cpu',
                     '--threads', str(min(2, cpu_count())), '--out', str(tmp_path / 'g.png')]) == 0
    assert torch.get_num_threads() == before
