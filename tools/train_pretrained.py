"""Recipe of the shipped `openmoji64` model: a small HDiT with neighborhood attention on its fine level.

It continues from the earlier shifted-window `openmoji64` weights (the attention type changes no parameter shapes,
so every weight carries over), then trains with the package's `Trainer` on OpenMoji at 64 px (faces, nature, food).
Usage: `python tools/train_pretrained.py --init path/to/old.safetensors --out runs/openmoji64-na --minutes 120`.
Run the same command again to resume. Export the EMA weights with `hdit_edu.model_files.save_model`.
"""
import argparse, torch
from hdit_edu.model import HDiT, small_hdit_config
from hdit_edu.model_files import load_model
from hdit_edu.data import openmoji_dataset, ImageDataset
from hdit_edu.training import Trainer, TrainConfig
from hdit_edu.checkpoint import list_checkpoints

p = argparse.ArgumentParser()
p.add_argument('--init', default=None, help='weights to start from (a model .safetensors); omitted: random')
p.add_argument('--out', default='runs/openmoji64-na')
p.add_argument('--steps', type=int, default=40000)
p.add_argument('--minutes', type=float, default=None)
p.add_argument('--batch-size', type=int, default=32)
p.add_argument('--lr', type=float, default=5e-4)
p.add_argument('--lr-schedule', default='constant', choices=['constant', 'cosine'])
p.add_argument('--warmup-steps', type=int, default=0)
p.add_argument('--lr-final', type=float, default=0.05)
p.add_argument('--checkpoint-every', type=int, default=500)
p.add_argument('--threads', type=int, default=1)
p.add_argument('--no-hflip', action='store_true', help='no random horizontal flips (the shipped weights were trained without)')
a = p.parse_args()
torch.set_num_threads(a.threads)
ds = ImageDataset(openmoji_dataset(64), 64, hflip=not a.no_hflip)
torch.manual_seed(0)
model = HDiT(small_hdit_config(64, num_classes=ds.num_classes, width=64, depths=(2, 4), attention='neighborhood'))
if a.init and not list_checkpoints(a.out):
    model.load_state_dict(load_model(a.init).state_dict())
    print(f'initialised from {a.init}')
t = Trainer(model, ds, TrainConfig(out_dir=a.out, steps=a.steps, minutes=a.minutes, batch_size=a.batch_size, lr=a.lr,
                                   lr_schedule=a.lr_schedule, warmup_steps=a.warmup_steps, lr_final=a.lr_final,
                                   checkpoint_every=a.checkpoint_every, keep_checkpoints=200, log_every=100))
t.fit()
