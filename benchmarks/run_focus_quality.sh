#!/usr/bin/env bash
# The product's click path with the focus refiner on GlaS testA and EBHI val (read from
# ../shared/data, never copied into the project): evaluate --init auto, local clicks, the default
# click model, with the default refiner and its attention context (--context-margin 8), the default
# refiner attending to every token (--context-margin none, the default before the margin), and no
# refiner (--refiner none --context-margin none, the plain local click of quality.md); the six runs
# two at a time (one torch thread each). Pass variants ("refiner:margin ...") to run only those.
# Results: benchmarks/results/evaluate_focus_<refiner>_m<margin>_<data>.json, summarised into
# benchmarks/focus_quality.md by summarize_focus_quality.py.
#   bash benchmarks/run_focus_quality.sh [cosas-default-focus:8 ...]
set -euo pipefail
cd "$(dirname "$0")/.."
data=${COSAS_DATA:-../shared/data}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p benchmarks/results
.venv/bin/python benchmarks/link_test_splits.py "$work" --data "$data"
export NAPARI_COSAS_CACHE="$work/cache" OMP_NUM_THREADS=1
run() {  # dataset, refiner, context margin
  .venv/bin/napari-cosas evaluate --images "$work/$1/images" --masks "$work/$1/masks" --init auto --refiner "$2" \
    --context-margin "$3" --device cpu --no-cache --json "benchmarks/results/evaluate_focus_${2}_m${3}_$1.json"
}
variants=("$@")
[ ${#variants[@]} -gt 0 ] || variants=(cosas-default-focus:8 cosas-default-focus:none none:none)
for variant in "${variants[@]}"; do
  run glas "${variant%%:*}" "${variant##*:}" & run ebhi "${variant%%:*}" "${variant##*:}" & wait
done
.venv/bin/python benchmarks/summarize_focus_quality.py
