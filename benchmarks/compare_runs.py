"""Is one click setting better than another, or within the noise of a few dozen images?

Compares two ``napari-cosas evaluate`` runs per data set, object by object: for each object the
change in NoC@80 + NoC@85 + NoC@90 (B minus A), the mean change per set, and their sum over the
sets, the "sum of the six NoC values" the held-out comparisons in ``benchmarks/`` choose by. The
95 % confidence interval comes from a bootstrap over objects, each set resampled on its own
(``scipy.stats.bootstrap``, BCa), so a set's size weighs as it should.

Both runs of a set must hold the same objects (the same images and masks). A negative change
means B needs fewer clicks. Example, the shipped refiner against a candidate on the held-out
training images (``evaluate --json`` files of each):

    python benchmarks/compare_runs.py --a shipped_glas.json shipped_ebhi.json \
        --b candidate_glas.json candidate_ebhi.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.stats import bootstrap

THRESHOLDS = ("80", "85", "90")


def noc_sums(path: Path) -> dict[tuple[str, str], int]:
    """``(image, object) -> NoC@80 + NoC@85 + NoC@90`` of one ``evaluate --json`` report."""
    report = json.loads(path.read_text())
    if not isinstance(report, dict) or "objects_detail" not in report:
        raise SystemExit(f"{path} is not a `napari-cosas evaluate --json` report (it has no objects_detail)")
    return {(o["image"], o["name"]): sum(o["noc"][t] for t in THRESHOLDS) for o in report["objects_detail"]}


def paired_changes(a: Path, b: Path) -> np.ndarray:
    """``(n_objects,)`` float64 change of each object's NoC sum from run ``a`` to run ``b``."""
    before, after = noc_sums(a), noc_sums(b)
    if before.keys() != after.keys():
        missing = sorted(before.keys() ^ after.keys())[:3]
        raise SystemExit(f"{a} and {b} hold different objects (for example {missing}); compare runs of one data set")
    return np.array([after[k] - before[k] for k in sorted(before)], dtype=np.float64)


def _sum_of_means(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
    return sum(s.mean(axis=axis) for s in samples)


def compare(a: list[Path], b: list[Path], *, resamples: int = 10000, seed: int = 0) -> dict:
    """Per-set mean changes, their sum and its 95 % bootstrap interval (see the module docstring)."""
    if len(a) != len(b):
        raise SystemExit(f"--a has {len(a)} runs and --b {len(b)}: give one of each per data set, in the same order")
    changes = [paired_changes(x, y) for x, y in zip(a, b)]
    interval = bootstrap(changes, _sum_of_means, n_resamples=resamples, method="BCa",
                         rng=np.random.default_rng(seed)).confidence_interval
    return {
        "sets": [{"a": str(x), "b": str(y), "objects": len(c), "mean_change": float(c.mean())}
                 for x, y, c in zip(a, b, changes)],
        "sum_change": float(_sum_of_means(*changes)),
        "ci95": [float(interval.low), float(interval.high)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", nargs="+", type=Path, required=True, help="evaluate --json reports of A, one per set")
    parser.add_argument("--b", nargs="+", type=Path, required=True, help="the same sets' reports of B, same order")
    parser.add_argument("--resamples", type=int, default=10000)
    args = parser.parse_args()
    result = compare(args.a, args.b, resamples=args.resamples)
    for s in result["sets"]:
        print(f"{s['b']} vs {s['a']}: {s['objects']} objects, mean change of the NoC sum {s['mean_change']:+.2f}")
    low, high = result["ci95"]
    print(f"sum of the six NoC values, --b minus --a: {result['sum_change']:+.2f} (95 % CI {low:+.2f} to {high:+.2f})")


if __name__ == "__main__":
    main()
