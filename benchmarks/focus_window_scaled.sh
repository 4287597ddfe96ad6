#!/usr/bin/env bash
# The focus window, with the refiner's input scaled to it (issue 13). The refiner was trained on
# squares of 0.25-0.5 of the longer image side resampled to 96 pixels. A larger window resampled to
# the same 96 pixels is seen coarser; resampled to focus_size(window, resolution) pixels it is seen
# at the scale the refiner knows (resolution 192 pixels per side: 144 pixels for a window of 0.75).
# Rows: windows 0.5 / 0.75 / 1.0 at resolution 192; the larger windows at 96 pixels (resolution
# 128 and 96) and the old window at twice the pixels (384), to tell the window from the scale;
# margins 0.5 and 2 at window 0.75. evaluate --init auto, the default click model and refiner, on
# the held-out training images (the test sets are never used to choose); each row compared with
# window 0.5 at resolution 192 (the default before) by benchmarks/compare_runs.py (paired
# bootstrap over objects). One torch thread per process, two processes at a time. Results:
# benchmarks/results/focus_window_scaled/*.json.
#   bash benchmarks/focus_window_scaled.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. benchmarks/devdata.sh
out=benchmarks/results/focus_window_scaled
mkdir -p "$out"
evaluate() {  # name, set, window, resolution, margin
  evaluate_holdout "$2" "$out/$1_$2.json" --focus-window "$3" --focus-resolution "$4" --focus-margin "$5" > /dev/null 2>&1
}
for row in w0.5_r192_m1:0.5:192:1 w0.75_r192_m1:0.75:192:1 w1.0_r192_m1:1.0:192:1 w0.75_r128_m1:0.75:128:1 \
    w1.0_r96_m1:1.0:96:1 w0.5_r384_m1:0.5:384:1 w0.75_r192_m0.5:0.75:192:0.5 w0.75_r192_m2:0.75:192:2; do
  IFS=: read -r name window resolution margin <<< "$row"
  [ -f "$out/${name}_ebhi.json" ] || { evaluate "$name" glas "$window" "$resolution" "$margin" &
    evaluate "$name" ebhi "$window" "$resolution" "$margin" & wait; }
  .venv/bin/python -c 'import json, sys; print(sys.argv[1] + ":", "; ".join(
    "{} NoC@80/85/90 {noc80:.2f} / {noc85:.2f} / {noc90:.2f}".format(s, **json.load(open(f"{sys.argv[2]}_{s}.json")))
    for s in ("glas", "ebhi")))' "$name" "$out/$name"
  [ "$name" = w0.5_r192_m1 ] || .venv/bin/python benchmarks/compare_runs.py --a "$out/w0.5_r192_m1_glas.json" \
    "$out/w0.5_r192_m1_ebhi.json" --b "$out/${name}_glas.json" "$out/${name}_ebhi.json" | tail -n1
done
