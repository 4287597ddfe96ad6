"""Benchmark: the product's click on a 1500x1500 patch by the decoder's context margin and product precision.

One process, one torch thread, the default click model and focus refiner, a random 1500x1500
image (encoded once; every variant reads that embedding), a mask of a 500x500 square and five clicks near its edge.
Each variant is one ``ClickPredictor(context_margin=..., precision=...)``; a click is ``Focus.click`` as the
widget and ``evaluate`` make it after the first (the model's logits in the 750x750 focus window,
the refiner, the paste-back). The variants run round-robin (click i of each before click i + 1),
so background load hits them alike; the report gives the median of ``--clicks`` clicks after 3
warm-up clicks, the ratio to the first variant, and the load average.

    python benchmarks/bench_focus_click.py --margins none 8 4 --md benchmarks/focus_click.md
    python benchmarks/bench_focus_click.py --margins 8 --precisions fp32 bf16 --md benchmarks/click_precision.md
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
from napari_cosas.inference.refine import CLICK_MEMORY
from napari_cosas.models.registry import load_focus_refiner

SIDE = 1500


def _margin(text: str) -> int | None:
    return None if text == "none" else int(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--margins", nargs="+", type=_margin, default=[None, 8, 4])
    parser.add_argument("--precisions", nargs="+", choices=("fp32", "bf16"), default=["fp32"],
                        help="the decoder's product precision (ClickPredictor's precision)")
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
            predictors[margin, precision] = predictor
    focus = Focus(load_focus_refiner("cosas-default-focus"), image)
    previous = np.zeros((SIDE, SIDE), dtype=bool)
    previous[500:1000, 500:1000] = True
    prompt = base.mask_to_prompt(previous)
    earlier = np.array([[700.0, 700.0], [720.0, 650.0], [800.0, 760.0], [650.0, 700.0]])
    times: dict[tuple[int | None, str], list[float]] = {variant: [] for variant in predictors}
    load_before = os.getloadavg()
    for i in range(args.clicks + 3):
        latest = [500.0 + rng.uniform(-40, 40), 500.0 + rng.uniform(0, 500)]
        points = np.vstack([earlier, latest])
        labels = np.array([1, 0, 1, 0, int(i % 2)])
        for variant, predictor in predictors.items():
            start = time.perf_counter()
            focus.click(predictor, previous, points, labels, prompt, memory=CLICK_MEMORY)
            if i >= 3:
                times[variant].append(time.perf_counter() - start)
    load_after = os.getloadavg()
    variants = list(predictors)
    reference = statistics.median(times[variants[0]])
    lines = [
        "# The product's click by the decoder's context margin and product precision",
        "",
        f"Produced by `python benchmarks/bench_focus_click.py --margins "
        f"{' '.join('none' if m is None else str(m) for m in args.margins)} --precisions {' '.join(args.precisions)} "
        f"--clicks {args.clicks}`.",
        "",
        f"Machine: {cpu_model()}, {os.cpu_count()} logical cores, torch {torch.__version__}, one torch thread. "
        f"Load average before / after: {[round(x, 2) for x in load_before]} / {[round(x, 2) for x in load_after]}. "
        f"{args.note}",
        "",
        "A focus-refined click on a 1500x1500 patch (750x750 focus window), default click model and refiner; "
        f"median of {args.clicks} clicks per variant, the variants round-robin.",
        "",
        "| context margin | precision | median ms | first / this |",
        "| --- | --- | ---: | ---: |",
    ]
    for margin, precision in variants:
        median = statistics.median(times[margin, precision])
        lines.append(f"| {'none (every token)' if margin is None else margin} | {precision} | {median * 1000:.1f} | "
                     f"{reference / median:.2f}x |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.md:
        args.md.write_text(text)


if __name__ == "__main__":
    main()
