#!/usr/bin/env bash
# The global click effect (the mask becomes the click model's whole prediction) on the held-out
# training images, from the automatic mask, the model shown its last 5 clicks as in the widget;
# prints the mean IoU before and after each click. Results: benchmarks/results/global_effect/.
#   bash benchmarks/global_effect.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. benchmarks/devdata.sh
out=benchmarks/results/global_effect
mkdir -p "$out"
export OMP_NUM_THREADS=1
for set in glas ebhi; do
  .venv/bin/napari-cosas evaluate --images "$dev/$set/holdout/images" --masks "$dev/$set/holdout/masks" --init auto \
    --click-effect global --device cpu --json "$out/$set.json" > /dev/null 2>&1 &
done
wait
for set in glas ebhi; do
  .venv/bin/python - "$out/$set.json" <<'PY'
import json, statistics, sys
report = json.load(open(sys.argv[1]))
start = statistics.mean(o["initial_iou"] for o in report["objects_detail"])
curve = report["mean_iou_per_click"]
falls = [curve[i] - curve[i + 1] for i in range(len(curve) - 1)]
print(f"{sys.argv[1]}: mean IoU auto {start:.3f}, after clicks 1-20 " + " ".join(f"{v:.3f}" for v in curve)
      + f"; largest fall {max([0.0] + falls):.3f}")
PY
done
