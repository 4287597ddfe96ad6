"""Summarise ``segmenter_padding.sh`` into benchmarks/segmenter_padding.md: automatic-mask scores
and the default clicks' NoC of both trees, with the paired change of the six-NoC sum.

    python benchmarks/summarize_segmenter_padding.py BEFORE
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
from compare_runs import compare
from machine import cpu_model

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "segmenter_padding"
SETS = {"holdout": {"glas": "GlaS held-out (15)", "ebhi": "EBHI held-out (19)"},
        "test": {"glas": "GlaS testA (60)", "ebhi": "EBHI val (86)"}}
TREES = {"before": "mirrored (before)", "after": "black (this tree)"}


def _load(tree: str, split: str, kind: str, dataset: str) -> dict:
    return json.loads((RESULTS / f"{tree}_{split}_{kind}_{dataset}.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before", help="the git revision the before tree came from")
    parser.add_argument("--md", type=Path, default=HERE / "segmenter_padding.md")
    args = parser.parse_args()
    lines = [
        "# How the segmenter pads a patch smaller than its window",
        "",
        f"Command: `bash benchmarks/segmenter_padding.sh {args.before}`. Machine: {cpu_model()}, "
        f"{os.cpu_count()} cores, torch {torch.__version__}, CPU only, one torch thread per process.",
        "",
        "The segmenter slides a 512-px window. A smaller patch (every 224-px EBHI patch, a few GlaS ones) "
        "is padded to 512 px. Its training crops of such patches are padded with black "
        "(`training.augment.random_crop`); inference padded them mirrored until this change. Both trees "
        f"run the same commands: `segment` + `score` (probability > 0.49), then `evaluate --init auto` "
        f"with the product's default clicks (image targets, 20 clicks, stop at IoU 0.90). `before` is "
        f"git revision {args.before}.",
        "",
        "The held-out images are the held-out part of the training splits (`benchmarks/devdata.sh`), used "
        "for choosing. The default segmenter was trained on all of the training splits, these images "
        "included, so its scores there are optimistic. GlaS testA and EBHI val are reported only.",
        "",
        "| data | padding | Dice | Jaccard | COSAS score | NoC@80 | NoC@85 | NoC@90 | NoF@90 | IoU@1 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for split, sets in SETS.items():
        for dataset, title in sets.items():
            for tree, padding in TREES.items():
                seg, ev = _load(tree, split, "segment", dataset), _load(tree, split, "evaluate", dataset)
                curve = ev["mean_iou_per_click"]
                lines.append(
                    f"| {title} | {padding} | {seg['dice']:.4f} | {seg['jaccard']:.4f} | {seg['cosas_score']:.4f} "
                    f"| {ev['noc80']:.2f} | {ev['noc85']:.2f} | {ev['noc90']:.2f} | {ev['nof90']} "
                    f"| {curve[0]:.3f} |"
                )
    lines += ["", "Change of the sum of the six NoC values (black minus mirrored; paired bootstrap over objects, "
                  "`compare_runs.py`):", ""]
    for split, sets in SETS.items():
        result = compare([RESULTS / f"before_{split}_evaluate_{d}.json" for d in sets],
                         [RESULTS / f"after_{split}_evaluate_{d}.json" for d in sets])
        low, high = result["ci95"]
        per_set = ", ".join(f"{sets[d]} {s['mean_change']:+.2f}" for d, s in zip(sets, result["sets"]))
        lines.append(f"- {split}: {result['sum_change']:+.2f} (95 % CI {low:+.2f} to {high:+.2f}); {per_set}")
    args.md.write_text("\n".join(lines) + "\n")
    print(args.md.read_text())


if __name__ == "__main__":
    main()
