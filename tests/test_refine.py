"""Progressive merge: only the changed region under the click is applied."""

import numpy as np
import pytest

from napari_cosas.refine import progressive_merge


def test_only_the_component_under_the_click_changes():
    previous = np.zeros((10, 20), bool)
    previous[1:4, 1:4] = True
    predicted = np.zeros_like(previous)
    predicted[5:8, 5:8] = True  # new region under the click
    predicted[5:8, 15:18] = True  # unrelated change elsewhere
    merged = progressive_merge(previous, predicted, 6, 6)
    expected = previous.copy()
    expected[5:8, 5:8] = True
    np.testing.assert_array_equal(merged, expected)


def test_negative_click_removes_only_its_region():
    previous = np.zeros((10, 20), bool)
    previous[1:4, 1:4] = True
    previous[5:8, 10:14] = True
    predicted = np.zeros_like(previous)
    merged = progressive_merge(previous, predicted, 6, 11)
    expected = previous.copy()
    expected[5:8, 10:14] = False
    np.testing.assert_array_equal(merged, expected)


def test_unchanged_click_pixel_returns_the_prediction():
    previous = np.zeros((5, 5), bool)
    predicted = np.zeros((5, 5), bool)
    predicted[0, 0] = True
    np.testing.assert_array_equal(progressive_merge(previous, predicted, 4, 4), predicted)


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="shape"):
        progressive_merge(np.zeros((3, 3), bool), np.zeros((3, 4), bool), 0, 0)
