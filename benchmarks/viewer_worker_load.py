"""Benchmark: what the GUI thread's work while a click computes costs the click, in a real viewer.

`worker_gil.py` asks this with plain threads; here napari's own work is the load. The widget
(`CosasWidget`, default models) runs in a shown napari viewer under xvfb on a 1500x1500 patch made
as in `bench_viewer_click.py`. Once the patch is ready, the session's click
(`AnnotationSession.compute_click` at a random pixel, one torch thread, not applied) runs in a
napari worker thread, as the widget runs it, while the event loop runs. 10 ms after the start the
GUI thread does one of:

* ``idle``: nothing;
* ``python 30 ms``: 30 ms of pure Python;
* ``repaint``: a repaint of the unchanged canvas (software OpenGL);
* ``new point``: one more point in a points layer, with napari's ``data`` event (napari then
  re-derives the viewer's dimensions);
* ``new point, no data event``: the same without the event, as the widget writes its clicks.

The modes alternate, one click each per round, so that the machine's drift hits them alike. The
report gives each mode's median click time and what it adds to ``idle``.

    xvfb-run -a -s "-screen 0 1280x1024x24" .venv/bin/python benchmarks/viewer_worker_load.py \\
        --md benchmarks/viewer_worker_load.md
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from machine import cpu_model

MODES = ("idle", "python 30 ms", "repaint", "new point", "new point, no data event")
LOAD_AFTER_MS = 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--note", default="", help="what else ran on the machine")
    parser.add_argument("--md", type=Path)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="viewer_worker_load_"))
    os.environ["NAPARI_CONFIG"] = str(folder / "napari_settings.yaml")  # napari's default window
    os.environ["NAPARI_COSAS_CACHE"] = str(folder / "cache")
    import napari
    import numpy as np
    import torch
    from bench_viewer_click import _patches
    from napari.qt.threading import create_worker
    from qtpy.QtCore import QEventLoop, QTimer

    from napari_cosas._widget import CosasWidget
    from napari_cosas._widget_jobs import click_threads, torch_threads

    viewer = napari.Viewer(show=True)
    widget = CosasWidget(viewer)
    viewer.window.add_dock_widget(widget)

    def run_until(condition: Callable[[], bool]) -> None:
        loop = QEventLoop()
        poll = QTimer()
        poll.timeout.connect(lambda: loop.quit() if condition() else None)
        poll.start(1)
        loop.exec()
        poll.stop()

    widget.add_paths(_patches(folder)[:1])
    run_until(lambda: not widget.busy and widget.message_label.text() == "Ready for clicks.")
    session, patch = widget.session, widget.session.current
    points = viewer.add_points(np.zeros((0, 2)), size=25, name="load points")
    points.editable = False
    canvas = viewer.window._qt_viewer.canvas.native
    rng = np.random.default_rng(0)
    gui_threads = torch.get_num_threads()

    def load(mode: str) -> None:
        if mode == "python 30 ms":
            end = time.perf_counter() + 0.030
            while time.perf_counter() < end:
                pass
        elif mode == "repaint":
            canvas.update()
        elif mode.startswith("new point"):
            data = np.vstack([points.data, rng.integers(100, 1400, (1, 2))]).astype(float)
            if mode == "new point":
                points.data = data
            else:
                with points.events.data.blocker():
                    points.data = data

    def click_ms(mode: str) -> float:
        row, col = (int(v) for v in rng.integers(100, 1400, 2))
        done: list[float] = []

        def job() -> None:
            with torch_threads(click_threads(), gui_threads):
                done.append(session.compute_click(patch, row, col, True).latency_s)

        worker = create_worker(job, _start_thread=False)
        worker.start()
        if mode != "idle":
            QTimer.singleShot(LOAD_AFTER_MS, lambda: load(mode))
        run_until(lambda: bool(done))
        return done[0] * 1000

    for mode in MODES:  # warm-up
        click_ms(mode)
    load_before = os.getloadavg()
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    for _ in range(args.rounds):
        for mode in MODES:
            times[mode].append(click_ms(mode))
    load_after = os.getloadavg()
    viewer.close()

    idle = statistics.median(times["idle"])
    lines = [
        "# The GUI thread's work while a click computes, in a real viewer",
        "",
        f"Produced by `python benchmarks/viewer_worker_load.py --rounds {args.rounds}` under xvfb.",
        "",
        f"Machine: {cpu_model()}, {os.cpu_count()} logical cores, napari {napari.__version__}, torch "
        f"{torch.__version__}, Python {platform.python_version()}, software OpenGL (Mesa). Load average before / "
        f"after: {[round(x, 2) for x in load_before]} / {[round(x, 2) for x in load_after]}. {args.note}",
        "",
        f"The session's click on a 1500x1500 patch in a napari worker thread, one torch thread; {LOAD_AFTER_MS} ms "
        f"after its start the GUI thread does what the row says. Median of {args.rounds} clicks per row, the rows "
        "alternating.",
        "",
        "| GUI thread during the click | click (ms) | added to idle (ms) |",
        "| --- | ---: | ---: |",
    ]
    for mode in MODES:
        median = statistics.median(times[mode])
        lines.append(f"| {mode} | {median:.0f} | {median - idle:+.0f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.md:
        args.md.write_text(text)


if __name__ == "__main__":
    main()
