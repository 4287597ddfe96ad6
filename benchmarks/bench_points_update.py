"""Benchmark: showing a click's point in napari, the colours written every time vs only when one changes.

After a click the widget shows the patch's clicks in its ``clicks`` Points layer on the GUI thread
(`_widget_layers.PatchLayers.show_clicks`), one event-loop turn after the mask. Each write of the
layer's colours re-colours and re-uploads every point. Until ebae571 the colours were compared in
float64 with the float32 values the layer keeps, never matched, and were written after every click;
new points also took napari's default white, so even a correct comparison would have written them.
This script makes ``--clicks`` clicks (2 positive, 1 negative, at random pixels of a 1500x1500
patch) and shows each, round-robin, in two viewers' layers:

* ``every time``: the points written, then the colours written (what the widget did before);
* ``when changed``: `PatchLayers.show_clicks`, the widget's code now.

Each update is followed by ``QApplication.processEvents()`` (the layer's repaint). Run it under a
display, e.g.

    xvfb-run -a -s "-screen 0 1280x1024x24" .venv/bin/python benchmarks/bench_points_update.py \
        --md benchmarks/points_update.md
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import napari
import numpy as np
from qtpy.QtWidgets import QApplication

from machine import cpu_model
from napari_cosas._widget_layers import NEGATIVE_RGBA, POSITIVE_RGBA, PatchLayers
from napari_cosas.interaction.clicks import Click
from napari_cosas.interaction.engine import Interaction
from napari_cosas.interaction.patch import Patch

SIDE = 1500


def _settle(app: QApplication) -> None:
    for _ in range(3):
        app.processEvents()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--md", type=Path)
    args = parser.parse_args()
    app = QApplication.instance() or QApplication(sys.argv)
    image = np.zeros((SIDE, SIDE, 3), np.uint8)
    patches, layers = [], []
    for _ in range(2):
        viewer = napari.Viewer()
        viewer.add_image(image, rgb=True)
        patch = Patch("bench", image=image, interaction=Interaction((SIDE, SIDE)))
        patch_layers = PatchLayers(viewer, on_paint=lambda: None, bind_keys=lambda layer: None, display="outline")
        patch_layers.image_layer = viewer.layers[0]
        patch.interaction.clicker.add(Click(SIDE // 2, SIDE // 2, True))
        patch_layers.show_clicks(patch, [])
        patches.append(patch)
        layers.append(patch_layers)
    _settle(app)
    rng = np.random.default_rng(args.seed)
    times: dict[str, list[float]] = {"every time": [], "when changed": []}
    for i in range(args.clicks):
        row, col = (int(v) for v in rng.integers(0, SIDE, 2))
        for patch in patches:
            patch.interaction.clicker.add(Click(row, col, i % 3 != 2))
        for name, patch, patch_layers in zip(times, patches, layers):
            start = time.perf_counter()
            if name == "every time":
                clicks = patch_layers.clicks_layer
                with clicks.events.data.blocker():
                    clicks.data = patch.clicker.points_rc().astype(float)
                clicks.face_color = np.array([POSITIVE_RGBA if c.is_positive else NEGATIVE_RGBA
                                              for c in patch.clicker.clicks])
            else:
                patch_layers.show_clicks(patch, [])
            app.processEvents()
            times[name].append(time.perf_counter() - start)
            _settle(app)
    median = {name: statistics.median(t) * 1000 for name, t in times.items()}
    lines = [
        "# Showing a click's point: the colours written every time vs only when one changes (issue #14)",
        "",
        f"Produced by `{shlex.join(['python', 'benchmarks/bench_points_update.py', *sys.argv[1:]])}` under xvfb.",
        "",
        f"Machine: {cpu_model()}, {os.cpu_count()} logical cores, napari {napari.__version__}, Python "
        f"{platform.python_version()}, software OpenGL (Mesa). {args.clicks} clicks on a {SIDE}x{SIDE} patch, "
        "the two ways round-robin, each update followed by `processEvents()`.",
        "",
        "| | colours written every time (before) | only when one changes (`show_clicks`) | before / now |",
        "| --- | ---: | ---: | ---: |",
        f"| median update + repaint (ms) | {median['every time']:.1f} | {median['when changed']:.1f} | "
        f"{median['every time'] / median['when changed']:.2f}x |",
    ]
    text = "\n".join(lines) + "\n"
    if args.md:
        args.md.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
