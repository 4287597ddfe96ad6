"""QuPath-compatible GeoJSON outlines of masks, written (`mask_to_geojson`) and read back
(`geojson_to_mask`, `read_geojson_mask`).

Coordinates are ``[x, y] = [col, row]`` in pixel units with the origin at the top-left corner of
pixel ``(0, 0)`` (QuPath's convention). Writing traces the outline of each 8-connected region
between pixel centres; reading fills a pixel when its centre ``(col + 0.5, row + 0.5)`` lies
inside the exterior ring and outside every hole, so a mask written by `mask_to_geojson` reads
back unchanged. Masks are ``(H, W)`` bool.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from scipy.ndimage import binary_fill_holes
from skimage.draw import polygon as fill_polygon
from skimage.measure import find_contours, label, regionprops

from .image_io import ImageFormatError

__all__ = ["GEOJSON_SUFFIXES", "geojson_to_mask", "mask_to_geojson", "read_geojson_mask", "ring_signed_area"]

GEOJSON_SUFFIXES = (".geojson", ".json")

# ----------------------------------------------------------------------------- writing


def ring_signed_area(ring: np.ndarray) -> float:
    """Shoelace area of a closed ring ``(K, 2)`` of ``(x, y)``; positive when counter-clockwise
    in a y-up frame (the GeoJSON / RFC 7946 exterior orientation)."""
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * float(np.sum(x[:-1] * y[1:] - x[1:] * y[:-1]))


def _rings(mask: np.ndarray, offset: tuple[int, int], connectivity: str, exterior: bool) -> list[list[list[float]]]:
    """Closed rings around the ``True`` pixels of ``mask`` as ``[[x, y], ...]`` lists.

    ``find_contours`` returns ``(row, col)`` points at the 0.5 level between pixel centres;
    with a 1-pixel pad removed and the half-pixel shift to corner-origin pixel units,
    ``x = col + offset_col + 0.5`` and ``y = row + offset_row + 0.5``.
    """
    padded = np.pad(mask, 1).astype(np.float32)
    rings = []
    for contour in find_contours(padded, 0.5, fully_connected=connectivity):
        xy = contour[:, ::-1] + np.array([offset[1] - 0.5, offset[0] - 0.5])
        if len(xy) < 4:
            continue
        if (ring_signed_area(xy) > 0) != exterior:
            xy = xy[::-1]
        rings.append(xy.tolist())
    return rings


def mask_to_geojson(mask: np.ndarray, name: str = "Tumor") -> dict[str, Any]:
    """QuPath-compatible GeoJSON of a mask's outline.

    Args:
        mask: ``(H, W)`` bool (or 0 / non-zero) mask.

    Returns:
        A ``FeatureCollection`` with one ``annotation`` feature classified ``name`` (none for an
        empty mask): a ``Polygon`` for one 8-connected region, a ``MultiPolygon`` otherwise;
        holes (4-connected background enclosed by a region) are interior rings. Coordinates are
        ``[x, y] = [col, row]`` in pixel units, origin at the top-left corner of pixel
        ``(0, 0)``; exterior rings have positive shoelace area on these numbers, holes negative.
    """
    mask = np.asarray(mask) > 0
    polygons = []
    for region in regionprops(label(mask, connectivity=2)):
        r0, c0 = region.bbox[:2]
        body = region.image
        filled = binary_fill_holes(body)
        exterior = _rings(filled, (r0, c0), "high", exterior=True)
        if exterior:  # one ring: a filled 8-connected region has a single outer contour
            polygons.append([exterior[0], *_rings(filled & ~body, (r0, c0), "low", exterior=False)])
    features = []
    if polygons:
        geometry = (
            {"type": "Polygon", "coordinates": polygons[0]}
            if len(polygons) == 1
            else {"type": "MultiPolygon", "coordinates": polygons}
        )
        features.append(
            {
                "type": "Feature",
                "geometry": geometry,
                "properties": {
                    "objectType": "annotation",
                    "classification": {"name": name, "color": [200, 0, 0]},
                },
            }
        )
    return {"type": "FeatureCollection", "features": features}


# ----------------------------------------------------------------------------- reading


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


def read_geojson_mask(path: str | os.PathLike, shape: tuple[int, int]) -> np.ndarray:
    """The ``(H, W)`` bool mask of a GeoJSON file (a QuPath export) for an image of ``shape``;
    ``ImageFormatError`` naming the file when it is unreadable or holds no polygon."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ImageFormatError(f"{path.name} is not a readable GeoJSON file ({exc})") from exc
    try:
        return geojson_to_mask(data, shape)
    except ImageFormatError as exc:
        raise ImageFormatError(f"{path.name}: {exc}") from exc
