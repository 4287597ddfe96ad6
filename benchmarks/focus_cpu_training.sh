#!/usr/bin/env bash
# Train the focus refiner (weights/focus_default.pt) on this CPU, from the fit part of the GlaS and
# EBHI training splits (the held-out part is for choosing, the test sets for reporting only):
#  1. record-focus plays simulated click sessions with the frozen default click model (from the
#     automatic mask, a degraded ground truth and an empty mask) and stores a crop around every
#     click; GlaS and EBHI record at the same time, one torch thread each (16 and 25 min here);
#  2. train-focus fits the refiner on those crops (2,500 steps of 16, one thread; 0.6-1.1 s a step
#     here, 35 min; it resumes from runs/focus/train1/last.pt when interrupted: rerun the command).
# The records hold crops of GlaS images: they stay in runs/ (git-ignored), never in the project.
#   bash benchmarks/focus_cpu_training.sh && cp runs/focus/train1/refiner.pt weights/focus_default.pt
set -euo pipefail
cd "$(dirname "$0")/.."
. benchmarks/devdata.sh
cli=".venv/bin/napari-cosas"
export OMP_NUM_THREADS=1
[ -f runs/focus/rec0_glas.npz ] || $cli record-focus --data "$dev/glas/fit/images" "$dev/glas/fit/masks" \
  --out runs/focus/rec0_glas.npz --max-clicks 10 &
[ -f runs/focus/rec0_ebhi.npz ] || $cli record-focus --data "$dev/ebhi/fit/images" "$dev/ebhi/fit/masks" \
  --out runs/focus/rec0_ebhi.npz --images 180 --max-clicks 8 &
wait
$cli train-focus --records runs/focus/rec0_glas.npz runs/focus/rec0_ebhi.npz --out runs/focus/train1 \
  --steps 2500 --batch-size 16 --lr 2e-3
