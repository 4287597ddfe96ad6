"""Masks made elsewhere, as a patch's starting mask: a QuPath GeoJSON export
(:mod:`napari_cosas.io.geojson`) or a mask file. Masks are ``(H, W)`` bool.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .geojson import GEOJSON_SUFFIXES, read_geojson_mask
from .image_io import load_mask

__all__ = ["load_start_mask"]


def load_start_mask(path: str | os.PathLike, shape: tuple[int, int]) -> np.ndarray:
    """A starting mask for an image of ``shape`` ``(H, W)`` from a file: a QuPath GeoJSON export
    (``.geojson`` / ``.json``) or a mask image (PNG / TIFF, non-zero = tumour). ``(H, W)`` bool.
    """
    path = Path(path)
    if path.suffix.lower() in GEOJSON_SUFFIXES:
        return read_geojson_mask(path, shape)
    return load_mask(path, shape=shape) > 0
