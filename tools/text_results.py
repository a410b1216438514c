"""Scores of the text-to-emoji models, written to nbs/results/text_to_emoji.json (pages, README and model card read it).

Protocol: 256 prompts drawn (seed 0) from the captions of `openmoji_text_dataset(32)`, one sample each, DPM++(3M) SDE
50 steps, sampling seed 0, at guidance 1 and 3. Prompt accuracy: the shipped prompt classifier's top-1 and top-5 for
the sample's own prompt (`hdit_edu.prompts.prompt_accuracy`). FD: Fréchet distance in the shipped feature net's
features between the 256 samples and all captioned emoji; its floor is 256 real emoji against all of them.
A class-label model is asked for the prompt's OpenMoji group instead (it cannot read the caption).
Usage:
  python tools/text_results.py floor
  python tools/text_results.py score NAME --model RUN_DIR_OR_MODEL [--group equal_compute|models]
  python tools/text_results.py curve --run runs/openmoji-text
  python tools/text_results.py curve --run runs/openmoji-text2 --after runs/openmoji-text   (a second schedule's points)
  python tools/text_results.py grid --model openmoji-text --out nbs/images/text_prompts.png
  python tools/text_results.py skin --model openmoji-text
  python tools/text_results.py training --run runs/openmoji-text --train-command "..." --export-command "..."
  python tools/text_results.py training --run runs/openmoji-text2 --after runs/openmoji-text --train-command "..." ...
  python tools/text_results.py card      (writes hdit_edu/pretrained/MODEL_CARD_openmoji-text.md from the results)
Skin tones: the mean brightness (0-1) of the non-white pixels of 8 samples (guidance 3) of each person or hand
prompt with 'light skin tone' and with 'dark skin tone'.
"""
import argparse, json, random, sys, time
from pathlib import Path
import torch
from hdit_edu.data import openmoji_text_dataset, pil_to_tensor, image_grid
from hdit_edu.sampling import sample
from hdit_edu.quality import extract_features, frechet_distance
from hdit_edu.prompts import prompt_accuracy
from hdit_edu.checkpoint import load_checkpoint_model, list_checkpoints, read_checkpoint
from hdit_edu.flops import count_flops

RESULTS = Path(__file__).resolve().parents[1] / 'nbs' / 'results' / 'text_to_emoji.json'
GRID_PROMPTS = ['red heart', 'blue heart', 'fox', 'cat face', 'thumbs up light skin tone', 'thumbs up dark skin tone',
                'germany', 'pizza', 'grinning face', 'rocket', 'woman light skin tone', 'woman dark skin tone',
                'sun', 'deciduous tree', 'red apple', 'ghost']

SKIN_SUBJECTS = ['thumbs up', 'waving hand', 'raised hand', 'woman', 'man', 'person', 'baby', 'ok hand']

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
    p.add_argument('what', choices=['floor', 'score', 'curve', 'grid', 'skin', 'card', 'training'])
    p.add_argument('--train-command'); p.add_argument('--export-command')
    p.add_argument('name', nargs='?')
    p.add_argument('--model'); p.add_argument('--run'); p.add_argument('--group', default='models')
    p.add_argument('--every', type=int, default=1); p.add_argument('--out')
    p.add_argument('--cfg', type=float, default=3.)
    p.add_argument('--after', help='the run this one continued (--init): its steps and images come first')
    a = p.parse_args()
    torch.set_num_threads(1)
    cmd = 'python tools/' + Path(sys.argv[0]).name + ' ' + ' '.join(sys.argv[1:])
    if a.what == 'card': return write_card(load())
    if a.what == 'training':                  # how the shipped model was made, from its run's last checkpoint
        ck, res = read_checkpoint(list_checkpoints(a.run)[-1], verify=False), load()
        stage = dict(command=a.train_command, steps=ck['step'], images=ck['samples_seen'],
                     hours=round(ck['wall_time_s'] / 3600, 1), run=a.run)
        prev = res.get('training', {})
        prev = prev.get('stages') or ([{k: prev[k] for k in ('command', 'steps', 'images', 'hours', 'run')}]
                                      if prev.get('command') else [])
        stages = [s for s in prev if s['run'] == a.after] if a.after else []
        stages.append(stage)
        res['training'] = dict(stages=stages, export=a.export_command, steps=sum(s['steps'] for s in stages),
                               images=sum(s['images'] for s in stages),
                               hours=round(sum(s['hours'] for s in stages), 1), run=a.run)
        save(res); print(res['training']); return
    res, (ds, reals) = load(), data()
    if a.what == 'grid':
        model = load_checkpoint_model(a.model)
        x = sample(model, n=len(GRID_PROMPTS), size=32, steps=50, seed=0, cfg_scale=a.cfg, prompt=GRID_PROMPTS, threads=1)
        image_grid(x.clamp(-1, 1), nrow=8).resize((8 * 34 * 4 + 8, 2 * 34 * 4 + 8), 0).save(a.out)
        res['grid'] = dict(prompts=GRID_PROMPTS, cfg=a.cfg, image=str(Path(a.out).name), command=cmd)
        save(res); return
    if a.what == 'skin':
        model, out = load_checkpoint_model(a.model), {}
        for who in SKIN_SUBJECTS:
            row = {}
            for tone in ('light', 'dark'):
                x = sample(model, n=8, size=32, steps=50, seed=0, cfg_scale=3., prompt=f'{who} {tone} skin tone',
                           threads=1)
                x = (x.clamp(-1, 1) + 1) / 2
                row[tone] = round(x.mean(1)[x.min(1).values < 0.85].mean().item(), 3)
            out[who] = row; print(who, row, flush=True)
        res['skin_tone'] = dict(model=a.model, brightness=out, command=cmd)
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
        ckpts = list_checkpoints(a.model) if Path(a.model).is_dir() else []
        if ckpts: entry['images_seen'] = read_checkpoint(ckpts[-1], verify=False)['samples_seen']
        entry.update(params=sum(p.numel() for p in model.parameters()),
                     mflop_per_image=round(count_flops(model, (3, 32, 32)) / 1e6, 1), model=a.model, command=cmd)
        res.setdefault(a.group, {})[a.name] = entry
        save(res); return
    if a.what == 'curve':
        step0 = images0 = 0
        if a.after:                                # a second schedule: its points continue the first run's
            last = read_checkpoint(list_checkpoints(a.after)[-1], verify=False)
            step0, images0 = last['step'], last['samples_seen']
        every = list_checkpoints(a.run)
        ckpts = every[::a.every] + ([every[-1]] if (len(every) - 1) % a.every else [])   # and the last one
        prompts, groups = eval_set(ds)
        curve = {c['step']: c for c in res.get('curve', {}).get('points', [])}
        for ck in ckpts:
            step = step0 + int(ck.name.split('_')[-1])
            if step in curve: continue
            model = load_checkpoint_model(ck)
            x = draw(model, prompts, groups, a.cfg)
            acc = prompt_accuracy(x, prompts)
            seen = images0 + read_checkpoint(ck, verify=False)['samples_seen']
            curve[step] = dict(step=step, images=seen, top1=round(acc['top1'], 4), top5=round(acc['topk'], 4))
            if a.after: curve[step]['run'] = a.run
            print(curve[step], flush=True)
            old = res.get('curve', {})
            commands = [c for c in old.get('commands', [old.get('command')]) if c and c != cmd] + [cmd]
            res['curve'] = dict(run=old.get('run', a.run) if a.after else a.run, cfg=a.cfg,
                                points=[curve[k] for k in sorted(curve)], commands=commands)
            save(res)

CARD = Path(__file__).resolve().parents[1] / 'hdit_edu' / 'pretrained' / 'MODEL_CARD_openmoji-text.md'

def write_card(res):
    "The model card of the shipped text model, every number from the results file."
    m, fl, sk, cv = res['models']['openmoji-text'], res['floor'], res['skin_tone'], res['curve']
    pc = lambda v: f'{100 * v:.1f}%'
    skin = '\n'.join(f"| {who} | {b['light']:.3f} | {b['dark']:.3f} |" for who, b in sk['brightness'].items())
    curve = ', '.join(f"{p['images'] // 1000}k: {pc(p['top5'])}" for p in cv['points'])
    stages = res['training']['stages']
    recipe = '; then '.join(f"`{st['command']}` ({st['steps']:,} steps, {st['hours']} h)" for st in stages)
    if len(stages) > 1: recipe = 'Two stages: ' + recipe + ' — the second starts from the first\'s EMA weights'
    text = f"""# Model card: `openmoji-text`

A small text-conditional Hourglass Diffusion Transformer (HDiT) that draws 32×32 emoji from their English names. It
ships inside the `hdit_edu` package (`hdit_edu.load_pretrained('openmoji-text')`) for the text page of the course,
the prompt widget and `hdit-edu sample --checkpoint openmoji-text --prompt "fox" --cfg-scale 3`. A teaching model:
small enough to train on a laptop CPU, not a state-of-the-art generator.

| | |
|---|---|
| file | `openmoji-text.safetensors` (fp32 EMA weights) + `openmoji-text.json` (the `HDiTConfig`, its 1,744 words included) |
| architecture | `small_hdit_config(32)` with text: patch 4; depth 2, width 64, 7×7 neighborhood attention on the 8×8 token map; depth 4, width 128, global attention on the 4×4 map; a cross-attention sublayer after every self-attention; a 2-layer text encoder of width 128 whose mean token also enters the mapping network; {m['params'] / 1e6:.2f}M parameters, {m['mflop_per_image']} MFLOP per image |
| prompts | lower-case emoji names, e.g. 'fox', 'red heart', 'thumbs up dark skin tone', 'germany'; `''` is unconditional |
| sampling | `hdit_edu.sample(model, n=8, size=32, steps=50, prompt=..., cfg_scale=3)`: DPM++(3M) SDE |

## Training data
The {fl['n_data']:,} OpenMoji emoji that the `emoji` package (BSD) names, skin-tone variants included, rendered at 32 px
by `hdit_edu.data.openmoji_text_dataset`; one caption each (the CLDR name). Random horizontal flips, except for the
emoji whose name says left or right. Conditioning dropout 0.1 (to the empty prompt) for classifier-free guidance.

**Licence.** OpenMoji (https://openmoji.org) is released under CC BY-SA 4.0; the weights are trained on it and are
distributed under the same licence, with attribution: *emoji designed by OpenMoji – the open-source emoji and icon
project*. The hdit_edu code is MIT-licensed; this model file is not covered by the MIT licence.

## Recipe
{recipe}, then `{res['training']['export']}`. In all {res['training']['steps']:,} steps of batch 32
({res['training']['images']:,} training images; AdamW with the paper's betas and weight decay, EMA, a cosine learning-rate
decay to 5% after a short warm-up in each stage), on one CPU thread: {res['training']['hours']} hours.

## Evaluation
256 prompts drawn at random (seed 0) from the captions, one sample each, DPM++(3M) SDE 50 steps, seed 0. Prompt
accuracy: the shipped prompt classifier (`hdit_edu.prompts.prompt_accuracy`) ranks all {fl['n_data']:,} captions for
each sample; top-1 / top-5 count the samples whose own prompt is first / among the first five. FD: Fréchet distance in
the shipped feature net's features against all captioned emoji (256 real emoji score {fl['fd']}).

| | top-1 | top-5 | FD |
|---|---|---|---|
| guidance 1 | {pc(m['cfg1']['top1'])} | {pc(m['cfg1']['top5'])} | {m['cfg1']['fd']} |
| guidance 3 | {pc(m['cfg3']['top1'])} | {pc(m['cfg3']['top5'])} | {m['cfg3']['fd']} |
| the real emoji (the classifier's ceiling) | {pc(fl['real_top1'])} | {pc(fl['real_top5'])} | |

Top-5 accuracy at guidance 3 during training (thousands of images seen): {curve}.

Skin tones: mean brightness (0 black, 1 white) of the non-white pixels of 8 samples at guidance 3:

| prompt | light skin tone | dark skin tone |
|---|---|---|
{skin}

## Limitations and intended use
For learning and small experiments. It knows OpenMoji's style at 32 px and the 1,744 words of the emoji names: any
other word is reported as unknown and read as `<unk>`. Fine detail (small symbols, text in flags) is beyond 32 px
and this model size. Do not use it to make emoji that pass for OpenMoji's own without the attribution the licence
requires.
"""
    CARD.write_text(text)
    print('wrote', CARD)

if __name__ == '__main__': main()
