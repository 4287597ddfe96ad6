"""Benchmark: showing a click's new mask in napari, whole layer replaced vs changed pixels written.

After a click the widget shows the new mask in its Labels layer on the GUI thread, so this time
adds to every click. A local click changes one region inside a window (270x270 on a 1500x1500
patch); the widget writes only the changed pixels (`_widget_layers.update_labels_layer`) instead of replacing
the layer's data. Both ways run round-robin on the same sequence of masks, each followed by
``QApplication.processEvents()`` (the layer's update and the canvas repaint, as when the widget
returns to the event loop). Run it under a display, e.g.

    xvfb-run -a -s "-screen 0 1280x1024x24" .venv/bin/python benchmarks/bench_mask_update.py \
        --json benchmarks/mask_update.json --md benchmarks/mask_update.md
"""

from __future__ import annotations

import argparse
import json
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
from skimage.draw import disk

from machine import cpu_model
from napari_cosas._widget_layers import update_labels_layer
from napari_cosas.inference.refine import local_window

SIDE = 1500


def click_masks(n: int, seed: int = 0) -> list[np.ndarray]:
    """``n + 1`` successive ``(SIDE, SIDE)`` uint8 masks, each differing from the previous one by a
    disc (radius 20-120 px) added or removed inside a local click's window."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((SIDE, SIDE), np.uint8)
    for r, c in rng.uniform(100, SIDE - 100, size=(12, 2)).astype(int):
        mask[disk((r, c), 90, shape=mask.shape)] = 1
    masks = [mask]
    for _ in range(n):
        row, col = rng.integers(0, SIDE, size=2)
        rows, cols = local_window((SIDE, SIDE), int(row), int(col))
        nxt = masks[-1].copy()
        window = nxt[rows, cols]
        window[disk((row - rows.start, col - cols.start), rng.integers(20, 120), shape=window.shape)] = (
            rng.integers(0, 2)
        )
        masks.append(nxt)
    return masks


def run(calls: int, warmup: int) -> dict:
    viewer = napari.Viewer(show=True)
    app = QApplication.instance()
    image = np.random.default_rng(1).integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
    viewer.add_image(image, rgb=True)
    masks = click_masks(warmup + calls)

    def replace(layer, labels):
        layer.data = labels.copy()

    ways = {"replace_data": replace, "write_changed": update_labels_layer}
    layers = {name: viewer.add_labels(masks[0].copy(), name=name, opacity=0.5) for name in ways}
    for _ in range(5):
        app.processEvents()
    times: dict[str, list[float]] = {name: [] for name in ways}
    for i, labels in enumerate(masks[1:]):
        for name, show in ways.items():
            for other in ways:
                layers[other].visible = other == name
            app.processEvents()
            t0 = time.perf_counter()
            show(layers[name], labels)
            app.processEvents()
            if i >= warmup:
                times[name].append(1000 * (time.perf_counter() - t0))
    for name in ways:
        if not np.array_equal(layers[name].data, masks[-1]):
            raise RuntimeError(f"{name} did not end with the last mask")
    viewer.close()
    medians = {f"{name}_ms": round(statistics.median(t), 2) for name, t in times.items()}
    return {
        **medians,
        "replace_over_write": round(medians["replace_data_ms"] / medians["write_changed_ms"], 2),
        "settings": {"calls": calls, "warmup": warmup, "patch": [SIDE, SIDE],
                     "command": "python " + shlex.join(sys.argv)},
        "machine": {"cpu": cpu_model(), "logical_cores": os.cpu_count(), "napari": napari.__version__,
                    "python": platform.python_version(), "platform": platform.platform(),
                    "display": os.environ.get("DISPLAY")},
    }


def to_markdown(r: dict) -> str:
    m, s = r["machine"], r["settings"]
    return f"""# Showing a click's mask in napari

Produced by `{s['command']}` (under `xvfb-run`, Mesa software OpenGL).

Machine: {m['cpu']}, {m['logical_cores']} logical cores, napari {m['napari']}, Python {m['python']},
{m['platform']}.

A {s['patch'][0]}x{s['patch'][1]} RGB image with a Labels layer; {s['calls']} successive masks
(after {s['warmup']} warm-up ones), each changed by one disc inside a local click's window. Time
from handing the mask to the layer until `processEvents()` returns (layer update + repaint),
median; the two ways run round-robin, only the measured layer visible.

| way | median ms |
| --- | ---: |
| replace the layer's data (`layer.data = mask`) | {r['replace_data_ms']:.1f} |
| write the changed pixels, refresh (`_widget_layers.update_labels_layer`, the widget's way) | {r['write_changed_ms']:.1f} |

Replacing is {r['replace_over_write']:.2f}x the time of writing the changed pixels. On a laptop
with a GPU the repaint is cheaper; the ratio here is for software rendering.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/mask_update.json"))
    parser.add_argument("--md", type=Path, default=Path("benchmarks/mask_update.md"))
    args = parser.parse_args()
    result = run(args.calls, args.warmup)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    args.md.write_text(to_markdown(result))
    print(to_markdown(result))


if __name__ == "__main__":
    main()
