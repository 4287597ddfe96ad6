"""Benchmark: what the GUI thread does while it is blocked during a click (issue #14).

Runs ``bench_viewer_click.measure`` (a real napari viewer under xvfb, a 1500x1500 patch, real
mouse presses and releases held ``--hold-ms``) with the wall time of a few GUI-thread calls
recorded: Qt's mouse press and release handlers of the canvas, its paint (``paintGL``), vispy's
picking render (``SceneCanvas.visual_at``), napari's layer-list row paints and thumbnails, and
the widget's own steps (the click queue, the layers' writes, the job start). For every gap of
more than ``GAP_KEPT_S`` between two heartbeats of the GUI thread it lists the recorded calls
that overlap it, then sums the time per call over the gaps of each kind.

    xvfb-run -a -s "-screen 0 1280x1024x24" .venv/bin/python benchmarks/viewer_click_timeline.py \
        --clicks 30 --hold-ms 80 --md benchmarks/viewer_click_timeline.md

Calls nest (the picking render runs inside the press handler, the widget's job start inside
its press), so a gap's calls do not add up to it; what it holds beyond them is Qt's and X's own
work (the window's composition, events).
"""

from __future__ import annotations

import argparse
import functools
import platform
import statistics
import threading
import time
from collections import defaultdict
from pathlib import Path

import bench_viewer_click as bench
from machine import cpu_model

CALLS: list[tuple[str, float, float]] = []  # (name, start, end), GUI thread only


def _record(cls: type, method: str, name: str) -> None:
    """Replace ``cls.method`` (in this benchmark's process only) by a wrapper that records the
    wall time of its GUI-thread calls."""
    original = getattr(cls, method)
    main = threading.main_thread()

    @functools.wraps(original)
    def recorded(*args, **kwargs):
        if threading.current_thread() is not main:
            return original(*args, **kwargs)
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            CALLS.append((name, start, time.perf_counter()))

    setattr(cls, method, recorded)


def _install() -> None:
    import vispy.app
    from napari._qt.containers._layer_delegate import LayerDelegate
    from napari.layers import Labels, Points
    from vispy.scene import SceneCanvas

    from napari_cosas import _widget_clicks, _widget_jobs, _widget_layers

    backend = vispy.app.use_app("pyqt6").backend_module
    _record(backend.CanvasBackendDesktop, "paintGL", "canvas paint (paintGL)")
    _record(backend.QtBaseCanvasBackend, "mousePressEvent", "press handler (napari)")
    _record(backend.QtBaseCanvasBackend, "mouseReleaseEvent", "release handler (napari)")
    _record(SceneCanvas, "visual_at", "picking render (vispy, in the press handler)")
    _record(LayerDelegate, "paint", "layer list row paint")
    _record(Labels, "_update_thumbnail", "labels thumbnail")
    _record(Points, "_update_thumbnail", "points thumbnail")
    _record(_widget_layers.PatchLayers, "show_mask", "widget: mask write (show_mask)")
    _record(_widget_layers.PatchLayers, "show_clicks", "widget: points write (show_clicks)")
    _record(_widget_clicks.ClickQueue, "press", "widget: ClickQueue.press")
    _record(_widget_jobs.JobRunner, "start", "widget: job start")


def _kind(calls: list[tuple[str, float, float]]) -> str:
    names = {name for name, _s, _e in calls}
    if "press handler (napari)" in names:
        return "the press's turn"
    if "widget: points write (show_clicks)" in names:
        return "the points' turn"
    if "widget: mask write (show_mask)" in names:
        return "the mask's turn"
    return "other"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clicks", type=int, default=30)
    parser.add_argument("--hold-ms", type=float, default=80.0)
    parser.add_argument("--md", type=Path)
    args = parser.parse_args()
    _install()
    result = bench.measure(args.clicks, seed=0, hold_s=args.hold_ms / 1000)
    end = bench.PRESSES[args.clicks - 1][1] + 2.0 if len(bench.PRESSES) >= args.clicks else float("inf")
    gaps = [g for g in bench.GAPS if bench.PRESSES[0][0] - 0.01 <= g[0] < end]
    by_kind: dict[str, list[float]] = defaultdict(list)
    per_call: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for start, stop in gaps:
        inside = [(n, s, e) for n, s, e in CALLS if s < stop and e > start]
        kind = _kind(inside)
        by_kind[kind].append((stop - start) * 1000)
        totals: dict[str, float] = defaultdict(float)
        for name, s, e in inside:
            totals[name] += (min(e, stop) - max(s, start)) * 1000
        for name, total in totals.items():
            per_call[kind][name].append(total)
    lines = [
        "# What blocks the GUI thread during a click (issue #14)",
        "",
        f"Produced by `python benchmarks/viewer_click_timeline.py --clicks {args.clicks} --hold-ms {args.hold_ms:g}`"
        " under xvfb.",
        "",
        f"Machine: {cpu_model()}, Python {platform.python_version()}, software OpenGL (Mesa) under xvfb; "
        f"median click-to-display {statistics.median(r['display_ms'] for r in result['clicks']):.0f} ms, "
        f"median model time {statistics.median(r['model_ms'] for r in result['clicks']):.0f} ms.",
        "",
        f"Gaps of more than {bench.GAP_KEPT_S * 1000:.0f} ms between the GUI thread's heartbeats "
        f"({bench.HEARTBEAT_MS} ms) during {args.clicks} clicks, by the event-loop turn they fall in. "
        "For each recorded call: the number of gaps it ran in and its median time there (ms).",
        "",
    ]
    for kind, lengths in sorted(by_kind.items(), key=lambda item: -len(item[1])):
        over = sum(length > 50 for length in lengths)
        lines += [f"## {kind}: {len(lengths)} gaps, median {statistics.median(lengths):.0f} ms, "
                  f"longest {max(lengths):.0f} ms, {over} over 50 ms", "",
                  "| call | gaps | median ms in the gap |", "| --- | ---: | ---: |"]
        for name, times in sorted(per_call[kind].items(), key=lambda item: -statistics.median(item[1])):
            lines.append(f"| {name} | {len(times)} | {statistics.median(times):.1f} |")
        lines.append("")
    text = "\n".join(lines)
    print(text)
    if args.md:
        args.md.write_text(text)


if __name__ == "__main__":
    main()
