"""Benchmark: clicks in a real napari viewer, from the mouse event to the mask on screen (issue #14).

The widget (`CosasWidget` with the default models, `ModelBundle()`) runs in a shown napari viewer
under a display (xvfb). Two 1500x1500 patches are made from the EBHI sample images shipped with
the package (resized; no GlaS pixels are written anywhere) and opened from PNG files. The script
waits until the first is segmented and encoded, then makes ``--clicks`` clicks, one at a time,
each a real press and release on the canvas (QTest), alternating 2 positive and 1 negative, at
random pixels. For each click it measures

* **click-to-display**: wall time from just before the mouse press until the first canvas paint
  after the widget has written the click's mask into the labels layer (with ``--hold-ms H`` the
  button is held H ms, the event loop running, and the time is taken from the release, where a
  click is confirmed; **press-to-display** is the same from the press, the hold included);
* **GUI-thread block**: a precise QTimer beats every ``HEARTBEAT_MS``; the longest gap between two
  beats during the click, minus the period, is the longest time the GUI thread could not run
  (events, painting, the mouse) because of the click;
* the model time the session records for the click (``ClickRecord.latency_s``, worker thread);
* as a reference for the blocks, the longest block of 10 clicks beside the image, which napari
  handles (press, release, repaint) and the widget only reports as outside the image, and the
  block of 10 repaints of the unchanged canvas (the floor a software-OpenGL paint sets for any
  block that shows something new).

Then **cached patch click-ready**: the second patch is opened (segmented, encoded), the first is
selected again, and a click is made at once: the wall time from selecting the patch to that
click's mask on screen (the embedding is read from the on-disk cache).

With ``--compare REV`` the same measurement runs alternately on the widget of git revision
``REV`` (the source tree exported to a temporary folder) and on the working tree, each in its own
process, ``--rounds`` times, and the report gives medians over all clicks and the ratios
before / after. The embedding cache is a fresh temporary folder per process. With
``--switch-interval S`` (a probe of the GIL's cost, never a setting of the product) the measured
tree's process runs with ``sys.setswitchinterval(S)``; ``--compare HEAD`` then measures the same
code at Python's default beside it.

    xvfb-run -a -s "-screen 0 1280x1024x24" .venv/bin/python benchmarks/bench_viewer_click.py \
        --compare 2462eba --json benchmarks/viewer_click.json --md benchmarks/viewer_click.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SIDE = 1500
HEARTBEAT_MS = 4
#: Gaps between heartbeats longer than this are kept in `GAPS` (seconds), for `viewer_click_timeline.py`.
GAP_KEPT_S = 0.030
#: ``(start, end)`` perf_counter times of each such gap, and ``(press, release)`` of each click.
GAPS: list[tuple[float, float]] = []
PRESSES: list[tuple[float, float]] = []
TIMEOUT_S = 600.0


# ----------------------------------------------------------------------------- one measurement


def _log(text: str) -> None:
    print(f"[{os.getpid()}] {text}", file=sys.stderr, flush=True)


def _patches(folder: Path) -> list[Path]:
    """Two ``(SIDE, SIDE, 3)`` uint8 PNG patches resized from the package's EBHI samples."""
    import imageio.v3 as iio
    import numpy as np
    from skimage.transform import resize

    from napari_cosas._sample_data import sample_path
    from napari_cosas.io.image_io import load_image

    paths = []
    for index in (0, 1):
        image = load_image(sample_path(index))
        big = (resize(image, (SIDE, SIDE), order=1, preserve_range=True, anti_aliasing=False) + 0.5).astype(np.uint8)
        path = folder / f"patch{index}.png"
        iio.imwrite(path, big)
        paths.append(path)
    return paths


def measure(clicks: int, seed: int, hold_s: float = 0.0) -> dict:
    """Run the viewer session in this process; returns per-click numbers. ``hold_s``: seconds
    between each press and its release, spent in the event loop. napari's settings are a fresh
    file (``NAPARI_CONFIG``), so a window size saved by an earlier napari session does not change
    the canvas, and with it the cost of a software-OpenGL paint."""
    folder = Path(tempfile.mkdtemp(prefix="bench_viewer_click_"))
    os.environ["NAPARI_CONFIG"] = str(folder / "napari_settings.yaml")
    import napari
    import numpy as np
    from qtpy.QtCore import QEventLoop, QPoint, Qt, QTimer
    from qtpy.QtTest import QTest
    from qtpy.QtWidgets import QApplication

    from napari_cosas._widget import CosasWidget

    os.environ["NAPARI_COSAS_CACHE"] = str(folder / "cache")  # fresh embedding cache (weights are bundled)
    paths = _patches(folder)
    viewer = napari.Viewer(show=True)
    app = QApplication.instance()
    widget = CosasWidget(viewer)
    viewer.window.add_dock_widget(widget)
    canvas = viewer.window._qt_viewer.canvas
    native = canvas.native

    state: dict = {"last_beat": time.perf_counter(), "max_gap": 0.0, "waiting": None, "shown_at": None}

    def on_draw(_event=None) -> None:
        """The first paint after the click's mask was written (both on the GUI thread)."""
        waiting = state["waiting"]
        if waiting is not None and len(waiting[0].clicks) > waiting[1]:
            state["shown_at"] = time.perf_counter()
            state["waiting"] = None

    canvas._scene_canvas.events.draw.connect(on_draw)

    def beat() -> None:
        now = time.perf_counter()
        state["max_gap"] = max(state["max_gap"], now - state["last_beat"])
        if now - state["last_beat"] > GAP_KEPT_S:
            GAPS.append((state["last_beat"], now))
        state["last_beat"] = now

    heartbeat = QTimer()
    heartbeat.setTimerType(Qt.TimerType.PreciseTimer)
    heartbeat.timeout.connect(beat)
    heartbeat.start(HEARTBEAT_MS)

    def wait_until(condition, timeout_s: float = TIMEOUT_S) -> None:
        """Run the Qt event loop (as napari does) until ``condition()``."""
        loop = QEventLoop()
        deadline = time.perf_counter() + timeout_s
        poll = QTimer()
        poll.timeout.connect(lambda: loop.quit() if condition() or time.perf_counter() > deadline else None)
        poll.start(1)
        loop.exec()
        poll.stop()
        if not condition():
            raise TimeoutError(f"the widget did not finish in {timeout_s:.0f} s: {widget.message_label.text()!r}")

    def ready() -> bool:
        return not widget.busy and widget.message_label.text() == "Ready for clicks."

    def screen_point(row: int, col: int) -> QPoint:
        view = canvas.view
        x, y = (view.transform * view.scene.transform).map([col, row])[:2]
        return QPoint(round(x), round(y))

    def press_and_release(button, point: QPoint) -> tuple[float, float]:
        """A click on the canvas, held ``hold_s``; returns the times of the press and of the
        release (the press's when not held)."""
        pressed = start = time.perf_counter()
        QTest.mousePress(native, button, Qt.KeyboardModifier.NoModifier, point)
        if hold_s:
            wait_until(lambda: time.perf_counter() >= pressed + hold_s)
            start = time.perf_counter()
        QTest.mouseRelease(native, button, Qt.KeyboardModifier.NoModifier, point)
        return pressed, start

    def click_and_show(row: int, col: int, positive: bool) -> tuple[float, float, float]:
        """Seconds from the release (the press when not held) and from the press to the first
        paint showing the click's mask; longest block."""
        patch = widget.session.current
        button = Qt.MouseButton.LeftButton if positive else Qt.MouseButton.RightButton
        point = screen_point(row, col)
        state["waiting"], state["shown_at"] = (patch, len(patch.clicks)), None
        state["max_gap"] = 0.0
        state["last_beat"] = time.perf_counter()
        pressed, start = press_and_release(button, point)
        PRESSES.append((pressed, start))
        wait_until(lambda: state["shown_at"] is not None, timeout_s=60)
        if not np.array_equal(widget.mask_layer.data > 0, patch.mask):
            raise AssertionError("the labels layer does not show the session's mask")
        return state["shown_at"] - start, state["shown_at"] - pressed, max(0.0, state["max_gap"] - HEARTBEAT_MS / 1000)

    t0 = time.perf_counter()
    widget.add_paths(paths)
    wait_until(ready)
    first_ready_s = time.perf_counter() - t0
    canvas_px = list(canvas.size)
    _log(f"first patch ready in {first_ready_s:.1f} s")
    for _ in range(20):  # let the first paints settle
        app.processEvents()

    rng = np.random.default_rng(seed)
    positions = rng.integers(60, SIDE - 60, size=(clicks, 2))
    rows = []
    for i, (row, col) in enumerate(positions):
        positive = i % 3 != 2
        elapsed, from_press, block = click_and_show(int(row), int(col), positive)
        rows.append({"display_ms": elapsed * 1000, "press_display_ms": from_press * 1000, "block_ms": block * 1000,
                     "model_ms": widget.session.current.clicks[-1].latency_s * 1000})
        _log(f"click {i}: " + ", ".join(f"{k} {v:.0f}" for k, v in rows[-1].items()))

    reference_blocks = []
    for i in range(10):  # clicks beside the image: napari handles them, the widget only says so
        point = screen_point(300 + 80 * i, -30)
        state["max_gap"] = 0.0
        state["last_beat"] = time.perf_counter()
        press_and_release(Qt.MouseButton.LeftButton, point)
        settle = time.perf_counter() + 0.3
        wait_until(lambda settle=settle: time.perf_counter() > settle)
        reference_blocks.append(max(0.0, state["max_gap"] - HEARTBEAT_MS / 1000) * 1000)
    repaint_blocks = []
    for _ in range(10):  # the software-OpenGL floor: repaints of the unchanged canvas, nothing else
        state["max_gap"] = 0.0
        state["last_beat"] = time.perf_counter()
        native.update()
        settle = time.perf_counter() + 0.2
        wait_until(lambda settle=settle: time.perf_counter() > settle)
        repaint_blocks.append(max(0.0, state["max_gap"] - HEARTBEAT_MS / 1000) * 1000)
    if "outside" not in widget.message_label.text() or widget.busy:
        raise AssertionError(f"a click beside the image was taken: {widget.message_label.text()!r}")

    widget.next_patch()
    wait_until(ready)
    t0 = time.perf_counter()
    widget.previous_patch()
    row, col = positions[0]
    state["last_beat"] = time.perf_counter()
    _elapsed, _from_press, block = click_and_show(int(row) // 2 + 300, int(col) // 2 + 300, True)
    cached_ready_s = time.perf_counter() - t0
    heartbeat.stop()
    viewer.close()
    return {"clicks": rows, "canvas_px": canvas_px, "first_patch_ready_s": first_ready_s, "cached_patch_click_ready_s": cached_ready_s,
            "cached_patch_block_ms": block * 1000, "ignored_press_block_ms": reference_blocks,
            "repaint_block_ms": repaint_blocks}


# ----------------------------------------------------------------------------- driver


def _export_tree(rev: str, dest: Path) -> Path:
    """``src/`` of git revision ``rev`` under ``dest``; returns the ``src`` folder."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "src"], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    return dest / "src"


def _run_child(src: Path, clicks: int, seed: int, hold_ms: float, switch_interval: float | None = None) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as out:
        out_path = Path(out.name)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), str(HERE)]),
           "NAPARI_COSAS_WEIGHTS": str(REPO / "weights")}  # the default models of this checkout
    probe = [] if switch_interval is None else ["--switch-interval", str(switch_interval)]
    subprocess.run([sys.executable, __file__, "--child", str(out_path), "--clicks", str(clicks), "--seed", str(seed),
                    "--hold-ms", str(hold_ms), *probe], env=env, check=True)
    result = json.loads(out_path.read_text())
    out_path.unlink()
    return result


def _summary(runs: list[dict]) -> dict:
    clicks = [c for run in runs for c in run["clicks"]]
    return {
        "clicks": len(clicks),
        "canvas_px": runs[0]["canvas_px"],
        "median_display_ms": statistics.median(c["display_ms"] for c in clicks),
        "p90_display_ms": statistics.quantiles([c["display_ms"] for c in clicks], n=10)[-1],
        "median_press_display_ms": statistics.median(c.get("press_display_ms", c["display_ms"]) for c in clicks),
        "clicks_within_150_ms": sum(c["display_ms"] <= 150 for c in clicks),
        "clicks_blocking_over_50_ms": sum(c["block_ms"] > 50 for c in clicks),
        "max_block_ms": max(c["block_ms"] for c in clicks),
        "median_block_ms": statistics.median(c["block_ms"] for c in clicks),
        "median_model_ms": statistics.median(c["model_ms"] for c in clicks),
        "cached_patch_click_ready_s": statistics.median(r["cached_patch_click_ready_s"] for r in runs),
        "first_patch_ready_s": statistics.median(r["first_patch_ready_s"] for r in runs),
        "median_ignored_press_block_ms": statistics.median(b for r in runs for b in r["ignored_press_block_ms"]),
        "median_repaint_block_ms": statistics.median(b for r in runs for b in r["repaint_block_ms"]),
    }


def _markdown(result: dict) -> str:
    variants = result["variants"]
    names = list(variants)
    lines = [
        "# Clicks in a real napari viewer (issue #14)",
        "",
        f"Produced by `{result['command']}`.",
        "",
        f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} logical cores, napari "
        f"{result['machine']['napari']}, torch {result['machine']['torch']}, Python {result['machine']['python']}, "
        "software OpenGL (Mesa) under xvfb, canvas "
        + " / ".join(f"{v['canvas_px'][0]}x{v['canvas_px'][1]}" for v in variants.values() if "canvas_px" in v)
        + " px (a software paint's cost grows with it).",
        f"Load average before / after: {result['load_before']} / {result['load_after']}. {result['note']}",
        "",
        f"A 1500x1500 patch, default models, {variants[names[-1]]['clicks']} clicks per variant "
        f"({result['rounds']} round(s) of {result['clicks_per_run']}, variants alternating), each a real "
        "mouse press and release on the canvas, the next one after the previous mask is on screen. "
        + (f"Each click is held {result['hold_ms']:g} ms (the event loop runs between press and release, as for "
           "a hand's click) and click-to-display is timed from the release."
           if result.get("hold_ms") else
           "The release follows the press at once (both handled in one GUI-thread block), and "
           "click-to-display is timed from the press."),
        "",
        "| | " + " | ".join(names) + (" | before / after |" if len(names) == 2 else " |"),
        "| --- | " + " | ".join("---:" for _ in names) + (" | ---: |" if len(names) == 2 else " |"),
    ]
    rows = [
        ("median click-to-display (ms)", "median_display_ms", "{:.0f}"),
        ("90th percentile click-to-display (ms)", "p90_display_ms", "{:.0f}"),
        ("clicks on screen within 150 ms", "clicks_within_150_ms", "{:d}"),
        ("median press-to-display, the hold included (ms)", "median_press_display_ms", "{:.0f}"),
        ("median model time, worker (ms)", "median_model_ms", "{:.0f}"),
        ("longest GUI-thread block during a click (ms)", "max_block_ms", "{:.0f}"),
        ("median of each click's longest block (ms)", "median_block_ms", "{:.0f}"),
        ("clicks blocking the GUI thread > 50 ms", "clicks_blocking_over_50_ms", "{:d}"),
        ("reference: median longest block of a click beside the image (napari's handling, no model) (ms)",
         "median_ignored_press_block_ms", "{:.0f}"),
        ("reference: median block of a repaint of the unchanged canvas (software OpenGL, no model) (ms)",
         "median_repaint_block_ms", "{:.0f}"),
        ("cached patch: select to first click shown (s)", "cached_patch_click_ready_s", "{:.2f}"),
        ("first patch: open to ready for clicks (s)", "first_patch_ready_s", "{:.1f}"),
    ]
    for label, key, fmt in rows:
        values = [variants[n][key] for n in names]
        cells = [fmt.format(v) for v in values]
        ratio = f" | {values[0] / values[1]:.2f}x" if len(names) == 2 and values[1] else (" | –" if len(names) == 2 else "")
        lines.append(f"| {label} | " + " | ".join(cells) + ratio + " |")
    lines += ["", "Targets (issue #14): click-to-display <= 150 ms, no GUI-thread block > 50 ms, "
              "cached patch click-ready <= 1 s."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clicks", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compare", metavar="REV", help="also measure the widget of this git revision")
    parser.add_argument("--after", metavar="REV", help="measure this git revision instead of the working tree")
    parser.add_argument("--hold-ms", type=float, default=0.0,
                        help="hold each click this long between press and release, the event loop running (a "
                        "hand's click lasts about 100 ms); click-to-display is then timed from the release. 0: "
                        "the release follows the press at once, both handled in one block")
    parser.add_argument("--note", default="", help="what else ran on the machine")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--md", type=Path)
    parser.add_argument("--switch-interval", type=float, metavar="S",
                        help="a probe, not a setting of the product: the measured tree's process (not --compare's) "
                        "runs with sys.setswitchinterval(S), so the click's worker thread waits less for the GIL "
                        "while the GUI thread runs Python (benchmarks/worker_gil.md)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        if args.switch_interval is not None:
            sys.setswitchinterval(args.switch_interval)
        args.child.write_text(json.dumps(measure(args.clicks, args.seed, args.hold_ms / 1000)))
        return

    import napari
    import torch
    from machine import cpu_model

    load_before = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory() as tmp:
        after = ("this tree", REPO / "src") if args.after is None else (
            args.after, _export_tree(args.after, Path(tmp) / "after"))
        probe = "" if args.switch_interval is None else f", switch interval {args.switch_interval * 1000:g} ms"
        # name -> (source tree, switch interval of its process)
        sources = {f"after ({after[0]}{probe})": (after[1], args.switch_interval)}
        if args.compare:
            sources = {f"before ({args.compare})": (_export_tree(args.compare, Path(tmp) / "before"), None), **sources}
        runs: dict[str, list[dict]] = {name: [] for name in sources}
        for round_ in range(args.rounds):
            for name, (src, switch_interval) in sources.items():
                runs[name].append(_run_child(src, args.clicks, args.seed + round_, args.hold_ms, switch_interval))
    result = {
        "command": "python benchmarks/bench_viewer_click.py " + shlex.join(sys.argv[1:]),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "napari": napari.__version__,
                    "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform()},
        "load_before": load_before,
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "note": args.note,
        "rounds": args.rounds,
        "clicks_per_run": args.clicks,
        "hold_ms": args.hold_ms,
        "variants": {name: _summary(r) for name, r in runs.items()},
        "runs": runs,
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    text = _markdown(result)
    if args.md:
        args.md.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
