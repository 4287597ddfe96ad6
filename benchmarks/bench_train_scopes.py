"""Trainable parameters and seconds per training step of the three fine-tuning scenarios.

The design's source reports that training only the (enhanced) mask decoder is about 8x cheaper
than training the whole SAM. This measures it here: SAM ViT-B geometry with random weights,
the enhanced decoder, the same simulated-click step (``napari_cosas.training.click_training``)
for ``--train decoder``, ``encoder+decoder`` and ``all``.

    python benchmarks/bench_train_scopes.py --images DIR --masks DIR --device cuda \
        --json benchmarks/train_scopes.json --md benchmarks/train_scopes.md
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch
from machine import cpu_model

from napari_cosas.models.sam_models import build_click_model
from napari_cosas.training.click_training import ClickTrainConfig, train_click_model
from napari_cosas.training.segmenter_training import load_pairs

SCOPES = ("decoder", "encoder+decoder", "all")


def machine() -> str:
    """GPU name, or CPU model and threads, with the torch version."""
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()}, torch {torch.__version__}"
    return f"{cpu_model()}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", required=True)
    parser.add_argument("--masks", required=True)
    parser.add_argument("--n-images", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", required=True)
    parser.add_argument("--md", required=True)
    args = parser.parse_args()
    pairs = load_pairs(args.images, args.masks)[: args.n_images]
    rows = {}
    for scope in SCOPES:
        model = build_click_model({"arch": "sam_vit", "variant": "vit_b", "decoder": "enhanced"})
        config = ClickTrainConfig(
            model={"arch": "sam_vit", "variant": "vit_b", "decoder": "enhanced"},
            train=scope,
            steps=args.steps,
            batch_size=args.batch_size,
            views_per_image=1,
            max_rounds=2,
            checkpoint_every=10**9,
        )
        with tempfile.TemporaryDirectory() as out:
            summary = train_click_model(model, pairs, config, out, device=args.device)
        rows[scope] = {k: summary[k] for k in ("trainable_parameters", "total_parameters", "median_step_s")}
        del model
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    base = rows["decoder"]["median_step_s"]
    for r in rows.values():
        r["step_time_vs_decoder"] = r["median_step_s"] / base
    report = {"machine": machine(), "batch_size": args.batch_size, "steps": args.steps, "scopes": rows}
    Path(args.json).write_text(json.dumps(report, indent=2))
    lines = [
        "# Training cost of the fine-tuning scenarios",
        "",
        f"Machine: {report['machine']}. SAM ViT-B geometry (random weights), enhanced decoder, batch "
        f"{args.batch_size}, median of {args.steps} steps (the first includes warm-up). Decoder-only steps read "
        "cached image embeddings; the other scopes run the image encoder in every step.",
        "",
        f"Command: `python {' '.join(sys.argv)}`",
        "",
        "| scope | trainable params | total params | median s / step | x decoder-only |",
        "|---|---:|---:|---:|---:|",
    ]
    for scope, r in rows.items():
        lines.append(
            f"| {scope} | {r['trainable_parameters']:,} | {r['total_parameters']:,} | "
            f"{r['median_step_s']:.4f} | {r['step_time_vs_decoder']:.1f} |"
        )
    Path(args.md).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
