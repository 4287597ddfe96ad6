"""Overlap metrics (IoU, Dice, COSAS score) and interactive metrics (NoC, NoF, per-click IoU).

Masks are ``(H, W)`` arrays read as ``bool``. Two empty masks agree perfectly: IoU, Dice and
the COSAS score are 1.0 for empty-vs-empty (where RITM would divide 0 by 0).

NoC and NoF follow RITM's ``compute_noc_metric``:

- NoC@t of one object is the 1-based index of the first click whose IoU >= t, or
  ``max_clicks`` if it is never reached;
- NoF@t counts the objects whose NoC@t equals ``max_clicks`` (RITM's ``scores_arr ==
  max_clicks``): an object that reaches t exactly at the last click counts as a failure too.

Extension for the ``auto`` protocol (start from the automatic segmenter's mask): when the
initial mask's IoU already meets t, NoC@t is 0 (no click was needed).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

__all__ = [
    "IoUTrace",
    "cosas_score",
    "dice",
    "iou",
    "jaccard",
    "mean_iou_curve",
    "noc",
    "nof",
    "summarize",
]


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {a.shape} vs {b.shape}")
    return a, b


def iou(a: np.ndarray, b: np.ndarray, ignore: np.ndarray | None = None) -> float:
    """Intersection over union of two ``(H, W)`` masks; pixels where ``ignore`` is True are left out.

    Returns 1.0 when both masks are empty (outside ``ignore``).
    """
    a, b = _pair(a, b)
    if ignore is not None:
        keep = ~np.asarray(ignore, dtype=bool)
        if keep.shape != a.shape:
            raise ValueError(f"ignore has shape {keep.shape}, expected {a.shape}")
        a, b = a & keep, b & keep
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


jaccard = iou


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice coefficient ``2 |a & b| / (|a| + |b|)`` of two ``(H, W)`` masks; 1.0 when both are empty."""
    a, b = _pair(a, b)
    total = np.count_nonzero(a) + np.count_nonzero(b)
    return 1.0 if total == 0 else 2.0 * np.count_nonzero(a & b) / total


def cosas_score(pred: np.ndarray, gt: np.ndarray) -> float:
    """COSAS 2024 score of one mask: ``0.5 * Dice + 0.5 * Jaccard`` (1.0 when both are empty)."""
    return 0.5 * dice(pred, gt) + 0.5 * jaccard(pred, gt)


def noc(
    ious: Sequence[float], threshold: float, max_clicks: int = 20, initial_iou: float | None = None
) -> int:
    """Number of clicks to reach ``threshold`` for one object.

    Args:
        ious: IoU after click 1, 2, ... (at most ``max_clicks`` values; may stop early).
        threshold: target IoU, e.g. 0.85.
        max_clicks: click budget; returned when the target is never reached.
        initial_iou: IoU of the starting mask (``auto`` protocol); 0 is returned if it meets the target.
    """
    if len(ious) > max_clicks:
        raise ValueError(f"got {len(ious)} IoU values for a budget of max_clicks={max_clicks}")
    if initial_iou is not None and initial_iou >= threshold:
        return 0
    for k, value in enumerate(ious, start=1):
        if value >= threshold:
            return k
    return max_clicks


def nof(nocs: Sequence[int], max_clicks: int = 20) -> int:
    """Number of failures: objects whose NoC is ``max_clicks`` (RITM's ``NoC == max_clicks``)."""
    return sum(1 for n in nocs if n >= max_clicks)


def mean_iou_curve(per_object_ious: Sequence[Sequence[float]], max_clicks: int = 20) -> list[float]:
    """Mean IoU after each click 1..``max_clicks`` over objects.

    Each object's sequence (non-empty, at most ``max_clicks`` long) is padded with its last
    value, so an object stopped early keeps its final IoU for the remaining clicks.
    """
    if not per_object_ious:
        raise ValueError("no objects to average")
    rows = []
    for values in per_object_ious:
        if not 0 < len(values) <= max_clicks:
            raise ValueError(f"each IoU sequence needs 1..{max_clicks} values, got {len(values)}")
        rows.append(list(values) + [values[-1]] * (max_clicks - len(values)))
    return np.mean(np.asarray(rows, dtype=np.float64), axis=0).tolist()


class IoUTrace(Protocol):
    """What :func:`summarize` reads from one object's result (e.g. ``evaluation.ObjectResult``)."""

    ious: Sequence[float]
    initial_iou: float | None


def _threshold_key(threshold: float) -> str:
    return f"{round(threshold * 100):d}"


def summarize(
    results: Sequence[IoUTrace],
    thresholds: Sequence[float] = (0.80, 0.85, 0.90),
    max_clicks: int = 20,
) -> dict[str, float | int | list[float]]:
    """Aggregate interactive results over objects.

    Returns a dict with, for each threshold t (keys use ``round(100 t)``): ``noc<t>`` (mean NoC,
    float) and ``nof<t>`` (int); plus ``mean_iou_per_click`` (list of ``max_clicks`` floats) and
    ``n_objects``. An object that needed no click (``auto`` start already good enough, empty
    ``ious``) contributes its ``initial_iou`` to every point of the curve.
    """
    if not results:
        raise ValueError("no results to summarize")
    summary: dict[str, float | int | list[float]] = {"n_objects": len(results)}
    for t in thresholds:
        nocs = [noc(r.ious, t, max_clicks, r.initial_iou) for r in results]
        summary[f"noc{_threshold_key(t)}"] = float(np.mean(nocs))
        summary[f"nof{_threshold_key(t)}"] = nof(nocs, max_clicks)
    curves = []
    for r in results:
        if len(r.ious) == 0:
            if r.initial_iou is None:
                raise ValueError("a result has neither IoU values nor an initial IoU")
            curves.append([r.initial_iou])
        else:
            curves.append(r.ious)
    summary["mean_iou_per_click"] = mean_iou_curve(curves, max_clicks)
    return summary
