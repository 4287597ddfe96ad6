# Sourced (from the project root) by the CPU training scripts: sets $dev, the prepared training
# data (scripts/prepare_training_data.py, $COSAS_DEVDATA or .devdata), split into fit / holdout
# (scripts/split_holdout.py), preparing whatever is missing.
dev=${COSAS_DEVDATA:-.devdata}
[ -d "$dev/glas/train" ] || .venv/bin/python scripts/prepare_training_data.py --data "${COSAS_DATA:-../shared/data}" --out "$dev"
[ -d "$dev/glas/fit" ] || .venv/bin/python scripts/split_holdout.py "$dev/glas/train" "$dev/glas" --every 6
[ -d "$dev/ebhi/fit" ] || .venv/bin/python scripts/split_holdout.py "$dev/ebhi/train" "$dev/ebhi" --every 30
