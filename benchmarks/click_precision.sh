#!/usr/bin/env bash
# The click decoder's products in bf16 against fp32 (ClickPredictor's precision; evaluate
# --click-precision): the product's default clicks (local, focus-refined, first click by size) on
# the held-out training images, which decide, and on GlaS testA and EBHI val (read from
# ../shared/data, never copied), which only report. Each pair is compared object by object
# (benchmarks/compare_runs.py). One torch thread per process, two at a time.
# Results: benchmarks/results/click_precision/<precision>_<set>.json.
#   bash benchmarks/click_precision.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. benchmarks/devdata.sh
out=benchmarks/results/click_precision
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"
.venv/bin/python benchmarks/link_test_splits.py "$work" --data "${COSAS_DATA:-../shared/data}"
export OMP_NUM_THREADS=1 NAPARI_COSAS_CACHE="$work/cache"
run() {  # precision, name, images, masks
  .venv/bin/napari-cosas evaluate --images "$3" --masks "$4" --init auto --device cpu --no-cache \
    --click-precision "$1" --json "$out/$1_$2.json" > "$work/$1_$2.log" 2>&1
  echo "$1 $2: $(tail -n1 "$work/$1_$2.log")"
}
for precision in fp32 bf16; do
  run "$precision" glas_holdout "$dev/glas/holdout/images" "$dev/glas/holdout/masks" &
  run "$precision" ebhi_holdout "$dev/ebhi/holdout/images" "$dev/ebhi/holdout/masks" &
  wait
  run "$precision" glas_testA "$work/glas/images" "$work/glas/masks" &
  run "$precision" ebhi_val "$work/ebhi/images" "$work/ebhi/masks" &
  wait
done
for sets in "glas_holdout ebhi_holdout" "glas_testA ebhi_val"; do
  read -r first second <<< "$sets"
  .venv/bin/python benchmarks/compare_runs.py --a "$out/fp32_$first.json" "$out/fp32_$second.json" \
    --b "$out/bf16_$first.json" "$out/bf16_$second.json"
done
