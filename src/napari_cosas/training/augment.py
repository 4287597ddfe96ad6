"""Augmentations suited to H&E patches: dihedral flips/rotations and stain (HED) jitter.

All functions take and return numpy arrays: images ``(H, W, 3)`` uint8, masks ``(H, W)``.
"""

from __future__ import annotations

import numpy as np
from skimage.color import hed2rgb, rgb2hed


def random_dihedral(
    image: np.ndarray, mask: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Apply the same random one of the 8 flips / 90-degree rotations to image and mask."""
    k = int(rng.integers(4))
    image, mask = np.rot90(image, k), np.rot90(mask, k)
    if rng.random() < 0.5:
        image, mask = image[:, ::-1], mask[:, ::-1]
    return np.ascontiguousarray(image), np.ascontiguousarray(mask)


def stain_jitter(image: np.ndarray, rng: np.random.Generator, sigma: float = 0.05, bias: float = 0.02) -> np.ndarray:
    """Perturb each of the haematoxylin, eosin and DAB channels: ``c <- c * a + b``.

    ``a ~ U(1 - sigma, 1 + sigma)``, ``b ~ U(-bias, bias)`` per channel (Tellez et al., 2018).
    """
    hed = rgb2hed(image)
    alpha = rng.uniform(1 - sigma, 1 + sigma, size=3)
    beta = rng.uniform(-bias, bias, size=3)
    rgb = hed2rgb(hed * alpha + beta)
    return np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)


def random_crop(
    image: np.ndarray, mask: np.ndarray, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A ``size`` x ``size`` crop; smaller images are padded (image 0, mask 0).

    Returns the cropped image, mask and a ``(size, size)`` bool array marking real pixels
    (False on padding), so losses can ignore the padding.
    """
    rows, cols = mask.shape
    pad_r, pad_c = max(0, size - rows), max(0, size - cols)
    valid = np.ones((rows, cols), dtype=bool)
    if pad_r or pad_c:
        image = np.pad(image, ((0, pad_r), (0, pad_c), (0, 0)))
        mask = np.pad(mask, ((0, pad_r), (0, pad_c)))
        valid = np.pad(valid, ((0, pad_r), (0, pad_c)))
    r0 = int(rng.integers(image.shape[0] - size + 1))
    c0 = int(rng.integers(image.shape[1] - size + 1))
    sl = (slice(r0, r0 + size), slice(c0, c0 + size))
    return image[sl], mask[sl], valid[sl]
