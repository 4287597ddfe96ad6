"""Keeping a click's effect local: FocalClick's progressive merge.

On a patch with many tumour regions, a click should correct the region it was placed in and
leave the rest of the mask alone; otherwise late clicks undo earlier corrections elsewhere.
"""

from __future__ import annotations

import numpy as np
from skimage.segmentation import flood


def progressive_merge(previous: np.ndarray, predicted: np.ndarray, row: int, col: int) -> np.ndarray:
    """Apply only the connected region of change under the click at ``(row, col)``.

    Args:
        previous: ``(H, W)`` bool mask before the click.
        predicted: ``(H, W)`` bool mask the model predicted for all clicks so far.
        row, col: pixel of the latest click.

    Returns:
        ``(H, W)`` bool mask: ``previous`` with the 4-connected component of
        ``previous != predicted`` that contains the click set to ``predicted``. When the click's
        pixel did not change, the model's prediction is returned unchanged (there is no local
        region to merge, and keeping ``previous`` would make the click have no effect).
    """
    previous = np.asarray(previous, dtype=bool)
    predicted = np.asarray(predicted, dtype=bool)
    if previous.shape != predicted.shape:
        raise ValueError(f"masks differ in shape: {previous.shape} and {predicted.shape}")
    changed = previous != predicted
    if not changed[row, col]:
        return predicted
    region = flood(changed, (row, col), connectivity=1)
    merged = previous.copy()
    merged[region] = predicted[region]
    return merged
