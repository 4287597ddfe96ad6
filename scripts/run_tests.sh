#!/usr/bin/env bash
# Set up (scripts/setup_env.sh) and run the whole test suite; GUI tests run on a virtual screen.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh testing
xvfb-run -a -s "-screen 0 1280x1024x24" .venv/bin/python -m pytest -q "$@"
