#!/usr/bin/env bash
# How the segmenter pads a patch smaller than its 512-px window: with black, as its training crops
# of such patches are (this tree), or mirrored (git revision BEFORE, default 0209ead). Both trees
# run the same commands, each in its own process (BEFORE's src/ and weights/ exported to a
# temporary folder and put first on PYTHONPATH):
# - held-out training images (the fit / holdout split of benchmarks/devdata.sh; used for choosing):
#   segment + score, and evaluate --init auto with the product's default clicks;
# - GlaS testA and EBHI val (../shared/data, linked, never copied; reported only): the same.
# Results: benchmarks/results/segmenter_padding/<tree>_<holdout|test>_<segment|evaluate>_<set>.json,
# summarised into benchmarks/segmenter_padding.md by summarize_segmenter_padding.py.
#   bash benchmarks/segmenter_padding.sh [BEFORE]
set -euo pipefail
cd "$(dirname "$0")/.."
before=${1:-0209ead}
. benchmarks/devdata.sh
data=${COSAS_DATA:-../shared/data}
out=benchmarks/results/segmenter_padding
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out" "$work/before"
git archive "$before" src weights | tar -x -C "$work/before"
.venv/bin/python benchmarks/link_test_splits.py "$work/test" --data "$data"
export OMP_NUM_THREADS=1 NAPARI_COSAS_CACHE="$work/cache"
cosas() {  # tree, then napari-cosas arguments
  local tree=$1
  shift
  if [ "$tree" = before ]; then
    PYTHONPATH="$work/before/src" .venv/bin/python -m napari_cosas.cli "$@"
  else
    .venv/bin/python -m napari_cosas.cli "$@"
  fi
}
run() {  # tree, split (holdout | test), set
  local tree=$1 split=$2 set=$3 images masks
  if [ "$split" = holdout ]; then images="$dev/$set/holdout/images" masks="$dev/$set/holdout/masks"
  else images="$work/test/$set/images" masks="$work/test/$set/masks"; fi
  cosas "$tree" segment --images "$images" --out "$work/$tree-$split-$set" --device cpu
  cosas "$tree" score --pred "$work/$tree-$split-$set" --masks "$masks" --json "$out/${tree}_${split}_segment_$set.json"
  cosas "$tree" evaluate --images "$images" --masks "$masks" --init auto --device cpu --no-cache \
    --json "$out/${tree}_${split}_evaluate_$set.json"
}
for split in holdout test; do
  for tree in before after; do
    run "$tree" "$split" glas > "$work/log-glas" 2>&1 &
    run "$tree" "$split" ebhi > "$work/log-ebhi" 2>&1 || { cat "$work/log-ebhi"; exit 1; }
    wait $! || { cat "$work/log-glas"; exit 1; }
  done
done
.venv/bin/python benchmarks/summarize_segmenter_padding.py "$before"
