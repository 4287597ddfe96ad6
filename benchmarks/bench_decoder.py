"""Benchmark: plain vs enhanced SAM mask decoder on CPU (SAM ViT-B decoder geometry).

Random weights, one 256x64x64 image embedding, one positive point plus a mask prompt per call.
Reports parameter counts and the median wall time per decoder call (prompt encoder excluded)
for: the plain decoder, the enhanced decoder's full forward, and the enhanced decoder from a
cached image context (global attention computed once per image, as in interactive use).

    python benchmarks/bench_decoder.py --json benchmarks/decoder.json --md benchmarks/decoder.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from segment_anything.modeling import MaskDecoder, PromptEncoder, TwoWayTransformer

from napari_cosas.models.enhanced_decoder import EnhancedMaskDecoder
from machine import cpu_model


def _median_ms(fn: Callable[[], object], warmup: int, calls: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def run(calls: int, warmup: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    plain = MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
        transformer_dim=256,
    ).eval()
    enhanced = EnhancedMaskDecoder.from_sam(plain).eval()
    prompt = PromptEncoder(
        embed_dim=256, image_embedding_size=(64, 64), input_image_size=(1024, 1024),
        mask_in_chans=16,
    ).eval()
    emb = torch.randn(1, 256, 64, 64)
    pe = prompt.get_dense_pe()
    with torch.no_grad():
        sparse, dense = prompt(
            points=(torch.tensor([[[512.0, 400.0]]]), torch.tensor([[1]])),  # (x, y)
            boxes=None,
            masks=torch.randn(1, 1, 256, 256),
        )
        context = enhanced.image_context(emb, pe)
        cases = {
            "plain": lambda: plain(emb, pe, sparse, dense, False),
            "enhanced_full": lambda: enhanced(emb, pe, sparse, dense, False),
            "enhanced_cached_context": lambda: enhanced.forward_with_context(
                context, pe, sparse, dense, False
            ),
            "enhanced_image_context_once": lambda: enhanced.image_context(emb, pe),
        }
        ms = {name: _median_ms(fn, warmup, calls) for name, fn in cases.items()}
    n_plain = sum(p.numel() for p in plain.parameters())
    return {
        "params": {
            "plain": n_plain,
            "enhanced": sum(p.numel() for p in enhanced.parameters()),
            "added": enhanced.num_added_parameters,
        },
        "median_ms_per_call": ms,
        "settings": {"calls": calls, "warmup": warmup, "threads": threads,
                     "embedding": [1, 256, 64, 64], "prompt": "1 positive point + mask",
                     "multimask_output": False, "weights": "random"},
        "machine": {"cpu": cpu_model(), "logical_cores": os.cpu_count(),
                    "torch": torch.__version__, "python": platform.python_version(),
                    "platform": platform.platform()},
    }


def to_markdown(r: dict) -> str:
    p, ms, m, s = r["params"], r["median_ms_per_call"], r["machine"], r["settings"]
    rows = "\n".join(f"| {k} | {v:.1f} |" for k, v in ms.items())
    return f"""# Mask decoder benchmark (CPU)

Machine: {m['cpu']}, {m['logical_cores']} logical cores, torch {m['torch']},
Python {m['python']}, `torch.set_num_threads({s['threads']})`.
Decoder only (prompt encoder excluded), {s['prompt']}, embedding 256x64x64, random weights,
median of {s['calls']} calls after {s['warmup']} warm-up calls.

| decoder | parameters |
| --- | ---: |
| plain (SAM ViT-B decoder) | {p['plain']:,} |
| enhanced | {p['enhanced']:,} |
| added (global attention + 2 gated two-way layers) | {p['added']:,} |

| case | median ms / call |
| --- | ---: |
{rows}

`enhanced_image_context_once` is the global-attention pass, paid once per image when the
context is cached; `enhanced_cached_context` is the per-click cost in that mode.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/decoder.json"))
    parser.add_argument("--md", type=Path, default=Path("benchmarks/decoder.md"))
    args = parser.parse_args()
    result = run(args.calls, args.warmup, args.threads)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    args.md.write_text(to_markdown(result))
    print(to_markdown(result))


if __name__ == "__main__":
    main()
