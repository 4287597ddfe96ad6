"""Benchmark: the product's click on a 1500x1500 patch by the decoder's context margin, product precision and focus window.

One process, one torch thread, the default click model and focus refiner, a random 1500x1500
image (encoded once; every variant reads that embedding), a mask of a 500x500 square and five clicks near its edge.
Each variant is one ``ClickPredictor(context_margin=..., precision=...)`` and one focus window
(``Focus(window=..., max_side=None)``: not capped at ``refine.FOCUS_MAX_SIDE`` pixels as in the
product; the refiner's input side following it, ``focus.focus_size``); a click is
``Focus.click`` as the widget and ``evaluate`` make it after the first (the model's logits in the
focus window, the refiner, the paste-back). The variants run round-robin (click i of each before click i + 1),
so background load hits them alike; the report gives the median of ``--clicks`` clicks after 3
warm-up clicks, the ratio to the first variant, and the load average.

    python benchmarks/bench_focus_click.py --margins none 8 4 --md benchmarks/focus_click.md
    python benchmarks/bench_focus_click.py --margins 8 --precisions fp32 bf16 --md benchmarks/click_precision.md
    python benchmarks/bench_focus_click.py --margins 8 --windows 0.5 0.75 1.0 --md benchmarks/focus_window_click.md
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

from napari_cosas.inference.focus import Focus, focus_size
from napari_cosas.inference.predictor import ClickPredictor
from napari_cosas.inference.refine import CLICK_MEMORY, FOCUS_WINDOW
from napari_cosas.models.registry import load_focus_refiner

SIDE = 1500


def _margin(text: str) -> int | None:
    return None if text == "none" else int(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--margins", nargs="+", type=_margin, default=[None, 8, 4])
    parser.add_argument("--precisions", nargs="+", choices=("fp32", "bf16"), default=["fp32"],
                        help="the decoder's product precision (ClickPredictor's precision)")
    parser.add_argument("--windows", nargs="+", type=float, default=[FOCUS_WINDOW],
                        help="focus windows, fractions of the longer side")
    parser.add_argument("--clicks", type=int, default=30)
    parser.add_argument("--note", default="", help="what else ran on the machine")
    parser.add_argument("--md", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
    base = ClickPredictor.from_registry("cosas-default-click", device="cpu", context_margin=None)
    base.set_image(image)
    predictors = {}
    for margin in args.margins:
        for precision in args.precisions:
            predictor = ClickPredictor(base.model, base.model_id, device="cpu", cache=None, context_margin=margin,
                                       precision=precision)
            predictor.set_embedding(base.embedding, base.input_size, base.original_size)
            for window in args.windows:
                predictors[margin, precision, window] = predictor
    refiner = load_focus_refiner("cosas-default-focus")
    focuses = {window: Focus(refiner, image, window, max_side=None) for window in args.windows}
    previous = np.zeros((SIDE, SIDE), dtype=bool)
    previous[500:1000, 500:1000] = True
    prompt = base.mask_to_prompt(previous)
    earlier = np.array([[700.0, 700.0], [720.0, 650.0], [800.0, 760.0], [650.0, 700.0]])
    times: dict[tuple[int | None, str, float], list[float]] = {variant: [] for variant in predictors}
    load_before = os.getloadavg()
    for i in range(args.clicks + 3):
        latest = [500.0 + rng.uniform(-40, 40), 500.0 + rng.uniform(0, 500)]
        points = np.vstack([earlier, latest])
        labels = np.array([1, 0, 1, 0, int(i % 2)])
        for variant, predictor in predictors.items():
            start = time.perf_counter()
            focuses[variant[2]].click(predictor, previous, points, labels, prompt, memory=CLICK_MEMORY)
            if i >= 3:
                times[variant].append(time.perf_counter() - start)
    load_after = os.getloadavg()
    variants = list(predictors)
    reference = statistics.median(times[variants[0]])
    lines = [
        "# The product's click by the decoder's context margin, product precision and focus window",
        "",
        f"Produced by `python benchmarks/bench_focus_click.py --margins "
        f"{' '.join('none' if m is None else str(m) for m in args.margins)} --precisions {' '.join(args.precisions)} "
        f"--windows {' '.join(str(w) for w in args.windows)} --clicks {args.clicks}`.",
        "",
        f"Machine: {cpu_model()}, {os.cpu_count()} logical cores, torch {torch.__version__}, one torch thread. "
        f"Load average before / after: {[round(x, 2) for x in load_before]} / {[round(x, 2) for x in load_after]}. "
        f"{args.note}",
        "",
        f"A focus-refined click on a {SIDE}x{SIDE} patch, default click model and refiner; "
        f"median of {args.clicks} clicks per variant, the variants round-robin.",
        "",
        "| context margin | precision | focus window | refiner input px | median ms | first / this |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for margin, precision, window in variants:
        median = statistics.median(times[margin, precision, window])
        lines.append(f"| {'none (every token)' if margin is None else margin} | {precision} | {window} "
                     f"({round(window * SIDE)} px) | {focus_size(window)} | {median * 1000:.1f} | "
                     f"{reference / median:.2f}x |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.md:
        args.md.write_text(text)


if __name__ == "__main__":
    main()
