"""Parameter counts and CPU forward time of the Rein segmenter for each backbone family.

All models are randomly initialised (no downloads); only shapes and cost matter here. For each
variant: total parameters, trainable parameters (Rein + ViT neck + head, backbone frozen) and
the median (and minimum) wall time of ``segmenter(x)`` for ``x`` of shape ``(1, 3, 512, 512)`` under
``torch.inference_mode`` with ``torch.set_num_threads(threads)``, after one warm-up run.

Usage::

    python benchmarks/bench_backbones.py \
        --json benchmarks/backbones.json --md benchmarks/backbones.md
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from napari_cosas.models.segmenter import SegmenterConfig, build_segmenter
from machine import cpu_model

logger = logging.getLogger("bench_backbones")

# (backbone name, timed repeats): fewer repeats for the big models to keep the run short.
VARIANTS: list[tuple[str, int]] = [
    ("convnext_atto", 5),
    ("convnext_tiny", 3),
    ("vit_small_patch14_dinov2", 3),
    ("vit_base_patch14_dinov2", 3),
    ("sam_vit_b", 3),
]


def _count(params) -> int:
    return sum(p.numel() for p in params)


def machine() -> dict[str, object]:
    """CPU model, core count, torch version, threads used."""
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "python": platform.python_version()}


def bench(name: str, repeats: int, size: int = 512) -> dict[str, object]:
    """Build the default segmenter on ``name`` and time its forward pass on CPU."""
    torch.manual_seed(0)
    model = build_segmenter(SegmenterConfig(backbone=name)).eval()
    bb = model.backbone
    neck = getattr(bb, "neck", None)
    x = torch.randn(1, 3, size, size)
    load_before = os.getloadavg()[0]
    times = []
    with torch.inference_mode():
        model(x)  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    return {
        "backbone": name,
        "params_total": _count(model.parameters()),
        "params_trainable": _count(p for p in model.parameters() if p.requires_grad),
        "params_rein": _count(bb.rein.parameters()),
        "params_neck": _count(neck.parameters()) if neck is not None else 0,
        "params_head": _count(model.head.parameters()),
        "input": [1, 3, size, size],
        "repeats": repeats,
        "forward_s_median": statistics.median(times),
        "forward_s_min": min(times),
        "forward_s_all": times,
        "loadavg_1min_before": load_before,
        "loadavg_1min_after": os.getloadavg()[0],
    }


def to_markdown(results: list[dict[str, object]], info: dict[str, object]) -> str:
    lines = [
        "# Rein segmenter: parameters and CPU forward time",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']}, "
        f"{info['threads']} threads, Python {info['python']}. Random init, default "
        "`SegmenterConfig` (100 tokens, rank 16, head dim 128, 3 decoder layers, ViT neck 256), "
        "frozen backbone, input 1x3x512x512, `torch.inference_mode`, fp32; median of the "
        "timed repeats after one warm-up (the minimum is less sensitive to other load). The 1-minute load average is shown because the "
        "machine may be shared: a load above the core count inflates the times.",
        "",
        "| backbone | total params | trainable (Rein + neck + head) | Rein | neck | head "
        "| forward s (median) | forward s (min) | repeats | load avg before / after |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in results:
        lines.append(
            f"| {r['backbone']} | {r['params_total'] / 1e6:.2f} M | "
            f"{r['params_trainable'] / 1e6:.2f} M | {r['params_rein'] / 1e6:.2f} M | "
            f"{r['params_neck'] / 1e6:.2f} M | {r['params_head'] / 1e6:.2f} M | "
            f"{r['forward_s_median']:.2f} | {r['forward_s_min']:.2f} | {r['repeats']} | "
            f"{r['loadavg_1min_before']:.1f} / {r['loadavg_1min_after']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the results as JSON here")
    parser.add_argument("--md", type=Path, help="write a markdown table here")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", nargs="*", help="subset of backbone names")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    variants = [(n, r) for n, r in VARIANTS if not args.variants or n in args.variants]
    results = []
    for name, repeats in variants:
        results.append(bench(name, repeats))
        logger.info("%s: %.2f s median, %d trainable params", name,
                    results[-1]["forward_s_median"], results[-1]["params_trainable"])
    info = machine()
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "results": results}, indent=2) + "\n")
    if args.md:
        args.md.write_text(to_markdown(results, info))


if __name__ == "__main__":
    main()
