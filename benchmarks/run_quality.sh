#!/usr/bin/env bash
# Quality benchmarks of the default weights on GlaS testA and EBHI val (read from ../shared/data,
# never copied into the project): automatic masks (segment + score) and the interactive protocol
# (evaluate, --init auto and empty, local and global click effect) for the enhanced default and,
# when given, a plain decoder trained identically. Results: benchmarks/results/*.json, summarised
# by summarize_quality.py. EFFECTS="local" runs only the product's default click effect. The
# reference rows (design.md) run on the same automatic masks and RITM-placed clicks: oracle (each
# click flips the whole connected error region under it) and wand (colour flood fill, no model).
#   bash benchmarks/run_quality.sh [PLAIN_CLICK_CHECKPOINT]
set -euo pipefail
cd "$(dirname "$0")/.."
data=${COSAS_DATA:-../shared/data}
plain=${1:-}
effects=${EFFECTS:-local global}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p benchmarks/results
.venv/bin/python benchmarks/link_test_splits.py "$work" --data "$data"
cli=".venv/bin/napari-cosas"
export NAPARI_COSAS_CACHE="$work/cache"
for ds in glas ebhi; do
  $cli segment --images "$work/$ds/images" --out "$work/$ds/auto" --device cpu
  $cli score --pred "$work/$ds/auto" --masks "$work/$ds/masks" --json "benchmarks/results/segment_$ds.json"
done
models=("enhanced:cosas-default-click")
[ -n "$plain" ] && models+=("plain:$plain")
for effect in $effects; do
  # local: the widget's setting (the model sees the last 5 clicks); global: RITM's protocol (all clicks)
  if [ "$effect" = local ]; then memory=5; else memory=0; fi
  for init in auto empty; do
    for entry in "${models[@]}"; do
      name=${entry%%:*}; model=${entry#*:}
      for ds in glas ebhi; do
        $cli evaluate --images "$work/$ds/images" --masks "$work/$ds/masks" --model "$model" --init "$init" \
          --click-effect "$effect" --click-memory "$memory" --device cpu \
          --json "benchmarks/results/evaluate_${name}_${effect}_${init}_$ds.json"
      done
    done
  done
done
for ref in oracle wand; do
  for ds in glas ebhi; do
    $cli evaluate --images "$work/$ds/images" --masks "$work/$ds/masks" --reference "$ref" --init auto \
      --json "benchmarks/results/evaluate_${ref}_local_auto_$ds.json"
  done
done
.venv/bin/python benchmarks/summarize_quality.py
