#!/usr/bin/env bash
# What a refined click pastes back (issue 13): the change connected to the clicked pixel only
# (--focus-margin inf, the rule before), or also the refiner's other changes in the focus window
# where its logit is at least M from the threshold (M = 2, 1, 0.5, 0). evaluate --init auto, the
# default click model and refiner, on the held-out training images (the test sets are never used
# to choose); each margin compared with inf by benchmarks/compare_runs.py (paired bootstrap over
# objects), in the focus window of 0.5 these rows ran with (now 0.75: focus_window_scaled.sh). One
# torch thread per process, two processes at a time. Results:
# benchmarks/results/focus_paste/*.json.
#   bash benchmarks/focus_paste.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. benchmarks/devdata.sh
out=benchmarks/results/focus_paste
mkdir -p "$out"
evaluate() {  # margin, set
  evaluate_holdout "$2" "$out/margin_$1_$2.json" --focus-window 0.5 --focus-margin "$1" > "$out/margin_$1_$2.log" 2>&1
}
for margin in inf 2 1 0.5 0; do
  evaluate "$margin" glas & evaluate "$margin" ebhi & wait
  echo "margin $margin: glas $(tail -n1 "$out/margin_${margin}_glas.log"); ebhi $(tail -n1 "$out/margin_${margin}_ebhi.log")"
  [ "$margin" = inf ] || .venv/bin/python benchmarks/compare_runs.py --a "$out/margin_inf_glas.json" \
    "$out/margin_inf_ebhi.json" --b "$out/margin_${margin}_glas.json" "$out/margin_${margin}_ebhi.json" | tail -n1
done
rm -f "$out"/*.log
