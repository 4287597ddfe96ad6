"""The table of ``benchmarks/global_effect.md`` from the result files of ``global_effect.sh``.

Usage: ``python benchmarks/summarize_global_effect.py BEFORE`` (the git revision compared)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "global_effect"
SETS = {
    "holdout": [("glas", "GlaS held-out (15, choosing)"), ("ebhi", "EBHI held-out (19, choosing)")],
    "test": [("glas", "GlaS testA (60, report)"), ("ebhi", "EBHI val (86, report)")],
}


def largest_fall(curve: list[float]) -> float:
    """The largest drop of the mean IoU from one click to the next (0 when it never falls)."""
    return max([0.0] + [a - b for a, b in zip(curve, curve[1:])])


def row(tree: str, split: str, key: str, label: str) -> str:
    report = json.loads((RESULTS / f"{tree}_{split}_{key}.json").read_text())
    curve = report["mean_iou_per_click"]
    return (f"| {label} | {tree} | {report['noc80']:.2f} / {report['noc85']:.2f} / {report['noc90']:.2f} | "
            f"{report['nof90']} | {curve[0]:.3f} | {curve[4]:.3f} | {curve[-1]:.3f} | {largest_fall(curve):.4f} |")


def main(before: str) -> None:
    lines = [f"| data | tree (before = {before}) | NoC@80 / 85 / 90 | NoF@90 | IoU@1 | IoU@5 | IoU@20 | largest fall |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for split, sets in SETS.items():
        for key, label in sets:
            lines += [row(tree, split, key, label) for tree in ("before", "after")]
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "bc8b2ec")
