"""Score checkpoints of a training run with FD_OM (hdit_edu.quality), as the quality notebook scores models.

For each checkpoint (or the shipped model's name): 210 samples, DPM++(3M) SDE with 50 steps, seed 0 (or --seed), class labels of
real half B (the data's class mix), no guidance; prints FD_OM, the real-vs-real floor at the same size and n, the
ratio, and the training images seen. Usage: `python tools/score_run.py runs/openmoji64-na [--every 2] [--ema/--raw]`
or `python tools/score_run.py openmoji64`.
"""
import argparse, json, time, torch
from pathlib import Path
from hdit_edu.diffusion import Denoiser
from hdit_edu.sampling import sample
from hdit_edu.quality import openmoji_halves, openmoji_score
from hdit_edu.model_files import load_pretrained, pretrained_models
from hdit_edu.checkpoint import list_checkpoints, load_checkpoint_model

def score(model, size, labels, steps=50, seed=0):
    t0 = time.perf_counter()
    x = sample(Denoiser(model), len(labels), size, sampler='dpmpp_3m_sde', steps=steps, class_cond=labels, seed=seed)
    return openmoji_score(x) | dict(seconds=time.perf_counter() - t0)

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('what'); p.add_argument('--size', type=int, default=64); p.add_argument('--last', type=int, default=1)
    p.add_argument('--threads', type=int, default=1); p.add_argument('--seed', type=int, default=0); p.add_argument('--raw', action='store_true')
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    labels = openmoji_halves(a.size)[3]
    if a.what in pretrained_models(): todo = [(a.what, load_pretrained(a.what), None)]
    else:
        todo = [(str(c), None, c) for c in list_checkpoints(a.what)[-a.last:]]
    for name, model, ckpt in todo:
        if model is None: model = load_checkpoint_model(ckpt, ema=not a.raw)
        seen = json.loads((Path(ckpt) / 'trainer.json').read_text()).get('samples_seen') if ckpt else None
        r = score(model, a.size, labels, seed=a.seed)
        print(f"{name}: FD_OM {r['fd']:.1f}  floor {r['floor']:.1f}  ratio {r['ratio']:.2f}  images seen {seen}  "
              f"({r['seconds']:.0f} s)", flush=True)
