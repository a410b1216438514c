"""Train the shipped prompt classifier: every captioned OpenMoji emoji its own class, at 32 px.

It judges whether a text model drew what it was asked (`hdit_edu.prompts.prompt_accuracy`). Trained on renders
with small zooms, shifts, blur and noise (no mirror: left and right are different emoji), so generated images are
judged by what they show. It is checked on renders it never saw: each emoji drawn with fresh augmentations.
Usage: `python tools/train_prompt_classifier.py` (writes hdit_edu/pretrained/prompts_openmoji32.*).
"""
import argparse, json, time, torch
from hdit_edu.data import openmoji_text_dataset, pil_to_tensor, OPENMOJI_CREDIT
from hdit_edu.quality import train_feature_net, save_feature_net
from hdit_edu.prompts import prompt_augment, prompt_accuracy, load_prompt_classifier, PROMPT_CLASSIFIER

p = argparse.ArgumentParser()
p.add_argument('--epochs', type=int, default=80)
p.add_argument('--out', default=f'hdit_edu/pretrained/{PROMPT_CLASSIFIER}')
p.add_argument('--threads', type=int, default=1)
a = p.parse_args()
torch.set_num_threads(a.threads)
ds = openmoji_text_dataset(32)
x = torch.stack([pil_to_tensor(im) for im in ds['image']])
t0 = time.time()
net = train_feature_net(x, None, epochs=a.epochs, batch_size=128, lr=3e-3, in_size=32, widths=(32, 64, 128, 256),
                        feat_dim=256, augment=prompt_augment)
net.captions = list(ds['text'])
clean = prompt_accuracy(x, net.captions, net)
aug = prompt_accuracy(prompt_augment(x, torch.Generator().manual_seed(1234)), net.captions, net)
checks = dict(clean_top1=clean['top1'], clean_top5=clean['topk'], augmented_top1=aug['top1'], augmented_top5=aug['topk'])
print(json.dumps(checks), f'{time.time() - t0:.0f} s')
save_feature_net(net, a.out, captions=net.captions, checks=checks, epochs=a.epochs,
                 trained_on=f"{len(x)} OpenMoji emoji with English names at 32 px, each its own class, "
                            f"with zoom/shift/blur/noise augmentation. Emoji by {OPENMOJI_CREDIT}",
                 history=net.history)
assert load_prompt_classifier(a.out).captions == net.captions
