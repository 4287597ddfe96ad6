"""Click simulation (RITM-exact) and the click history shared by the simulator and the GUI.

All coordinates are ``(row, col)`` pixel indices; masks are 2-D arrays of shape ``(H, W)``.

The next-click rule is the one of RITM's ``Clicker._get_next_click`` (Sofiiuk et al., 2022):

1. false negatives ``FN = gt & ~pred`` and false positives ``FP = ~gt & pred``, with the
   pixels in ``ignore`` removed from both;
2. both maps are padded with a 1-pixel border of ``False`` so that pixels on the image border
   are at distance 1 from the background, exact Euclidean distance transform, padding cropped;
3. distances are multiplied by ``not_clicked`` (pixels already clicked get distance 0);
4. the click is positive if ``max(dist_FN) > max(dist_FP)`` and negative otherwise (ties go
   negative), placed at the first pixel in row-major order holding that maximum.

Degenerate case: when no pixel has a positive distance (no error left, or every error pixel
already clicked), both maxima are 0, the tie goes negative and the first pixel holding 0 is
``(0, 0)``. RITM places a negative click at ``(0, 0)`` there, and so does :func:`next_click`;
it does not raise. The evaluation loop never reaches it except for an object whose start
already matches the ground truth, which it does not click (see ``evaluation.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import distance_transform_edt

__all__ = ["Click", "Clicker", "click_labels", "next_click", "points_rc"]


@dataclass(frozen=True)
class Click:
    """One click at pixel ``(row, col)``; ``is_positive`` marks foreground (True) or background."""

    row: int
    col: int
    is_positive: bool


def _as_mask(name: str, array: np.ndarray, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Return ``array`` as a 2-D ``bool`` array, checking dimension, shape and values.

    Boolean arrays are taken as they are; integer or float arrays must hold only 0 and 1.
    """
    a = np.asarray(array)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (H, W) mask, got shape {a.shape}")
    if shape is not None and a.shape != shape:
        raise ValueError(f"{name} has shape {a.shape}, expected {shape} (the shape of gt)")
    if a.dtype == bool:
        return a
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise ValueError(f"{name} must be a boolean mask, got dtype {a.dtype}")
    if not np.isin(a, (0, 1)).all():
        raise ValueError(f"{name} must be a boolean mask: a non-bool {a.dtype} array may only hold 0 and 1")
    return a.astype(bool)


def _padded_edt(mask: np.ndarray) -> np.ndarray:
    """Exact L2 distance of each ``True`` pixel to the nearest ``False`` one, with a 1-px ``False`` border.

    Computed on the bounding box of the ``True`` pixels only (plus the 1-px border), which is
    exact: a ``False`` pixel outside that padded box is never closer than its projection onto
    the box's border ring, which is all ``False``.
    """
    dist = np.zeros(mask.shape, dtype=np.float64)
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return dist
    cols = np.flatnonzero(mask.any(axis=0))
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    padded = np.pad(mask[box], 1, mode="constant", constant_values=False)
    dist[box] = distance_transform_edt(padded)[1:-1, 1:-1]
    return dist


def next_click(
    gt: np.ndarray,
    pred: np.ndarray,
    not_clicked: np.ndarray | None = None,
    ignore: np.ndarray | None = None,
) -> Click:
    """The next simulated click, by RITM's rule (see the module docstring).

    Args:
        gt: ``(H, W)`` ground-truth mask (bool, or 0/1 integers or floats).
        pred: ``(H, W)`` current predicted mask, same type rules.
        not_clicked: ``(H, W)`` mask, ``False`` at pixels already clicked; ``None``: no click yet.
        ignore: ``(H, W)`` mask, ``True`` at pixels that count as neither FN nor FP.

    Returns:
        The :class:`Click`; a negative click at ``(0, 0)`` when no error is left (RITM's behaviour).

    Raises:
        ValueError: an array is not 2-D, not boolean-compatible, or its shape differs from ``gt``'s.
    """
    gt_m = _as_mask("gt", gt)
    pred_m = _as_mask("pred", pred, gt_m.shape)
    fn = gt_m & ~pred_m
    fp = ~gt_m & pred_m
    if ignore is not None:
        keep = ~_as_mask("ignore", ignore, gt_m.shape)
        fn &= keep
        fp &= keep
    fn_dt = _padded_edt(fn)
    fp_dt = _padded_edt(fp)
    if not_clicked is not None:
        nc = _as_mask("not_clicked", not_clicked, gt_m.shape)
        fn_dt *= nc
        fp_dt *= nc
    is_positive = bool(fn_dt.max() > fp_dt.max())
    dt = fn_dt if is_positive else fp_dt
    row, col = np.unravel_index(int(np.argmax(dt)), dt.shape)
    return Click(int(row), int(col), is_positive)


def points_rc(clicks: Sequence[Click]) -> np.ndarray:
    """Click positions, ``(N, 2)`` ``float64`` in ``(row, col)`` order (``(0, 2)`` when empty)."""
    return np.array([(c.row, c.col) for c in clicks], dtype=np.float64).reshape(-1, 2)


def click_labels(clicks: Sequence[Click]) -> np.ndarray:
    """Click labels, ``(N,)`` ``int64``: 1 positive, 0 negative."""
    return np.array([int(c.is_positive) for c in clicks], dtype=np.int64)


class Clicker:
    """Ordered click history of one object: the simulator's clicker and the GUI's undo stack."""

    def __init__(self) -> None:
        self._clicks: list[Click] = []

    @property
    def clicks(self) -> tuple[Click, ...]:
        """The clicks so far, oldest first."""
        return tuple(self._clicks)

    def __len__(self) -> int:
        return len(self._clicks)

    def add(self, click: Click) -> None:
        """Append ``click`` to the history."""
        self._clicks.append(click)

    def undo(self) -> Click | None:
        """Remove and return the last click; ``None`` when the history is empty."""
        return self._clicks.pop() if self._clicks else None

    def reset(self) -> None:
        """Forget every click (start a new object)."""
        self._clicks.clear()

    def points_rc(self) -> np.ndarray:
        """Click positions, ``(N, 2)`` ``float64`` in ``(row, col)`` order (``(0, 2)`` when empty)."""
        return points_rc(self._clicks)

    def labels(self) -> np.ndarray:
        """Click labels, ``(N,)`` ``int64``: 1 positive, 0 negative."""
        return click_labels(self._clicks)

    def not_clicked_mask(self, shape: tuple[int, int]) -> np.ndarray:
        """``(H, W)`` ``bool`` mask, ``False`` exactly at the clicked pixels.

        Raises:
            ValueError: a click lies outside ``shape``.
        """
        mask = np.ones(shape, dtype=bool)
        for c in self._clicks:
            if not (0 <= c.row < shape[0] and 0 <= c.col < shape[1]):
                raise ValueError(f"click (row, col) = ({c.row}, {c.col}) lies outside an image of {shape}")
            mask[c.row, c.col] = False
        return mask

    def make_next_click(self, gt: np.ndarray, pred: np.ndarray, ignore: np.ndarray | None = None) -> Click:
        """Compute the next click with :func:`next_click` (skipping clicked pixels), append and return it."""
        shape = np.shape(gt)
        if len(shape) != 2:
            raise ValueError(f"gt must be a 2-D (H, W) mask, got shape {shape}")
        click = next_click(gt, pred, self.not_clicked_mask(shape), ignore)
        self.add(click)
        return click
