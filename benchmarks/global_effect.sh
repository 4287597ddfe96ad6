#!/usr/bin/env bash
# The global click effect before and after it became the local click plus, beyond the click's
# window, the pixels the click model is sure of (refine.GLOBAL_MARGIN): git revision BEFORE
# (default bc8b2ec, where the mask became the model's whole prediction and the next prompt its
# low-res logits) against this tree, each in its own process (BEFORE's src/ and weights/ exported to
# a temporary folder and put first on PYTHONPATH), evaluate --init auto --click-effect global with
# the other defaults, on
# - the held-out training images (the fit / holdout split of benchmarks/devdata.sh; for choosing);
# - GlaS testA and EBHI val (../shared/data, linked, never copied; reported only).
# Results: benchmarks/results/global_effect/<tree>_<holdout|test>_<set>.json, the table in
# benchmarks/global_effect.md (written by summarize_global_effect.py).
#   bash benchmarks/global_effect.sh [BEFORE]
set -euo pipefail
cd "$(dirname "$0")/.."
before=${1:-bc8b2ec}
. benchmarks/devdata.sh
data=${COSAS_DATA:-../shared/data}
out=benchmarks/results/global_effect
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out" "$work/before"
git archive "$before" src weights | tar -x -C "$work/before"
.venv/bin/python benchmarks/link_test_splits.py "$work/test" --data "$data"
export OMP_NUM_THREADS=1
run() {  # tree, split (holdout | test), set
  local tree=$1 split=$2 set=$3 images masks path=
  if [ "$split" = holdout ]; then images="$dev/$set/holdout/images" masks="$dev/$set/holdout/masks"
  else images="$work/test/$set/images" masks="$work/test/$set/masks"; fi
  [ "$tree" = before ] && path="$work/before/src"
  PYTHONPATH="$path" .venv/bin/python -m napari_cosas.cli evaluate --images "$images" --masks "$masks" \
    --init auto --click-effect global --device cpu --no-cache --json "$out/${tree}_${split}_$set.json"
}
for split in holdout test; do
  for tree in before after; do
    run "$tree" "$split" glas > "$work/log-glas" 2>&1 &
    run "$tree" "$split" ebhi > "$work/log-ebhi" 2>&1 || { cat "$work/log-ebhi"; exit 1; }
    wait $! || { cat "$work/log-glas"; exit 1; }
  done
done
.venv/bin/python benchmarks/summarize_global_effect.py "$before"
