#!/usr/bin/env bash
# Set up the headless core (scripts/setup_env.sh "") and run the main job offline on the default
# weights: segment the bundled sample patches, refine them with simulated clicks, export masks,
# sidecars, GeoJSON and overlays, and write a report (out/demo/report.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh ""
.venv/bin/napari-cosas demo --out "${1:-out/demo}"
