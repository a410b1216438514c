"""Make the README's pictures of the shipped model (run from the repository root after retraining `openmoji64`).

`nbs/images/samples_openmoji64.png`: 32 samples, no guidance, classes cycling faces, nature, food.
`nbs/images/samples_openmoji64_cfg3.png`: one row of 8 per class with classifier-free guidance 3.
Both: DPM++(3M) SDE, 50 steps, seed 0. Usage: `python tools/readme_samples.py [--weights path.safetensors]`.
"""
import argparse, torch
from hdit_edu.model_files import load_pretrained, load_model
from hdit_edu.diffusion import Denoiser
from hdit_edu.sampling import sample
from hdit_edu.data import image_grid

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument('--weights', default=None, help='a saved model (default: the shipped openmoji64)')
p.add_argument('--out', default='nbs/images')
a = p.parse_args()
torch.set_num_threads(1)
den = Denoiser(load_model(a.weights) if a.weights else load_pretrained('openmoji64'))
x = sample(den, 32, 64, steps=50, seed=0, class_cond=torch.arange(32) % 3)
image_grid(x, nrow=8).save(f'{a.out}/samples_openmoji64.png')
x = sample(den, 24, 64, steps=50, seed=0, class_cond=torch.arange(24) // 8, cfg_scale=3.)
image_grid(x, nrow=8).save(f'{a.out}/samples_openmoji64_cfg3.png')
print(f'wrote {a.out}/samples_openmoji64.png and {a.out}/samples_openmoji64_cfg3.png')
