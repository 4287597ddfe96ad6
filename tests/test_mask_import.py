"""Starting masks from QuPath GeoJSON and mask files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from skimage.draw import disk

from napari_cosas.io.geojson import geojson_to_mask, mask_to_geojson
from napari_cosas.io.image_io import ImageFormatError, save_mask
from napari_cosas.io.mask_import import load_start_mask


def _blobs() -> np.ndarray:
    mask = np.zeros((90, 120), bool)
    mask[disk((30, 40), 20, shape=mask.shape)] = True
    mask[disk((30, 40), 7, shape=mask.shape)] = False  # a hole
    mask[disk((70, 95), 12, shape=mask.shape)] = True
    mask[5:9, 100:118] = True
    return mask


def test_geojson_from_mask_to_geojson_reads_back_unchanged() -> None:
    mask = _blobs()
    assert np.array_equal(geojson_to_mask(mask_to_geojson(mask), mask.shape), mask)


def test_qupath_shapes_feature_list_and_corner_origin() -> None:
    """A QuPath list of features; x = col, y = row, a square over pixels [2, 5) x [3, 7)."""
    square = {"type": "Polygon", "coordinates": [[[3, 2], [7, 2], [7, 5], [3, 5], [3, 2]]]}
    features = [
        {"type": "Feature", "geometry": square, "properties": {"objectType": "annotation"}},
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 1]}},
    ]
    mask = geojson_to_mask(features, (10, 10))
    expected = np.zeros((10, 10), bool)
    expected[2:5, 3:7] = True
    assert np.array_equal(mask, expected)


def test_no_polygon_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ImageFormatError, match="no Polygon"):
        geojson_to_mask({"type": "FeatureCollection", "features": []}, (4, 4))
    bad = tmp_path / "bad.geojson"
    bad.write_text("{not json")
    with pytest.raises(ImageFormatError, match="bad.geojson"):
        load_start_mask(bad, (4, 4))


def test_load_start_mask_from_files(tmp_path: Path) -> None:
    mask = _blobs()
    geojson = tmp_path / "a.geojson"
    geojson.write_text(json.dumps(mask_to_geojson(mask)))
    png = tmp_path / "a.png"
    save_mask(png, mask.astype(np.uint8) * 255)
    for path in (geojson, png):
        assert np.array_equal(load_start_mask(path, mask.shape), mask)
    with pytest.raises(ImageFormatError, match="image"):
        load_start_mask(png, (50, 50))
