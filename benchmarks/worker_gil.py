"""Benchmark: how much does Python on the GUI thread slow the click in its worker thread?

``click_gil.py`` asks the opposite question (does the worker slow the GUI thread?). Here the
click runs where the widget runs it, in a worker thread of this process: `Focus.click` with the
default click model and refiner on a 1500x1500 patch, one torch thread. Meanwhile the main thread
(standing for napari's GUI thread) does one of three things:

* ``idle``: sleeps;
* ``python 50 %``: pure-Python work and 10 ms sleeps in turn, about half of the time;
* ``python``: pure-Python work without a pause (napari handling events and vispy drawing).

Each torch operation releases the GIL while it computes. After it, the worker waits for the GIL
again, and a Python-busy thread yields it only every ``sys.getswitchinterval()`` (5 ms). A click
of about 600 operations therefore stalls whenever the GUI thread runs Python. As the remedy's
probe, the same happens to a loop of 600 small products, once eager and once as a TorchScript
function, whose operations run in C++ without taking the GIL between them.

    OMP_NUM_THREADS=1 python benchmarks/worker_gil.py --md benchmarks/worker_gil.md
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from machine import cpu_model

from napari_cosas.inference.focus import Focus
from napari_cosas.inference.predictor import ClickPredictor
from napari_cosas.inference.refine import CLICK_MEMORY
from napari_cosas.models.registry import load_focus_refiner

SIDE = 1500
MODES = ("idle", "python 50 %", "python")


def _main_thread(mode: str, worker: threading.Thread) -> None:
    """What the main thread does until ``worker`` ends."""
    total = 0
    while worker.is_alive():
        if mode == "idle":
            time.sleep(0.005)
            continue
        for i in range(20000):
            total += i * i % 7
        if mode == "python 50 %":
            time.sleep(0.010)


def _timed(job: Callable[[], object], repeats: int, mode: str) -> float:
    """Median seconds of ``job`` in a worker thread while the main thread does ``mode``."""
    times: list[float] = []

    def work() -> None:
        for _ in range(repeats):
            start = time.perf_counter()
            job()
            times.append(time.perf_counter() - start)

    worker = threading.Thread(target=work)
    worker.start()
    _main_thread(mode, worker)
    worker.join()
    return statistics.median(times)


def _click_job() -> Callable[[], object]:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
    predictor = ClickPredictor.from_registry("cosas-default-click", device="cpu")
    predictor.set_image(image)
    focus = Focus(load_focus_refiner("cosas-default-focus"), image)
    previous = np.zeros((SIDE, SIDE), dtype=bool)
    previous[500:1000, 500:1000] = True
    prompt = predictor.mask_to_prompt(previous)
    points = np.array([[700.0, 700.0], [720.0, 650.0], [800.0, 760.0], [650.0, 700.0], [510.0, 720.0]])
    labels = np.array([1, 0, 1, 0, 1])
    job = lambda: focus.click(predictor, previous, points, labels, prompt, memory=CLICK_MEMORY)  # noqa: E731
    job()
    return job


def _loop(x: torch.Tensor, a: torch.Tensor, n: int) -> torch.Tensor:
    for _ in range(n):
        x = torch.tanh(x @ a)
    return x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--note", default="", help="what else ran on the machine")
    parser.add_argument("--md", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    a = torch.randn(64, 64)
    scripted = torch.jit.script(_loop)
    jobs = {
        "the product's click (`Focus.click`, 1500x1500)": _click_job(),
        "600 small products, eager": lambda: _loop(a, a, 600),
        "600 small products, TorchScript": lambda: scripted(a, a, 600),
    }
    load_before = os.getloadavg()
    rows = {name: {mode: _timed(job, args.repeats, mode) for mode in MODES} for name, job in jobs.items()}
    load_after = os.getloadavg()
    lines = [
        "# Python on the GUI thread against the click in its worker thread",
        "",
        f"Produced by `OMP_NUM_THREADS=1 python benchmarks/worker_gil.py --repeats {args.repeats}`.",
        "",
        f"Machine: {cpu_model()}, {os.cpu_count()} logical cores, torch {torch.__version__}, Python "
        f"{sys.version.split()[0]}, one torch thread, GIL switch interval {sys.getswitchinterval() * 1000:g} ms. "
        f"Load average before / after: {[round(x, 2) for x in load_before]} / {[round(x, 2) for x in load_after]}. "
        f"{args.note}",
        "",
        f"Median of {args.repeats} runs of each job in a worker thread, while the main thread does what "
        "the column says (see the script's docstring).",
        "",
        "| job in the worker thread | " + " | ".join(f"main thread {m} (ms)" for m in MODES) + " | python / idle |",
        "| --- |" + " ---: |" * (len(MODES) + 1),
    ]
    for name, times in rows.items():
        cells = " | ".join(f"{times[m] * 1000:.1f}" for m in MODES)
        lines.append(f"| {name} | {cells} | {times['python'] / times['idle']:.1f}x |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.md:
        args.md.write_text(text)


if __name__ == "__main__":
    main()
