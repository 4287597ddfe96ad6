"""Plots written by the CLI and the benchmarks (matplotlib, Agg backend, no display)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from ..io.files import atomic_write


def plot_iou_curves(curves: Mapping[str, Sequence[float]], path: str | Path) -> Path:
    """Mean IoU against the number of clicks, one line per entry of ``curves``; saved atomically
    (PNG unless ``path`` names another format)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    for label, values in curves.items():
        ax.plot(range(1, len(values) + 1), values, marker="o", markersize=3, label=label)
    for t in (0.80, 0.85, 0.90):
        ax.axhline(t, color="grey", linewidth=0.5, linestyle="--")
    ax.set_xlabel("clicks")
    ax.set_ylabel("mean IoU")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    if not path.suffix:  # matplotlib's rule for a name without a suffix
        path = path.with_name(path.name + ".png")
    atomic_write(path, lambda fh: fig.savefig(fh, format=path.suffix[1:].lower()))
    plt.close(fig)
    return path
