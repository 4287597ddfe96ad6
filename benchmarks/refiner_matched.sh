#!/usr/bin/env bash
# The focus refiner retrained for the window and scale the product uses (issue 13). The shipped
# refiner learnt from squares of 0.25-0.5 of the longer image side, seen at 96 pixels, from sessions
# played without it; the product now shows it windows of 0.75 of the side at 144 pixels
# (FOCUS_WINDOW, FOCUS_RESOLUTION = 192 pixels per side), and the whole of a patch of up to 512 px
# (FOCUS_MIN_SIDE). Here:
#  1. record-focus plays sessions with the product's clicks (the shipped refiner) on the fit images
#     and records squares of 224 pixels around each click: 0.75 of the side of a GlaS patch (299
#     pixels per side) and the whole of an EBHI patch (224, its own pixels), so that a training
#     square of half to all of a record, seen at 128 pixels, spans 171-341 (GlaS) and 128-256
#     (EBHI) pixels per side, around the 192 the product uses;
#  2. train-focus trains two refiners on them at 128 pixels, one thread each, at the same time:
#     C from random weights (2,500 steps of 16, the recipe of focus_cpu_training.sh), D from the
#     shipped refiner (1,000 steps, learning rate 5e-4);
#  3. evaluate --init auto on the held-out training images (the test sets are never used to
#     choose), the shipped refiner, C and D, each compared with the shipped one by
#     benchmarks/compare_runs.py (paired bootstrap over objects).
# The records hold crops of GlaS images: they stay in runs/ (git-ignored). One torch thread per
# process, two processes at a time. Results: benchmarks/results/refiner_matched/*.json.
#   bash benchmarks/refiner_matched.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. benchmarks/devdata.sh
cli=.venv/bin/napari-cosas
runs=runs/focus4
out=benchmarks/results/refiner_matched
mkdir -p "$runs" "$out"
export OMP_NUM_THREADS=1
record() {  # set, extra record-focus arguments
  local set=$1; shift
  [ -f "$runs/rec_$set.npz" ] || $cli record-focus --data "$dev/$set/fit/images" "$dev/$set/fit/masks" \
    --out "$runs/rec_$set.npz" --refiner cosas-default-focus --size 224 --seed 2 "$@"
}
record glas --window 0.75 --max-clicks 10 & record ebhi --window 1.0 --images 260 --max-clicks 8 & wait
train() {  # run name, extra train-focus arguments
  local name=$1; shift
  [ -f "$runs/$name/refiner.pt" ] || $cli train-focus --records "$runs/rec_glas.npz" "$runs/rec_ebhi.npz" \
    --out "$runs/$name" --size 128 --batch-size 16 "$@"
}
train C --steps 2500 --lr 2e-3 & train D --start-from cosas-default-focus --steps 1000 --lr 5e-4 & wait
for variant in "shipped:" "C:--refiner $runs/C/refiner.pt" "D:--refiner $runs/D/refiner.pt"; do
  name=${variant%%:*}
  read -r -a extra <<< "${variant#*:}"
  [ -f "$out/${name}_ebhi.json" ] || { evaluate_holdout glas "$out/${name}_glas.json" "${extra[@]}" > /dev/null 2>&1 &
    evaluate_holdout ebhi "$out/${name}_ebhi.json" "${extra[@]}" > /dev/null 2>&1 & wait; }
  .venv/bin/python -c 'import json, sys; print(sys.argv[1] + ":", "; ".join(
    "{} NoC@80/85/90 {noc80:.2f} / {noc85:.2f} / {noc90:.2f}".format(s, **json.load(open(f"{sys.argv[2]}_{s}.json")))
    for s in ("glas", "ebhi")))' "$name" "$out/$name"
  [ "$name" = shipped ] || .venv/bin/python benchmarks/compare_runs.py --a "$out/shipped_glas.json" \
    "$out/shipped_ebhi.json" --b "$out/${name}_glas.json" "$out/${name}_ebhi.json" | tail -n1
done
