#!/usr/bin/env bash
# Is the shipped focus refiner (weights/focus_default.pt) a lucky draw, and do more records or a
# larger focus window pay? (issue 13). Retrains the refiner twice with the recipe of
# benchmarks/focus_cpu_training.sh but new sessions (seed 1, 300 instead of 180 EBHI fit images):
#   A: the new records only;
#   B: the new records and the third round's (runs/focus/rec2_*.npz, sessions played with the shipped
#      refiner; weights/README.md gives their command), drawn equally often;
# then evaluates the shipped refiner, A, B and the shipped refiner at focus windows 0.75 and 1.0 on
# the held-out training images (the test sets are never used to choose), and compares each with the
# shipped refiner at 0.5 (benchmarks/compare_runs.py: paired bootstrap over objects).
# One torch thread per process, two processes at a time. Results: runs/refiner_retrain/*.json.
#   bash benchmarks/refiner_retrain.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. benchmarks/devdata.sh
cli=.venv/bin/napari-cosas
out=runs/refiner_retrain
mkdir -p "$out"
export OMP_NUM_THREADS=1
[ -f "$out/rec_glas.npz" ] || $cli record-focus --data "$dev/glas/fit/images" "$dev/glas/fit/masks" \
  --out "$out/rec_glas.npz" --max-clicks 10 --seed 1 &
[ -f "$out/rec_ebhi.npz" ] || $cli record-focus --data "$dev/ebhi/fit/images" "$dev/ebhi/fit/masks" \
  --out "$out/rec_ebhi.npz" --images 300 --max-clicks 8 --seed 1 &
wait
train() {  # run name, record files
  local name=$1; shift
  [ -f "$out/$name/refiner.pt" ] || $cli train-focus --records "$@" --out "$out/$name" --steps 2500 --batch-size 16 --lr 2e-3
}
train A "$out/rec_glas.npz" "$out/rec_ebhi.npz" &
if [ -f runs/focus/rec2_glas.npz ] && [ -f runs/focus/rec2_ebhi.npz ]; then
  train B "$out/rec_glas.npz" "$out/rec_ebhi.npz" runs/focus/rec2_glas.npz runs/focus/rec2_ebhi.npz &
fi
wait
evaluate() {  # variant name, set, extra evaluate arguments
  local name=$1 set=$2; shift 2
  $cli evaluate --images "$dev/$set/holdout/images" --masks "$dev/$set/holdout/masks" --init auto --device cpu \
    "$@" --json "$out/${name}_$set.json" > "$out/${name}_$set.log" 2>&1
}
variants=("shipped:" "A:--refiner $out/A/refiner.pt" "window0.75:--focus-window 0.75" "window1.0:--focus-window 1.0")
[ -f "$out/B/refiner.pt" ] && variants+=("B:--refiner $out/B/refiner.pt")
for variant in "${variants[@]}"; do
  name=${variant%%:*}
  read -r -a extra <<< "${variant#*:}"
  evaluate "$name" glas "${extra[@]}" & evaluate "$name" ebhi "${extra[@]}" & wait
  echo "$name: glas $(tail -n1 "$out/${name}_glas.log"); ebhi $(tail -n1 "$out/${name}_ebhi.log")"
  [ "$name" = shipped ] || .venv/bin/python benchmarks/compare_runs.py --a "$out/shipped_glas.json" "$out/shipped_ebhi.json" \
    --b "$out/${name}_glas.json" "$out/${name}_ebhi.json" | tail -n1
done
