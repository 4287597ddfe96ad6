#!/usr/bin/env bash
# The focus window's smallest side in pixels (issue 13): at 0.75 of the side a 224-px EBHI patch's
# window is 168 px, while on the 775-px GlaS patches it is 581. Rows: --focus-min-side 0 (the
# window alone decides, the default before), 256 (the whole of an EBHI patch), 512 (also the whole
# of a patch up to 512 px, as the first click takes the whole prediction there: the default) and
# 1024 (the whole of a GlaS patch too). evaluate --init auto, the default click model and refiner,
# on the held-out training images (the test sets are never used to choose); each row compared with
# 0 by benchmarks/compare_runs.py (paired bootstrap over objects). One torch thread per process,
# two processes at a time. Results: benchmarks/results/focus_min_side/*.json.
#   bash benchmarks/focus_min_side.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. benchmarks/devdata.sh
out=benchmarks/results/focus_min_side
mkdir -p "$out"
for side in 0 256 512 1024; do
  [ -f "$out/s${side}_ebhi.json" ] || { evaluate_holdout glas "$out/s${side}_glas.json" --focus-min-side "$side" > /dev/null 2>&1 &
    evaluate_holdout ebhi "$out/s${side}_ebhi.json" --focus-min-side "$side" > /dev/null 2>&1 & wait; }
  .venv/bin/python -c 'import json, sys; print(sys.argv[1] + ":", "; ".join(
    "{} NoC@80/85/90 {noc80:.2f} / {noc85:.2f} / {noc90:.2f}".format(s, **json.load(open(f"{sys.argv[2]}_{s}.json")))
    for s in ("glas", "ebhi")))' "min side $side" "$out/s$side"
  [ "$side" = 0 ] || .venv/bin/python benchmarks/compare_runs.py --a "$out/s0_glas.json" "$out/s0_ebhi.json" \
    --b "$out/s${side}_glas.json" "$out/s${side}_ebhi.json" | tail -n1
done
