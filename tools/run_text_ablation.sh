#!/usr/bin/env bash
# The equal-compute comparison of the text page: the main job's budget (3,000 steps x 32 images at 32 px, its
# recipe), the same captioned emoji, five ways to condition. Each run: one CPU thread. Scored by tools/text_results.py.
set -e
T="python tools/train_text_model.py --steps 3000 --checkpoint-every 3000 --threads 1"
$T --out runs/ablation/classes --classes
$T --out runs/ablation/pooled --cross-attention
$T --out runs/ablation/cross --no-pooled
$T --out runs/ablation/both
$T --out runs/ablation/both-coarse --cross-attention 1
