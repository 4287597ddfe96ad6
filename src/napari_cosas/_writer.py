"""Writer: a labels layer as a 0 / 255 uint8 mask (PNG, or TIFF for ``.tif`` / ``.tiff``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .io.image_io import TIFF_SUFFIXES, save_mask


def write_labels(path: str, data: np.ndarray, meta: dict[str, Any]) -> list[str]:
    """Write ``data`` (``(H, W)`` labels; foreground = non-zero) atomically; returns the path.

    A path without a ``.png`` / ``.tif`` / ``.tiff`` suffix gets ``.png``.
    """
    target = Path(path)
    if target.suffix.lower() not in (".png", *TIFF_SUFFIXES):
        target = target.with_name(target.name + ".png")
    return [str(save_mask(target, np.asarray(data)))]
