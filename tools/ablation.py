"""The paper's ablation in miniature: train every row of `hdit_edu.ablation.ABLATION` at equal training compute on
64 px OpenMoji and score it with FD_OM; writes `nbs/results/ablation.json` and a 4×4 sample grid per row.

Each row trains with `train_simple` (batch 32, lr 2e-3, flips, cond. dropout 0.1) for the steps that give it the
training compute of `--steps` steps of HDiT (so the DiT-like model, 4.6× the cost per image, gets fewer steps), then
draws 210 samples (DPM++(3M) SDE, 50 steps, labels of real half B) with each sampling seed and scores them against
real half A. Rows already in the results file with the same settings are kept (the run resumes).
The stored run: `OMP_NUM_THREADS=1 python tools/ablation.py --steps 800` (about an hour on one CPU thread).
"""
import argparse, json, platform, re, sys, time
from pathlib import Path
import torch
from hdit_edu.ablation import ABLATION, equal_compute_steps, run_ablation_row
from hdit_edu.data import openmoji_dataset, ImageDataset, image_grid

def slug(name): return re.sub('[^a-z0-9]+', '-', name.lower()).strip('-')

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--steps', type=int, default=800, help="HDiT's steps; the other rows get equal compute")
    p.add_argument('--size', type=int, default=64)
    p.add_argument('--rows', nargs='*', default=list(ABLATION), help='which rows (default: all)')
    p.add_argument('--seeds', type=int, nargs='*', default=[0, 1], help='sampling seeds to score')
    p.add_argument('--n', type=int, default=210, help='samples per score')
    p.add_argument('--out', default='nbs/results/ablation.json')
    p.add_argument('--images', default='nbs/images/ablation')
    a = p.parse_args()
    out, images = Path(a.out), Path(a.images)
    out.parent.mkdir(parents=True, exist_ok=True); images.mkdir(parents=True, exist_ok=True)
    settings = dict(steps=a.steps, size=a.size, seeds=a.seeds, n=a.n, batch_size=32, lr=2e-3,
                    sampler='dpmpp_3m_sde', sampler_steps=50)
    res = json.loads(out.read_text()) if out.exists() else {}
    if res.get('settings') != settings: res = {}
    res.update(settings=settings, command=('OMP_NUM_THREADS=1 python tools/ablation.py ' + ' '.join(sys.argv[1:])).strip(),
               environment=dict(torch=torch.__version__, python=platform.python_version(),
                                threads=torch.get_num_threads()), rows=res.get('rows', {}))
    data = ImageDataset(openmoji_dataset(a.size), a.size, hflip=False)      # train_simple flips itself
    for name in a.rows:
        if name in res['rows']: print(f'{name}: kept from {out}'); continue
        row = run_ablation_row(name, data, equal_compute_steps(name, steps=a.steps, size=a.size), a.size,
                               seeds=tuple(a.seeds), n_samples=a.n)
        grid = image_grid(row.pop('samples'), nrow=4, padding=2)
        file = images / f'{slug(name)}.png'
        grid.save(file)
        row['image'] = str(file)
        res['rows'][name] = row
        res['finished'] = time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())
        out.write_text(json.dumps(res, indent=1) + '\n')
    print(f'wrote {out}')
