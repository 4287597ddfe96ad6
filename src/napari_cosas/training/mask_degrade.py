"""Imperfect starting masks for click training, standing in for the automatic segmenter's output.

Users start refining from the segmenter's mask, so the decoder is trained to correct masks with
the errors such a mask has: boundaries too far in or out, missed regions, spurious blobs.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def degrade_mask(gt: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A plausible erroneous version of ``gt``.

    Args:
        gt: ``(H, W)`` bool target.
        rng: random generator.

    Returns:
        ``(H, W)`` float32 probabilities in ``[0, 1]`` (soft, like a segmenter's output).
    """
    mask = gt.astype(bool).copy()
    size = max(mask.shape)
    radius = max(1, int(rng.uniform(0.0, 0.03) * size))
    structure = ndi.generate_binary_structure(2, 1)
    if rng.random() < 0.5:
        mask = ndi.binary_dilation(mask, structure, iterations=radius)
    else:
        mask = ndi.binary_erosion(mask, structure, iterations=radius)
    labels, n = ndi.label(mask)
    if n > 1:
        drop = rng.random(n) < 0.3
        mask &= ~np.isin(labels, np.flatnonzero(drop) + 1)
    for _ in range(int(rng.integers(0, 4))):
        r, c = int(rng.integers(mask.shape[0])), int(rng.integers(mask.shape[1]))
        rad = rng.uniform(0.02, 0.1) * size
        rows, cols = np.ogrid[: mask.shape[0], : mask.shape[1]]
        blob = (rows - r) ** 2 + (cols - c) ** 2 <= rad**2
        mask = mask | blob if rng.random() < 0.5 else mask & ~blob
    prob = ndi.gaussian_filter(mask.astype(np.float32), sigma=max(1.0, 0.005 * size))
    return np.clip(prob, 0.0, 1.0)
