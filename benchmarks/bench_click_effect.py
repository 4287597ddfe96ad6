"""Benchmark: a click's time in the local and the global click effect on a 1500x1500 patch.

One process, one torch thread, the default click model (product settings) and focus refiner with
the product's focus window, a random 1500x1500 image (encoded once), a mask of a 500x500 square and
five clicks near its edge. A click is ``ModelCorrector.correct`` as the widget and ``evaluate``
make it after the first: local (the focus-refined click) and global (the same, then the whole
prediction's pass and its sure pixels beyond the click's reach). The effects run round-robin
(click i of each before click i + 1), so background load hits them alike; the report gives the
median of ``--clicks`` clicks after 3 warm-up clicks, the ratio to local, and the load average.

    python benchmarks/bench_click_effect.py --md benchmarks/click_effect_time.md
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from machine import cpu_model

from napari_cosas.inference.focus import Focus
from napari_cosas.inference.predictor import ClickPredictor
from napari_cosas.interaction.clicks import Click
from napari_cosas.interaction.correctors import ClickContext, ModelCorrector
from napari_cosas.models.registry import load_focus_refiner

SIDE = 1500
EFFECTS = ("local", "global")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=30)
    parser.add_argument("--note", default="", help="what else ran on the machine")
    parser.add_argument("--md", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
    predictor = ClickPredictor.from_registry("cosas-default-click", device="cpu")
    predictor.set_image(image)
    focus = Focus(load_focus_refiner("cosas-default-focus"), image)
    correctors = {effect: ModelCorrector(predictor, effect=effect, focus=focus) for effect in EFFECTS}
    previous = np.zeros((SIDE, SIDE), dtype=bool)
    previous[500:1000, 500:1000] = True
    earlier = (Click(700, 700, True), Click(720, 650, False), Click(800, 760, True), Click(650, 700, False))
    times: dict[str, list[float]] = {effect: [] for effect in EFFECTS}
    load_before = os.getloadavg()
    for i in range(args.clicks + 3):
        latest = Click(int(500 + rng.uniform(-40, 40)), int(500 + rng.uniform(0, 500)), bool(i % 2))
        context = ClickContext(previous, (*earlier, latest), auto_prob=None, untouched=False)
        for effect, corrector in correctors.items():
            start = time.perf_counter()
            corrector.correct(context)
            if i >= 3:
                times[effect].append(time.perf_counter() - start)
    load_after = os.getloadavg()
    local = statistics.median(times["local"])
    lines = [
        "# A click's time by click effect",
        "",
        f"Produced by `python benchmarks/bench_click_effect.py --clicks {args.clicks}`.",
        "",
        f"Machine: {cpu_model()}, {os.cpu_count()} logical cores, torch {torch.__version__}, one torch thread. "
        f"Load average before / after: {[round(x, 2) for x in load_before]} / {[round(x, 2) for x in load_after]}. "
        f"{args.note}",
        "",
        f"A click after the first on a {SIDE}x{SIDE} patch (`ModelCorrector.correct`), default click model "
        f"and refiner, product settings; median of {args.clicks} clicks per effect, the effects round-robin.",
        "",
        "| click effect | median ms | this / local |",
        "| --- | ---: | ---: |",
    ]
    for effect in EFFECTS:
        median = statistics.median(times[effect])
        lines.append(f"| {effect} | {median * 1000:.1f} | {median / local:.2f}x |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.md:
        args.md.write_text(text)


if __name__ == "__main__":
    main()
