"""A tiny denoiser network and data set for the training tests, and the script that `tests/test_multiproc.py` starts
with torchrun: `python -m torch.distributed.run --nproc_per_node 2 tests/mp_train.py OUT_DIR STEPS [GRAD_ACCUM]`.

Each process trains, then writes its own weights to `OUT_DIR/rank{r}.safetensors` and the loss history to
`OUT_DIR/rank{r}.json`, so the test can check that all processes hold the same weights."""
import json, sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import TensorDataset


@dataclass
class TinyConfig:
    width: int = 16
    num_classes: int = 3
    channels: int = 3


class TinyNet(nn.Module):
    "A small conv net with HDiT's forward contract `model(x, sigma, class_cond=None)` and a 'no class' slot."
    def __init__(self, config: TinyConfig = TinyConfig()):
        super().__init__()
        self.config, self.num_classes = config, config.num_classes
        w = config.width
        self.inp = nn.Conv2d(config.channels, w, 3, padding=1)
        self.class_emb = nn.Embedding(config.num_classes + 1, w)
        self.sigma_emb = nn.Linear(2, w)
        self.mid = nn.Conv2d(w, w, 3, padding=1)
        self.out = nn.Conv2d(w, config.channels, 3, padding=1)

    def forward(self, x, sigma, class_cond=None, mapping_cond=None):
        c_noise = sigma.log()[:, None] / 4
        c = self.sigma_emb(torch.cat([c_noise.sin(), c_noise.cos()], 1))
        if class_cond is not None: c = c + self.class_emb(class_cond)
        h = F.gelu(self.inp(x) + c[:, :, None, None])
        return self.out(F.gelu(self.mid(h)) + h)


def tiny_dataset(n: int = 48, size: int = 8, num_classes: int = 3, seed: int = 0):
    "Random images in [-1, 1] with smooth structure (so there is something to learn) and labels."
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 2, 2, generator=g) * 2 - 1
    x = F.interpolate(low, size=(size, size), mode='bilinear', align_corners=False)
    return TensorDataset(x, torch.randint(0, num_classes, (n,), generator=g))


def make_trainer(out_dir, config: TinyConfig = TinyConfig(), **kw):
    "A `Trainer` for `TinyNet` on `tiny_dataset`, identically initialised in every process."
    from hdit_edu.training import Trainer
    torch.manual_seed(0)
    model = TinyNet(config)
    opts = dict(out_dir=str(out_dir), steps=6, batch_size=8, progress=False, sample_n=0,
                sigma_sampler='log-normal')
    opts.update(kw)
    return Trainer(model, tiny_dataset(num_classes=config.num_classes), **opts)


def main(argv):
    from safetensors.torch import save_file
    out, steps = Path(argv[0]), int(argv[1])
    accum = int(argv[2]) if len(argv) > 2 else 1
    t = make_trainer(out, steps=steps, grad_accum=accum)
    t.fit()
    r = t.accelerator.process_index
    save_file({**{f'model.{k}': v.detach().contiguous() for k, v in t.model.state_dict().items()},
               **{f'ema.{k}': v.detach().contiguous() for k, v in t.ema.state_dict().items()}},
              str(out / f'rank{r}.safetensors'))
    (out / f'rank{r}.json').write_text(json.dumps({'losses': t.losses, 'world_size': t.accelerator.num_processes,
                                                   'distributed_type': str(t.accelerator.distributed_type)}))


if __name__ == '__main__':
    main(sys.argv[1:])
