#!/usr/bin/env bash
# Fine-tuning the default segmenter with its backbone frozen (Rein + head learn), the command a
# user runs on exported corrections, at the scale a 2-core CPU affords. Trains on the fit part of
# the GlaS and EBHI training splits (scripts/split_holdout.py), validates on their held-out part
# every 100 steps (step 0 = the default segmenter, which is kept unless a step validates better),
# then scores the kept model and the default on GlaS testA and EBHI val, which chose nothing.
#
#   bash benchmarks/segmenter_finetune.sh      # STEPS=600 BATCH=8 LR=5e-5; about 45 min on 2 cores
#
# The run goes to runs/segmenter_finetune/ (resumable), scores to
# benchmarks/results/segmenter_finetune/, the table to benchmarks/segmenter_finetune.md.
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${STEPS:-600}; batch=${BATCH:-8}; lr=${LR:-5e-5}; device=${DEVICE:-cpu}; workers=${WORKERS:-1}
dev=${DEVDATA:-.devdata}
cli=".venv/bin/napari-cosas"
[ -d "$dev/glas/train" ] || .venv/bin/python scripts/prepare_training_data.py --out "$dev"
# the held-out images of benchmarks/holdout.py: every 6th GlaS image (15), every 30th EBHI image (19)
[ -d "$dev/glas/holdout" ] || .venv/bin/python scripts/split_holdout.py "$dev/glas/train" "$dev/glas" --every 6
[ -d "$dev/ebhi/holdout" ] || .venv/bin/python scripts/split_holdout.py "$dev/ebhi/train" "$dev/ebhi" --every 30
run=runs/segmenter_finetune
results=benchmarks/results/segmenter_finetune
mkdir -p "$results"
$cli train-segmenter --init-from cosas-default-segmenter \
  --data "$dev/glas/fit/images" "$dev/glas/fit/masks" --data "$dev/ebhi/fit/images" "$dev/ebhi/fit/masks" \
  --val "$dev/glas/holdout/images" "$dev/glas/holdout/masks" --val "$dev/ebhi/holdout/images" "$dev/ebhi/holdout/masks" \
  --out "$run" --lr "$lr" --steps "$steps" --batch-size "$batch" --val-every 100 --checkpoint-every 100 \
  --workers "$workers" --device "$device"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
.venv/bin/python benchmarks/link_test_splits.py "$work" --data "${COSAS_DATA:-../shared/data}"
for model in default:cosas-default-segmenter finetuned:$run/segmenter.pt; do
  name=${model%%:*}; weights=${model#*:}
  for ds in glas ebhi; do
    $cli segment --images "$work/$ds/images" --out "$work/${name}_$ds" --model "$weights" --device "$device"
    $cli score --pred "$work/${name}_$ds" --masks "$work/$ds/masks" --json "$results/${name}_$ds.json"
  done
done
.venv/bin/python benchmarks/summarize_segmenter_finetune.py "$run/summary.json"
