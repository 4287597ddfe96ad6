"""Benchmark: does the click worker slow napari's GUI thread through the GIL or through the CPU?

A main thread (standing for napari's GUI thread) runs chunks of pure-Python work calibrated to
~30 ms on an idle core, while a click runs (a) nowhere, (b) in a worker thread of this process
(the widget's way: ``Interaction.click`` with the default click model on a 1500x1500 patch,
one torch thread), (c) in a subprocess (what a worker process or any GIL-free decoder could
achieve at best: CPU contention only), (d) a torch matrix product loop in a thread (releases
the GIL for the whole product: CPU contention only). If (b) is no slower than (c) and (d), the
GIL is not what delays the GUI thread. Also: how late does a 1 ms ``time.sleep`` return while a
click runs in a thread (the cost of each GIL hand-over)?

    OMP_NUM_THREADS=1 python benchmarks/click_gil.py
"""

from __future__ import annotations

import multiprocessing as mp
import os
import statistics
import sys
import threading
import time

import numpy as np
import torch

CHUNK_S = 0.030


def _python_chunk(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def _calibrate() -> int:
    n = 200_000
    start = time.perf_counter()
    _python_chunk(n)
    return int(n * CHUNK_S / (time.perf_counter() - start))


def _click_loop():
    """A function making one click per call (default click model, 1500x1500 sample patch)."""
    sys.modules.setdefault("triton", None)
    from skimage.transform import resize

    from napari_cosas._sample_data import sample_path
    from napari_cosas.interaction.clicks import Click
    from napari_cosas.io.image_io import load_image
    from napari_cosas.interaction.correctors import ModelCorrector
    from napari_cosas.interaction.engine import Interaction
    from napari_cosas.inference.predictor import ClickPredictor

    image = (resize(load_image(sample_path(0)), (1500, 1500), order=1, preserve_range=True) + 0.5).astype(np.uint8)
    predictor = ClickPredictor.from_registry("cosas-default-click", device="cpu")
    predictor.set_image(image)
    rows, cols = np.mgrid[:1500, :1500]
    auto = (((rows - 700) ** 2 + (cols - 800) ** 2) < 400**2).astype(np.float32) * 0.9
    interaction, corrector = Interaction((1500, 1500), auto_prob=auto), ModelCorrector(predictor)
    interaction.click(corrector, Click(700, 800, True))
    positions = np.random.default_rng(0).integers(60, 1440, size=(100_000, 2))
    count = iter(range(len(positions)))

    def click() -> None:
        i = next(count)
        interaction.click(corrector, Click(int(positions[i, 0]), int(positions[i, 1]), i % 3 != 2))

    return click


def _until(stop, work) -> None:
    while not stop.is_set():
        work()


def _child(stop) -> None:
    torch.set_num_threads(1)
    _until(stop, _click_loop())


def _matmul_loop():
    a, b = torch.randn(1000, 1000), torch.randn(1000, 1000)
    return lambda: torch.mm(a, b)


def _chunks(label: str, n: int, reps: int = 40) -> None:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        _python_chunk(n)
        times.append((time.perf_counter() - start) * 1000)
        time.sleep(0.01)
    print(f"| {label} | {statistics.median(times):.1f} | {statistics.quantiles(times, n=10)[-1]:.1f} | "
          f"{max(times):.1f} |", flush=True)


def _sleep_overshoot(label: str, reps: int = 500) -> None:
    late = []
    for _ in range(reps):
        start = time.perf_counter()
        time.sleep(0.001)
        late.append((time.perf_counter() - start - 0.001) * 1000)
    print(f"| {label} | {statistics.mean(late):.2f} | {statistics.quantiles(late, n=100)[-1]:.2f} | {max(late):.2f} |")


def main() -> None:
    torch.set_num_threads(1)
    print(f"load average before: {[round(x, 2) for x in os.getloadavg()]}")
    n = _calibrate()
    print("\n| another job | 30-ms Python chunk: median (ms) | 90th pct (ms) | max (ms) |\n| --- | ---: | ---: | ---: |")
    _chunks("none", n)
    stop = threading.Event()
    thread = threading.Thread(target=_until, args=(stop, _matmul_loop()))
    thread.start()
    _chunks("torch matmul loop, thread (GIL released)", n)
    stop.set()
    thread.join()
    click = _click_loop()
    stop = threading.Event()
    thread = threading.Thread(target=_until, args=(stop, click))
    thread.start()
    _chunks("clicks, worker thread (the widget's way)", n)
    print("\n| another job | 1-ms sleep returns late: mean (ms) | 99th pct (ms) | max (ms) |\n| --- | ---: | ---: | ---: |")
    _sleep_overshoot("clicks, worker thread (the widget's way)")
    stop.set()
    thread.join()
    _sleep_overshoot("none")
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    child = ctx.Process(target=_child, args=(stop,))
    child.start()
    time.sleep(20)  # model loaded, image encoded, clicking
    print("\n| another job | 30-ms Python chunk: median (ms) | 90th pct (ms) | max (ms) |\n| --- | ---: | ---: | ---: |")
    _chunks("clicks, subprocess (no shared GIL)", n)
    stop.set()
    child.join()
    _chunks("none (again)", n)
    print(f"\nload average after: {[round(x, 2) for x in os.getloadavg()]}")


if __name__ == "__main__":
    main()
