#!/usr/bin/env bash
# The product's click path with the focus refiner on GlaS testA and EBHI val (read from
# ../shared/data, never copied into the project): evaluate --init auto, local clicks, the default
# click model. Variants "refiner:context margin:first click:focus margin": the default
# (cosas-default-focus:8:by-size:1), the default before the refiner's confident changes were kept
# (cosas-default-focus:8:by-size:inf), before the first-click rule (cosas-default-focus:8:global:inf),
# before the context margin (cosas-default-focus:none:global:inf), and no refiner
# (none:none:global:inf, the plain local click of quality.md); each variant's two runs at a time
# (one torch thread each). Pass variants to run only those. Results:
# benchmarks/results/evaluate_focus_<refiner>_m<margin>_<first click>_p<focus margin>_<data>.json,
# summarised into benchmarks/focus_quality.md by summarize_focus_quality.py.
#   bash benchmarks/run_focus_quality.sh [cosas-default-focus:8:by-size:1 ...]
set -euo pipefail
cd "$(dirname "$0")/.."
data=${COSAS_DATA:-../shared/data}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p benchmarks/results
.venv/bin/python benchmarks/link_test_splits.py "$work" --data "$data"
export NAPARI_COSAS_CACHE="$work/cache" OMP_NUM_THREADS=1
run() {  # dataset, refiner, context margin, first click, focus margin
  .venv/bin/napari-cosas evaluate --images "$work/$1/images" --masks "$work/$1/masks" --init auto --refiner "$2" \
    --context-margin "$3" --first-click "$4" --focus-margin "$5" --device cpu --no-cache \
    --json "benchmarks/results/evaluate_focus_${2}_m${3}_${4}_p${5}_$1.json"
}
variants=("$@")
[ ${#variants[@]} -gt 0 ] || variants=(cosas-default-focus:8:by-size:1 cosas-default-focus:8:by-size:inf
                                       cosas-default-focus:8:global:inf cosas-default-focus:none:global:inf
                                       none:none:global:inf)
for variant in "${variants[@]}"; do
  IFS=: read -r refiner margin first paste <<< "$variant"
  run glas "$refiner" "$margin" "$first" "$paste" & run ebhi "$refiner" "$margin" "$first" "$paste" & wait
done
.venv/bin/python benchmarks/summarize_focus_quality.py
