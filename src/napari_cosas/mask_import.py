"""Masks made elsewhere, as a patch's starting mask: mask files and QuPath GeoJSON.

GeoJSON coordinates are ``[x, y] = [col, row]`` in pixel units with the origin at the top-left
corner of pixel ``(0, 0)`` (QuPath's convention, and that of `session.mask_to_geojson`). A pixel
belongs to a polygon when its centre ``(col + 0.5, row + 0.5)`` lies inside the exterior ring
and outside every hole, so a mask written by `mask_to_geojson` reads back unchanged.
Masks are ``(H, W)`` bool.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from skimage.draw import polygon as fill_polygon

from .image_io import ImageFormatError, load_mask

__all__ = ["GEOJSON_SUFFIXES", "geojson_to_mask", "load_start_mask"]

GEOJSON_SUFFIXES = (".geojson", ".json")


def _geometries(obj: Any) -> Iterator[dict[str, Any]]:
    """Every geometry of a GeoJSON object: a FeatureCollection, a Feature, a geometry, or a list
    of features (QuPath writes either of the last three, depending on the export)."""
    if isinstance(obj, list):
        for item in obj:
            yield from _geometries(item)
        return
    if not isinstance(obj, dict):
        raise ImageFormatError(f"not a GeoJSON object: {type(obj).__name__}")
    kind = obj.get("type")
    if kind == "FeatureCollection":
        yield from _geometries(obj.get("features", []))
    elif kind == "Feature":
        if obj.get("geometry") is not None:
            yield from _geometries(obj["geometry"])
    elif kind == "GeometryCollection":
        yield from _geometries(obj.get("geometries", []))
    else:
        yield obj


def _fill_ring(mask: np.ndarray, ring: list[list[float]], value: bool) -> None:
    xy = np.asarray(ring, dtype=float).reshape(-1, 2)
    rows, cols = fill_polygon(xy[:, 1] - 0.5, xy[:, 0] - 0.5, shape=mask.shape)  # centres, (row, col)
    mask[rows, cols] = value


def geojson_to_mask(geojson: Any, shape: tuple[int, int]) -> np.ndarray:
    """Rasterise the polygons of a GeoJSON object into a ``shape`` ``(H, W)`` bool mask.

    Polygons and MultiPolygons are filled (holes left out); points and lines have no area and
    are skipped. Raises ``ImageFormatError`` when there is no polygon at all.
    """
    mask = np.zeros(shape, dtype=bool)
    polygons = []
    for geometry in _geometries(geojson):
        if geometry.get("type") == "Polygon":
            polygons.append(geometry["coordinates"])
        elif geometry.get("type") == "MultiPolygon":
            polygons.extend(geometry["coordinates"])
    if not polygons:
        raise ImageFormatError("the GeoJSON holds no Polygon or MultiPolygon: nothing to use as a mask")
    for exterior, *holes in polygons:
        region = np.zeros(shape, dtype=bool)
        _fill_ring(region, exterior, True)
        for hole in holes:
            _fill_ring(region, hole, False)
        mask |= region
    return mask


def load_start_mask(path: str | os.PathLike, shape: tuple[int, int]) -> np.ndarray:
    """A starting mask for an image of ``shape`` ``(H, W)`` from a file: a QuPath GeoJSON export
    (``.geojson`` / ``.json``) or a mask image (PNG / TIFF, non-zero = tumour). ``(H, W)`` bool.
    """
    path = Path(path)
    if path.suffix.lower() in GEOJSON_SUFFIXES:
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ImageFormatError(f"{path.name} is not a readable GeoJSON file ({exc})") from exc
        try:
            return geojson_to_mask(data, shape)
        except ImageFormatError as exc:
            raise ImageFormatError(f"{path.name}: {exc}") from exc
    return load_mask(path, shape=shape) > 0
