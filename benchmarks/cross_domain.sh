#!/usr/bin/env bash
# Cross-domain segmenter experiment (issue #4): train on one dataset, test on the other, and measure
# how much cross-task pretraining (train on one, then fine-tune on the other, `--init-from`)
# recovers, next to training on the target alone and on the union of both.
#
#   bash benchmarks/cross_domain.sh            # CPU-sized defaults: STEPS=800 BATCH=4 CROP=256
#   STEPS=3000 BATCH=16 CROP=512 DEVICE=cuda WORKERS=14 bash benchmarks/cross_domain.sh
#
# Every run starts from the same random initialisation (same seed) and trains backbone + Rein +
# head (no official foundation weights on these machines, see weights/README.md); fine-tuning runs
# start from the source-only run and train STEPS more steps on the target, and are compared with the
# target alone trained for STEPS and for 2 x STEPS (the same compute). Test sets: GlaS testA
# and EBHI val (original PNGs, never trained on). Runs go to runs/cross_domain/<name>/ (resumable),
# scores to benchmarks/results/cross_domain/<name>_<test>.json, the table to
# benchmarks/cross_domain.md (benchmarks/summarize_cross_domain.py).
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${STEPS:-800}; batch=${BATCH:-4}; crop=${CROP:-256}; device=${DEVICE:-cpu}; workers=${WORKERS:-1}
dev=${DEVDATA:-.devdata}
cli=".venv/bin/napari-cosas"
[ -d "$dev/glas/train" ] || .venv/bin/python scripts/prepare_training_data.py --out "$dev"
runs=runs/cross_domain
results=benchmarks/results/cross_domain
mkdir -p "$runs" "$results"
glas="$dev/glas/train/images $dev/glas/train/masks"
ebhi="$dev/ebhi/train/images $dev/ebhi/train/masks"

train() {  # name, data arguments, [init checkpoint], [steps]
  local name=$1 data=$2 init=${3:-} n=${4:-$steps}
  [ -f "$runs/$name/done" ] && return
  # shellcheck disable=SC2086
  $cli train-segmenter $data --out "$runs/$name" --unfreeze-backbone --lr 5e-4 --backbone-lr 5e-4 \
    --steps "$n" --batch-size "$batch" --crop "$crop" --workers "$workers" --device "$device" \
    ${init:+--init-from "$init"}
  touch "$runs/$name/done"
}

train glas "--data $glas"
train ebhi "--data $ebhi"
train union "--data $glas --data $ebhi"
train glas_then_ebhi "--data $ebhi" "$runs/glas/segmenter.pt"
train ebhi_then_glas "--data $glas" "$runs/ebhi/segmenter.pt"
# same compute as pretraining + fine-tuning: the target alone for twice the steps
train glas_2x "--data $glas" "" $((2 * steps))
train ebhi_2x "--data $ebhi" "" $((2 * steps))

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
.venv/bin/python benchmarks/link_test_splits.py "$work" --data "${COSAS_DATA:-../shared/data}"
for name in glas ebhi union glas_then_ebhi ebhi_then_glas glas_2x ebhi_2x; do
  for ds in glas ebhi; do
    [ -f "$results/${name}_$ds.json" ] && [ "$results/${name}_$ds.json" -nt "$runs/$name/done" ] && continue
    $cli segment --images "$work/$ds/images" --out "$work/pred_${name}_$ds" \
      --model "$runs/$name/segmenter.pt" --device "$device"
    $cli score --pred "$work/pred_${name}_$ds" --masks "$work/$ds/masks" --json "$results/${name}_$ds.json"
  done
done
STEPS=$steps BATCH=$batch CROP=$crop .venv/bin/python benchmarks/summarize_cross_domain.py
