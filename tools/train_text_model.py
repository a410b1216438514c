"""Recipe of the shipped `openmoji-text` model: a small text-to-emoji HDiT (cross-attention + pooled text).

Trains with the package's `Trainer` on every OpenMoji emoji that has an English name (`openmoji_text_dataset`),
one caption each, and keeps every checkpoint so `tools/text_results.py` can draw prompt accuracy against images seen.
The shipped model's exact commands (also in nbs/results/text_to_emoji.json and its model card): two stages,
  python tools/train_text_model.py --out runs/openmoji-text --steps 30000 --threads 1
  python tools/train_text_model.py --out runs/openmoji-text2 --init runs/openmoji-text --steps 26000 --lr 1e-3 \
      --warmup-steps 500 --threads 1
  python tools/train_text_model.py --out runs/openmoji-text2 --export hdit_edu/pretrained/openmoji-text
Run a stage again to resume it; `--init` starts a second cosine schedule from a run's EMA weights.
"""
import argparse, torch
from hdit_edu.model import HDiT, small_hdit_config
from hdit_edu.model_files import save_model
from hdit_edu.data import openmoji_text_dataset, ImageDataset
from hdit_edu.text import WordTokenizer
from hdit_edu.training import Trainer, TrainConfig
from hdit_edu.checkpoint import load_checkpoint_model, find_checkpoint

def text_config(captions, size=32, width=64, depths=(2, 4), cross_attention=None, text_pooled=True,
                text_width=128, text_depth=2):
    "The shipped text model's config: the main job's model plus a text encoder over the captions' words."
    vocab = WordTokenizer.from_captions(captions).vocab
    return small_hdit_config(size, width=width, depths=tuple(depths), text_vocab=vocab, text_width=text_width,
                             text_depth=text_depth, cross_attention=cross_attention, text_pooled=text_pooled)

if __name__ == '__main__':
    p = argparse.ArgumentParser()
    p.add_argument('--out', default='runs/openmoji-text')
    p.add_argument('--size', type=int, default=32)
    p.add_argument('--width', type=int, default=64)
    p.add_argument('--depths', type=int, nargs=2, default=(2, 4))
    p.add_argument('--steps', type=int, default=24000)
    p.add_argument('--minutes', type=float, default=None)
    p.add_argument('--batch-size', type=int, default=32)
    p.add_argument('--lr', type=float, default=2e-3)
    p.add_argument('--warmup-steps', type=int, default=100)
    p.add_argument('--checkpoint-every', type=int, default=1000)
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--cross-attention', type=int, nargs='*', default=None,
                   help='levels with cross-attention (default: all; none given: no cross-attention)')
    p.add_argument('--no-pooled', action='store_true', help='no pooled text vector into the mapping network')
    p.add_argument('--classes', action='store_true',
                   help='the baseline: no text, one class label per OpenMoji group instead of the caption')
    p.add_argument('--init', default=None,
                   help="start from this run's (or checkpoint's) EMA weights: a second schedule on a trained model")
    p.add_argument('--export', default=None, help='write the newest checkpoint\'s EMA model to this path and stop')
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    if a.export:
        save_model(load_checkpoint_model(find_checkpoint(a.out)), a.export); print('exported', a.export); raise SystemExit
    hf = openmoji_text_dataset(a.size)
    torch.manual_seed(0)
    if a.classes:                                                  # same images, a group label instead of text
        ds = ImageDataset(hf, a.size, hflip=False)
        model = HDiT(small_hdit_config(a.size, num_classes=ds.num_classes, width=a.width, depths=tuple(a.depths)))
    else:
        ds = ImageDataset(hf, a.size, hflip=False, text_column='text')   # the Trainer flips (not what names a side)
        model = HDiT(text_config(hf['text'], a.size, a.width, a.depths, a.cross_attention, not a.no_pooled))
    if a.init:                                                     # same architecture, trained weights
        model.load_state_dict(load_checkpoint_model(find_checkpoint(a.init)).state_dict())
        print('initialised from', find_checkpoint(a.init))
    print(f'{len(ds)} captioned emoji, {"group labels" if a.classes else f"{len(model.text_encoder.tokenizer.vocab)} words"}, '
          f'{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters')
    t = Trainer(model, ds, TrainConfig(out_dir=a.out, steps=a.steps, minutes=a.minutes, batch_size=a.batch_size,
                                       lr=a.lr, lr_schedule='cosine', warmup_steps=a.warmup_steps,
                                       checkpoint_every=a.checkpoint_every, keep_checkpoints=1000, log_every=100,
                                       sample_n=16))
    t.fit()
