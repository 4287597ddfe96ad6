#!/usr/bin/env bash
# Fine-tune the default click model's mask decoder on this CPU (only the decoder learns; the image
# encoder stays frozen and its output is cached on disk in the run folder), on the fit part of the
# GlaS and EBHI training splits, each drawn equally often, with sessions shaped like the widget's
# local clicks (half of them prompt with the binarised mask; the loss weighs the click window 2x).
# Resumes from runs/click_cpu/last.pt when interrupted (rerun the same command).
#   bash benchmarks/click_cpu_training.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. benchmarks/devdata.sh
OMP_NUM_THREADS=${THREADS:-1} .venv/bin/napari-cosas train-decoder \
  --data "$dev/glas/fit/images" "$dev/glas/fit/masks" --data "$dev/ebhi/fit/images" "$dev/ebhi/fit/masks" \
  --out runs/click_cpu --start-from weights/click_default.pt --train decoder \
  --steps "${STEPS:-400}" --batch-size 8 --lr 1e-4 --max-rounds 3 --views 1 \
  --mask-prompts 0.5 --click-focus 1.0 --checkpoint-every 50 --device cpu
