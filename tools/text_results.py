"""Scores of the text-to-emoji models, written to nbs/results/text_to_emoji.json (pages, README and model card read it).

Protocol: 256 prompts drawn (seed 0) from the captions of `openmoji_text_dataset(32)`, one sample each, DPM++(3M) SDE
50 steps, sampling seed 0, at guidance 1 and 3. Prompt accuracy: the shipped prompt classifier's top-1 and top-5 for
the sample's own prompt (`hdit_edu.quality.prompt_accuracy`). FD: Fréchet distance in the shipped feature net's
features between the 256 samples and all captioned emoji; its floor is 256 real emoji against all of them.
A class-label model is asked for the prompt's OpenMoji group instead (it cannot read the caption).
Usage:
  python tools/text_results.py floor
  python tools/text_results.py score NAME --model RUN_DIR_OR_MODEL [--group equal_compute|models]
  python tools/text_results.py curve --run runs/openmoji-text
  python tools/text_results.py grid --model openmoji-text --out nbs/images/text_prompts.png
"""
import argparse, json, random, sys, time
from pathlib import Path
import torch
from hdit_edu.data import openmoji_text_dataset, pil_to_tensor, image_grid
from hdit_edu.sampling import sample
from hdit_edu.quality import prompt_accuracy, extract_features, frechet_distance
from hdit_edu.training import load_checkpoint_model, list_checkpoints, read_checkpoint
from hdit_edu.flops import count_flops

RESULTS = Path(__file__).resolve().parents[1] / 'nbs' / 'results' / 'text_to_emoji.json'
GRID_PROMPTS = ['red heart', 'blue heart', 'fox', 'cat face', 'thumbs up light skin tone', 'thumbs up dark skin tone',
                'flag germany', 'pizza', 'grinning face', 'rocket', 'woman light skin tone', 'woman dark skin tone',
                'sun', 'tree', 'red apple', 'ghost']

def load():
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {}

def save(d):
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(d, indent=1) + '\n')

def data():
    ds = openmoji_text_dataset(32)
    return ds, torch.stack([pil_to_tensor(im) for im in ds['image']])

def eval_set(ds, n=256, seed=0):
    idx = random.Random(seed).sample(range(len(ds)), n)
    return [ds['text'][i] for i in idx], [ds['label'][i] for i in idx]

def draw(model, prompts, groups, cfg, steps=50, seed=0):
    kw = dict(prompt=prompts) if model.text_encoder is not None else dict(class_cond=torch.tensor(groups))
    return sample(model, n=len(prompts), size=32, steps=steps, seed=seed, cfg_scale=cfg, threads=1, **kw)

def score(model, ds, reals_feats, cfgs=(1., 3.), n=256):
    prompts, groups = eval_set(ds, n)
    out = {}
    for cfg in cfgs:
        t0 = time.time()
        x = draw(model, prompts, groups, cfg)
        acc = prompt_accuracy(x, prompts)
        out[f'cfg{cfg:g}'] = dict(top1=round(acc['top1'], 4), top5=round(acc['topk'], 4),
                                  fd=round(frechet_distance(extract_features(x), reals_feats), 2),
                                  seconds=round(time.time() - t0, 1))
        print(cfg, out[f'cfg{cfg:g}'], flush=True)
    return out

def main():
    p = argparse.ArgumentParser()
    p.add_argument('what', choices=['floor', 'score', 'curve', 'grid'])
    p.add_argument('name', nargs='?')
    p.add_argument('--model'); p.add_argument('--run'); p.add_argument('--group', default='models')
    p.add_argument('--every', type=int, default=1); p.add_argument('--out')
    p.add_argument('--cfg', type=float, default=3.)
    a = p.parse_args()
    torch.set_num_threads(1)
    cmd = 'python tools/' + Path(sys.argv[0]).name + ' ' + ' '.join(sys.argv[1:])
    res, (ds, reals) = load(), data()
    if a.what == 'grid':
        model = load_checkpoint_model(a.model)
        x = sample(model, n=len(GRID_PROMPTS), size=32, steps=50, seed=0, cfg_scale=a.cfg, prompt=GRID_PROMPTS, threads=1)
        image_grid(x.clamp(-1, 1), nrow=8).resize((8 * 34 * 4 + 8, 2 * 34 * 4 + 8), 0).save(a.out)
        res['grid'] = dict(prompts=GRID_PROMPTS, cfg=a.cfg, image=str(Path(a.out).name), command=cmd)
        save(res); return
    feats = extract_features(reals)
    if a.what == 'floor':
        g = torch.Generator().manual_seed(0)
        real = reals[torch.randperm(len(reals), generator=g)[:256]]
        prompts, _ = eval_set(ds)
        acc = prompt_accuracy(torch.stack([reals[ds['text'].index(t)] for t in prompts]), prompts)
        res['floor'] = dict(fd=round(frechet_distance(extract_features(real), feats), 2),
                            real_top1=round(acc['top1'], 4), real_top5=round(acc['topk'], 4), n_data=len(ds),
                            command=cmd)
        print(res['floor']); save(res); return
    if a.what == 'score':
        model = load_checkpoint_model(a.model)
        entry = score(model, ds, feats)
        try: entry['images_seen'] = read_checkpoint(list_checkpoints(a.model)[-1], verify=False)['meta']['step'] * 32
        except Exception: pass
        entry.update(params=sum(p.numel() for p in model.parameters()),
                     mflop_per_image=round(count_flops(model, (3, 32, 32)) / 1e6, 1), model=a.model, command=cmd)
        res.setdefault(a.group, {})[a.name] = entry
        save(res); return
    if a.what == 'curve':
        ckpts = list_checkpoints(a.run)[::a.every]
        prompts, groups = eval_set(ds)
        curve = {c['step']: c for c in res.get('curve', {}).get('points', [])}
        for ck in ckpts:
            step = int(ck.name.split('_')[-1])
            if step in curve: continue
            model = load_checkpoint_model(ck)
            x = draw(model, prompts, groups, a.cfg)
            acc = prompt_accuracy(x, prompts)
            curve[step] = dict(step=step, images=step * 32, top1=round(acc['top1'], 4), top5=round(acc['topk'], 4))
            print(curve[step], flush=True)
            res['curve'] = dict(run=a.run, cfg=a.cfg, points=[curve[k] for k in sorted(curve)], command=cmd)
            save(res)

if __name__ == '__main__': main()
