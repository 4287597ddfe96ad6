# Sourced (from the project root) by the CPU training and held-out benchmark scripts: sets $dev, the prepared training
# data (scripts/prepare_training_data.py, $COSAS_DEVDATA or .devdata), split into fit / holdout
# (scripts/split_holdout.py), preparing whatever is missing.
dev=${COSAS_DEVDATA:-.devdata}
[ -d "$dev/glas/train" ] || .venv/bin/python scripts/prepare_training_data.py --data "${COSAS_DATA:-../shared/data}" --out "$dev"
[ -d "$dev/glas/fit" ] || .venv/bin/python scripts/split_holdout.py "$dev/glas/train" "$dev/glas" --every 6
[ -d "$dev/ebhi/fit" ] || .venv/bin/python scripts/split_holdout.py "$dev/ebhi/train" "$dev/ebhi" --every 30
# evaluate_holdout SET JSON [ARGS...]: `napari-cosas evaluate --init auto` on the held-out images of
# SET (glas or ebhi) with one torch thread, the report written to JSON, ARGS passed on.
evaluate_holdout() {
  local set=$1 json=$2
  shift 2
  OMP_NUM_THREADS=1 .venv/bin/napari-cosas evaluate --images "$dev/$set/holdout/images" \
    --masks "$dev/$set/holdout/masks" --init auto --device cpu "$@" --json "$json"
}
