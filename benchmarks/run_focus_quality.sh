#!/usr/bin/env bash
# The product's click path with the focus refiner on GlaS testA and EBHI val (read from
# ../shared/data, never copied into the project): evaluate --init auto, local clicks, the default
# click model, with the default refiner and without one (--refiner none), the four runs two at a
# time (one torch thread each). Results: benchmarks/results/evaluate_focus_*.json, summarised into
# benchmarks/focus_quality.md by summarize_focus_quality.py.
#   bash benchmarks/run_focus_quality.sh
set -euo pipefail
cd "$(dirname "$0")/.."
data=${COSAS_DATA:-../shared/data}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p benchmarks/results
.venv/bin/python benchmarks/link_test_splits.py "$work" --data "$data"
export NAPARI_COSAS_CACHE="$work/cache" OMP_NUM_THREADS=1
run() {  # dataset, refiner
  .venv/bin/napari-cosas evaluate --images "$work/$1/images" --masks "$work/$1/masks" --init auto --refiner "$2" \
    --device cpu --no-cache --json "benchmarks/results/evaluate_focus_${2}_$1.json"
}
for refiner in cosas-default-focus none; do
  run glas "$refiner" & run ebhi "$refiner" & wait
done
.venv/bin/python benchmarks/summarize_focus_quality.py
