"""Benchmark: drawing the mask as an outline in napari, napari's Labels vs the widget's MaskLabels.

The widget shows its mask as an outline (Labels ``contour = 2``). napari computes the outline of
the changed box on every click and of the whole mask on every patch switch, on the GUI thread;
`_widget_mask_labels.MaskLabels` computes the same pixels with `binary_outline` (the test suite
checks that they are the same). In a real viewer under xvfb, with a 1500x1500 RGB image, this
script times, for both layer classes in turn (round-robin, only the measured layer visible):

* a click: a gland-like mask changed by a disc (radius 40-300 px) inside a focus window (half
  the side, 750 px), written as the widget writes it (`update_labels_layer` within the changed
  box), until ``processEvents()`` returns (layer update and repaint);
* a patch switch: the layer's data replaced by another patch's mask, until ``processEvents()``
  returns;

and, without the viewer, the outline alone of a 750x750 box and of the whole mask. Medians.

    xvfb-run -a -s "-screen 0 1280x1024x24" .venv/bin/python benchmarks/bench_mask_outline.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

SIDE = 1500
WINDOW = 750


def gland_masks(n: int, seed: int) -> list:
    """``n`` ``(SIDE, SIDE)`` uint8 0 / 1 masks of smooth blobs (about a third of the area)."""
    import numpy as np
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    return [(ndi.gaussian_filter(rng.random((SIDE, SIDE), dtype=np.float32), 12) > 0.505).astype(np.uint8)
            for _ in range(n)]


def click_changes(start, n: int, seed: int) -> list:
    """``n`` successive masks from ``start``, each with a disc (radius 40-300 px) inside a 750 px
    window set to 0 or 1, and the ``(rows, cols)`` box of the pixels each one changed."""
    import numpy as np
    from skimage.draw import disk

    rng = np.random.default_rng(seed)
    masks, mask = [], start
    for _ in range(n):
        r0, c0 = rng.integers(0, SIDE - WINDOW, size=2)
        nxt = mask.copy()
        window = nxt[r0:r0 + WINDOW, c0:c0 + WINDOW]
        centre = rng.integers(100, WINDOW - 100, size=2)
        window[disk(tuple(centre), int(rng.integers(40, 300)), shape=window.shape)] = rng.integers(0, 2)
        changed = nxt != mask
        rows, cols = np.flatnonzero(changed.any(1)), np.flatnonzero(changed.any(0))
        box = (slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)) if rows.size else (
            slice(0, 0), slice(0, 0))
        masks.append((nxt, box))
        mask = nxt
    return masks


def run(clicks: int, switches: int, warmup: int) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="bench_mask_outline_"))
    os.environ["NAPARI_CONFIG"] = str(folder / "napari_settings.yaml")  # no window size from an earlier session
    import napari
    import numpy as np
    from napari.layers import Labels
    from napari.utils.colormaps import DirectLabelColormap
    from qtpy.QtWidgets import QApplication

    from machine import cpu_model
    from napari_cosas._widget_layers import MASK_DISPLAYS, MASK_RGBA, update_labels_layer
    from napari_cosas._widget_mask_labels import MaskLabels

    contour, _opacity = MASK_DISPLAYS["outline"]
    patches = gland_masks(switches + 2, seed=0)
    changes = click_changes(patches[0], warmup + clicks, seed=1)

    def kernel(cls, box, repeats: int = 7) -> float:
        layer = cls(patches[0])
        layer.contour = contour
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            layer._calculate_contour(patches[0], box)
            times.append(1000 * (time.perf_counter() - t0))
        return statistics.median(times)

    quarter, half = SIDE // 4, SIDE // 4 + WINDOW
    boxes = {"750x750 box": (slice(quarter, half), slice(quarter, half)),
             "whole 1500x1500 mask": (slice(0, SIDE), slice(0, SIDE))}
    kernels = {name: {cls.__name__: round(kernel(cls, box), 2) for cls in (Labels, MaskLabels)}
               for name, box in boxes.items()}

    viewer = napari.Viewer(show=True)
    app = QApplication.instance()
    viewer.add_image(np.random.default_rng(2).integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8), rgb=True)
    colormap = DirectLabelColormap(color_dict={None: (0, 0, 0, 0), 0: (0, 0, 0, 0), 1: MASK_RGBA})
    classes = {"Labels": Labels, "MaskLabels": MaskLabels}
    layers = {}
    for name, cls in classes.items():
        layers[name] = viewer.add_layer(cls(patches[0].copy(), name=name, colormap=colormap))
        layers[name].contour = contour

    def timed(name: str, action) -> float:
        for other, layer in layers.items():
            layer.visible = other == name
        app.processEvents()
        t0 = time.perf_counter()
        action(layers[name])
        app.processEvents()
        return 1000 * (time.perf_counter() - t0)

    for _ in range(5):
        app.processEvents()
    click_ms: dict[str, list[float]] = {name: [] for name in classes}
    for i, (mask, box) in enumerate(changes):
        for name in classes:
            elapsed = timed(name, lambda layer, mask=mask, box=box: update_labels_layer(layer, mask, within=box))
            if i >= warmup:
                click_ms[name].append(elapsed)
    switch_ms: dict[str, list[float]] = {name: [] for name in classes}
    for mask in patches[1:]:
        for name in classes:
            switch_ms[name].append(timed(name, lambda layer, mask=mask: update_labels_layer(layer, mask, replace=True)))
    for name in classes:
        if not np.array_equal(layers[name].data, patches[-1]):
            raise RuntimeError(f"the {name} layer did not end with the last mask")
    viewer.close()
    med = {kind: {name: round(statistics.median(ts), 1) for name, ts in times.items()}
           for kind, times in (("click", click_ms), ("switch", switch_ms))}
    return {
        "kernel_ms": kernels,
        "viewer_ms": med,
        "settings": {"clicks": clicks, "switches": switches, "warmup": warmup, "contour": contour,
                     "patch": [SIDE, SIDE], "command": "python " + shlex.join(sys.argv)},
        "machine": {"cpu": cpu_model(), "logical_cores": os.cpu_count(), "napari": napari.__version__,
                    "python": platform.python_version(), "platform": platform.platform()},
    }


def to_markdown(r: dict, note: str) -> str:
    m, s, k, v = r["machine"], r["settings"], r["kernel_ms"], r["viewer_ms"]
    rows = [f"| outline alone, {name} | {t['Labels']:.1f} | {t['MaskLabels']:.1f} | "
            f"{t['Labels'] / t['MaskLabels']:.1f}x |" for name, t in k.items()]
    rows += [f"| {what} in the viewer, until painted | {v[kind]['Labels']:.1f} | {v[kind]['MaskLabels']:.1f} | "
             f"{v[kind]['Labels'] / v[kind]['MaskLabels']:.1f}x |"
             for kind, what in (("click", f"a click (median of {s['clicks']})"),
                                ("switch", f"a patch switch (median of {s['switches']})"))]
    table = "\n".join(rows)
    return f"""# Drawing the mask's outline: napari's Labels vs the widget's MaskLabels

Produced by `{s['command']}` under `xvfb-run` (Mesa software OpenGL).

Machine: {m['cpu']}, {m['logical_cores']} logical cores, napari {m['napari']}, Python {m['python']},
{m['platform']}. {note}

A {s['patch'][0]}x{s['patch'][1]} RGB image and a gland-like 0 / 1 mask drawn as the widget draws it
(outline, `contour = {s['contour']}`). A click changes a disc (radius 40-300 px) inside a 750 px focus
window and is written as the widget writes it (`update_labels_layer` within the changed box); a
patch switch replaces the data. The two layer classes run round-robin, only the measured one
visible; times in ms, medians.

| | napari `Labels` | `MaskLabels` | ratio |
|---|---:|---:|---:|
{table}

The two draw the same pixels (`tests/test_widget.py::test_the_mask_layer_outline_is_napari_contour`).
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=30)
    parser.add_argument("--switches", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--note", default="", help="what else ran on the machine")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/mask_outline.json"))
    parser.add_argument("--md", type=Path, default=Path("benchmarks/mask_outline.md"))
    args = parser.parse_args()
    result = run(args.clicks, args.switches, args.warmup)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    args.md.write_text(to_markdown(result, args.note))
    print(to_markdown(result, args.note))


if __name__ == "__main__":
    main()
