"""The main job's recipe, measured: train `hdit-edu train` with one option changed at a time and score each run with
FD_OM at three sampling seeds; writes `nbs/results/main_job_recipe.json` (read by the quality notebook's table).

Every row is `hdit-edu train --out runs/recipe/NAME --minutes 0 --quiet OPTIONS` (the whole 3000 steps), then 210
samples at 32 px (DPM++(3M) SDE, 50 steps, labels of real half B) per sampling seed, scored against real half A.
A finished run in runs/recipe/NAME is scored without training again (an unfinished one is resumed); rows already in
the results file are kept.
The stored run: `OMP_NUM_THREADS=1 python tools/main_job_recipe.py` (about 45 minutes on one CPU thread).
"""
import argparse, json, platform, sys
from pathlib import Path
import torch
from hdit_edu.cli import main as hdit_edu_cli
from hdit_edu.checkpoint import list_checkpoints, load_checkpoint_model
from hdit_edu.flops import count_flops
from hdit_edu.quality import openmoji_halves
sys.path.insert(0, str(Path(__file__).parent))
from score_run import score     # the quality protocol: 210 samples, DPM++(3M) SDE with 50 steps

ROWS = {   # name: options of `hdit-edu train` (each changes one thing of the default)
    'the default (cosine from 2e-3, flips)': [],
    "constant lr 5e-4 (the paper's)": ['--lr', '5e-4', '--lr-schedule', 'constant', '--warmup-steps', '0'],
    'without horizontal flips': ['--no-hflip'],
    'without conditioning dropout': ['--cond-dropout', '0'],
    'a longer EMA (power 0.85)': ['--ema-power', '0.85'],
    'deeper: depths 2 and 6': ['--depths', '2', '6']}

def run_dir(root, name): return Path(root) / ''.join(c if c.isalnum() else '_' for c in name)[:40].strip('_')

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--rows', nargs='*', default=list(ROWS)); p.add_argument('--seeds', type=int, nargs='*', default=[0, 1, 2])
    p.add_argument('--root', default='runs/recipe'); p.add_argument('--out', default='nbs/results/main_job_recipe.json')
    a = p.parse_args()
    out = Path(a.out)
    res = json.loads(out.read_text()) if out.exists() else {}
    res.update(command=('OMP_NUM_THREADS=1 python tools/main_job_recipe.py ' + ' '.join(sys.argv[1:])).strip(), seeds=a.seeds,
               protocol='210 samples at 32 px, DPM++(3M) SDE 50 steps, labels of real half B, FD_OM against half A',
               environment=dict(torch=torch.__version__, python=platform.python_version(),
                                threads=torch.get_num_threads()), rows=res.get('rows', {}))
    labels = openmoji_halves(32)[3]
    for name in a.rows:
        if name in res['rows']: print(f'{name}: kept'); continue
        run = run_dir(a.root, name)
        done = list_checkpoints(run) and json.loads((list_checkpoints(run)[-1] / 'trainer.json').read_text())['step']
        if done != 3000:   # a new run, or one stopped part way: `hdit-edu train` resumes it
            assert hdit_edu_cli(['train', '--out', str(run), '--minutes', '0', '--quiet', *ROWS[name]]) == 0
        ckpt = list_checkpoints(run)[-1]
        info = json.loads((ckpt / 'trainer.json').read_text())
        row = dict(options=' '.join(ROWS[name]), step=info['step'], train_minutes=info['wall_time_s'] / 60)
        for weights in (['ema', 'raw'] if not ROWS[name] else ['ema']):
            model = load_checkpoint_model(ckpt, ema=weights == 'ema')
            row['params'], row['mmac_per_image'] = sum(q.numel() for q in model.parameters()), count_flops(model, (3, 32, 32)) / 1e6
            fds = {}
            for s in a.seeds:
                r = score(model, 32, labels, seed=s); fds[s] = r['fd']; row['floor'] = r['floor']
            key = '' if weights == 'ema' else 'raw_'
            row[key + 'fd'] = {str(s): v for s, v in fds.items()}
            row[key + 'fd_mean'] = sum(fds.values()) / len(fds)
        print(f"{name}: FD_OM {row['fd']} mean {row['fd_mean']:.1f} (floor {row['floor']:.1f})", flush=True)
        res['rows'][name] = row
        out.write_text(json.dumps(res, indent=1) + '\n')
    print(f'wrote {out}')
