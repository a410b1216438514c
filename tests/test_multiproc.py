"""Issue 6: training on several processes (torchrun, gloo on CPU, Accelerate MULTI_CPU) gives the same weights as one
process over the same global batches, every process holds the same weights, and a checkpoint written by 2 processes
resumes in 1 process with the same losses as an uninterrupted run."""
import json, os, socket, subprocess, sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
from mp_train import make_trainer  # noqa: E402

pytestmark = pytest.mark.multiproc
HERE = Path(__file__).parent
STEPS, MORE = 4, 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture(scope='module')
def two_proc_run(tmp_path_factory):
    "Train STEPS steps with 2 processes and gradient accumulation 2 (global batch 8 = 2 procs x 2 micro-batches x 2)."
    out = tmp_path_factory.mktemp('mp') / 'run'
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'MPLBACKEND': 'Agg', 'HF_DATASETS_OFFLINE': '1', 'HF_HUB_OFFLINE': '1',
           'PYTHONPATH': os.pathsep.join([str(HERE.parent), os.environ.get('PYTHONPATH', '')])}
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', '--nnodes', '1',
           '--master_addr', '127.0.0.1', '--master_port', str(_free_port()),
           str(HERE / 'mp_train.py'), str(out), str(STEPS), '2']
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, f'torchrun failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}'
    return out


def test_two_processes_really_ran_distributed(two_proc_run):
    for r in (0, 1):
        info = json.loads((two_proc_run / f'rank{r}.json').read_text())
        assert info['world_size'] == 2 and info['distributed_type'].endswith('MULTI_CPU')


def test_all_processes_hold_the_same_weights(two_proc_run):
    a, b = load_file(str(two_proc_run / 'rank0.safetensors')), load_file(str(two_proc_run / 'rank1.safetensors'))
    assert a.keys() == b.keys()
    for k in a: assert torch.equal(a[k], b[k]), k   # bit-identical: same averaged gradients, same updates, same EMA


def test_two_processes_match_one_process(two_proc_run, tmp_path):
    one = make_trainer(tmp_path / 'one', steps=STEPS)            # 1 process, no accumulation, same global batches
    one.fit()
    two = load_file(str(two_proc_run / 'rank0.safetensors'))
    diffs = [(two[f'model.{k}'] - v).abs().max().item() for k, v in one.model.state_dict().items()]
    diffs += [(two[f'ema.{k}'] - v).abs().max().item() for k, v in one.ema.state_dict().items()]
    print(f'max |2 processes - 1 process| weight difference: {max(diffs):.3g}')
    assert max(diffs) < 1e-5
    # and the training actually moved the weights by much more than that
    init = make_trainer(tmp_path / 'init').model.state_dict()
    assert max((v - init[k]).abs().max().item() for k, v in one.model.state_dict().items()) > 1e-3
    l2 = json.loads((two_proc_run / 'rank0.json').read_text())['losses']
    torch.testing.assert_close(torch.tensor(l2), torch.tensor(one.losses), rtol=1e-5, atol=0)


def test_two_process_checkpoint_resumes_in_one_process(two_proc_run, tmp_path):
    import shutil
    run = tmp_path / 'resumed'
    shutil.copytree(two_proc_run / 'checkpoints', run / 'checkpoints')
    resumed = make_trainer(run, steps=STEPS + MORE)
    resumed.fit()
    assert resumed.losses[:STEPS] == json.loads((two_proc_run / 'rank0.json').read_text())['losses']
    straight = make_trainer(tmp_path / 'straight', steps=STEPS + MORE)
    straight.fit()
    torch.testing.assert_close(torch.tensor(resumed.losses[STEPS:]), torch.tensor(straight.losses[STEPS:]),
                               rtol=1e-5, atol=0)
    meta = json.loads((run / 'checkpoints' / f'step_{STEPS:07d}' / 'trainer.json').read_text())
    assert meta['world_size'] == 2 and meta['grad_accum'] == 2 and meta['global_batch'] == 8
