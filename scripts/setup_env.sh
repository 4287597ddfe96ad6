#!/usr/bin/env bash
# Set up napari-cosas on a fresh Debian machine with Python 3.11: a virtual environment (.venv)
# holding the package with the extras named in $1 ("" for the headless core, "testing" or
# "napari" for the GUI), and, for the GUI extras, the system libraries napari needs for OpenGL
# on a virtual screen (xvfb + Mesa + Qt's xcb libraries).
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1-testing}"
if [ -n "$extras" ] && { ! command -v xvfb-run >/dev/null 2>&1 || ! ldconfig -p | grep -q libxcb-cursor; }; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq xvfb xauth libgl1-mesa-dri libegl1 libxkbcommon-x11-0 libxcb-icccm4 \
    libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-xinerama0 \
    libxcb-xfixes0 libxcb-shape0 libxcb-cursor0 libdbus-1-3 libfontconfig1 >/dev/null
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".${extras:+[$extras]}"
