#!/usr/bin/env bash
# The product's click path with the focus refiner on GlaS testA and EBHI val (read from
# ../shared/data, never copied into the project): evaluate --init auto, local clicks, the default
# click model. Variants "refiner:context margin:first click:focus margin:focus window:focus min
# side": the default (cosas-default-focus:8:by-size:1:0.75:512, the window the whole of a patch up
# to 512 px), the default before that (cosas-default-focus:8:by-size:1:0.75:0, the refiner's input
# scaled to the window), before the window grew (cosas-default-focus:8:by-size:1:0.5:0), before the
# refiner's confident changes were kept (cosas-default-focus:8:by-size:inf:0.5:0), before the
# first-click rule (cosas-default-focus:8:global:inf:0.5:0), before the context margin
# (cosas-default-focus:none:global:inf:0.5:0), and no refiner (none:none:global:inf:0.5:0, the plain
# local click of quality.md); each variant's two runs at a time (one torch thread each). Pass
# variants to run only those. Results: benchmarks/results/evaluate_focus_<refiner>_m<margin>_<first
# click>_p<focus margin>_w<focus window>_s<focus min side>_<data>.json, summarised into
# benchmarks/focus_quality.md by summarize_focus_quality.py.
#   bash benchmarks/run_focus_quality.sh [cosas-default-focus:8:by-size:1:0.75:512 ...]
set -euo pipefail
cd "$(dirname "$0")/.."
data=${COSAS_DATA:-../shared/data}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p benchmarks/results
.venv/bin/python benchmarks/link_test_splits.py "$work" --data "$data"
export NAPARI_COSAS_CACHE="$work/cache" OMP_NUM_THREADS=1
run() {  # dataset, refiner, context margin, first click, focus margin, focus window, focus min side
  .venv/bin/napari-cosas evaluate --images "$work/$1/images" --masks "$work/$1/masks" --init auto --refiner "$2" \
    --context-margin "$3" --first-click "$4" --focus-margin "$5" --focus-window "$6" --focus-min-side "$7" \
    --device cpu --no-cache --json "benchmarks/results/evaluate_focus_${2}_m${3}_${4}_p${5}_w${6}_s${7}_$1.json"
}
variants=("$@")
[ ${#variants[@]} -gt 0 ] || variants=(cosas-default-focus:8:by-size:1:0.75:512 cosas-default-focus:8:by-size:1:0.75:0
                                       cosas-default-focus:8:by-size:1:0.5:0 cosas-default-focus:8:by-size:inf:0.5:0
                                       cosas-default-focus:8:global:inf:0.5:0 cosas-default-focus:none:global:inf:0.5:0
                                       none:none:global:inf:0.5:0)
for variant in "${variants[@]}"; do
  IFS=: read -r refiner margin first paste window side <<< "$variant"
  run glas "$refiner" "$margin" "$first" "$paste" "$window" "$side" &
  run ebhi "$refiner" "$margin" "$first" "$paste" "$window" "$side" & wait
done
.venv/bin/python benchmarks/summarize_focus_quality.py
