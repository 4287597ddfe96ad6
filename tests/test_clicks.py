"""Tests of the RITM-exact click simulator and the click history."""

import itertools

import numpy as np
import pytest
from scipy.ndimage import distance_transform_edt

from napari_cosas.interaction.clicks import Click, Clicker, next_click


def _box(shape, r0, r1, c0, c1):
    """Bool mask, True on rows r0..r1-1 and cols c0..c1-1."""
    m = np.zeros(shape, dtype=bool)
    m[r0:r1, c0:c1] = True
    return m


def _reference_click(gt, pred, not_clicked, ignore):
    """Brute-force RITM rule: padded exact L2 distance by exhaustive search."""
    fn, fp = gt & ~pred & ~ignore, ~gt & pred & ~ignore

    def dist(mask):
        padded = np.pad(mask, 1)
        zeros = np.argwhere(~padded)
        out = np.zeros(mask.shape)
        for r, c in itertools.product(range(mask.shape[0]), range(mask.shape[1])):
            if mask[r, c]:
                out[r, c] = np.sqrt(((zeros - (r + 1, c + 1)) ** 2).sum(1)).min()
        return out * not_clicked

    fn_dt, fp_dt = dist(fn), dist(fp)
    positive = fn_dt.max() > fp_dt.max()
    dt = fn_dt if positive else fp_dt
    ys, xs = np.where(dt == dt.max())
    return Click(int(ys[0]), int(xs[0]), bool(positive))


def test_single_fn_blob_positive_at_centre():
    gt = _box((10, 10), 2, 7, 3, 8)
    assert next_click(gt, np.zeros_like(gt)) == Click(4, 5, True)


def test_equal_maxima_first_in_row_major_order():
    gt = _box((10, 10), 2, 6, 2, 6)  # 4x4: four centre pixels at distance 2
    assert next_click(gt, np.zeros_like(gt)) == Click(3, 3, True)


def test_tie_between_fn_and_fp_goes_negative():
    gt = _box((12, 12), 1, 4, 1, 4)  # FN 3x3, max distance 2
    pred = _box((12, 12), 7, 10, 7, 10)  # FP 3x3, max distance 2
    assert next_click(gt, pred) == Click(8, 8, False)


def test_border_padding_changes_the_answer():
    shape = (9, 12)
    gt = _box(shape, 0, 9, 0, 4)  # FN touching the top, bottom and left borders
    pred = _box(shape, 3, 6, 7, 10)  # FP 3x3 square, max distance 2
    # Without the zero border the FN strip would reach distance 4 and win.
    assert distance_transform_edt(gt).max() == 4
    # With it, border pixels are at distance 1, the FN maximum is 2: a tie, hence negative.
    assert next_click(gt, pred) == Click(4, 8, False)
    assert next_click(gt, np.zeros(shape, bool)) == Click(1, 1, True)


def test_whole_image_object_border_pixels_at_distance_one():
    gt = np.ones((5, 5), dtype=bool)
    assert next_click(gt, np.zeros_like(gt)) == Click(2, 2, True)


def test_already_clicked_pixels_are_skipped():
    gt = _box((9, 9), 2, 7, 2, 7)
    pred = np.zeros_like(gt)
    not_clicked = np.ones_like(gt)
    not_clicked[4, 4] = False
    assert next_click(gt, pred, not_clicked) == Click(3, 3, True)
    clicker = Clicker()
    assert clicker.make_next_click(gt, pred) == Click(4, 4, True)
    assert clicker.make_next_click(gt, pred) == Click(3, 3, True)


def test_ignore_pixels_are_excluded():
    gt = _box((12, 12), 0, 7, 0, 7)  # big FN
    pred = _box((12, 12), 9, 12, 9, 12)  # small FP
    ignore = gt.copy()
    assert next_click(gt, pred, ignore=ignore) == Click(10, 10, False)
    assert next_click(gt, pred).is_positive


def test_no_error_gives_ritm_negative_click_at_origin():
    gt = _box((6, 6), 1, 4, 1, 4)
    assert next_click(gt, gt.copy()) == Click(0, 0, False)
    # every error pixel already clicked: same degenerate answer
    pred = gt.copy()
    pred[2, 2] = False
    not_clicked = np.ones_like(gt)
    not_clicked[2, 2] = False
    assert next_click(gt, pred, not_clicked) == Click(0, 0, False)


@pytest.mark.parametrize("density", [0.9, 0.5, 0.05])
@pytest.mark.parametrize("seed", range(20))
def test_matches_brute_force_reference(seed, density):
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(3, 15)), int(rng.integers(3, 15)))
    gt = rng.random(shape) < 0.5
    window = np.zeros(shape, bool)  # errors confined to a random sub-window
    r0, c0 = int(rng.integers(0, shape[0])), int(rng.integers(0, shape[1]))
    window[r0 : r0 + int(rng.integers(1, shape[0] + 1)), c0 : c0 + int(rng.integers(1, shape[1] + 1))] = True
    pred = gt ^ (window & (rng.random(shape) < density))
    not_clicked = rng.random(shape) < 0.9
    ignore = rng.random(shape) < 0.1
    expected = _reference_click(gt, pred, not_clicked, ignore)
    assert next_click(gt, pred, not_clicked, ignore) == expected


def test_accepts_zero_one_integer_masks():
    gt = _box((10, 10), 2, 7, 3, 8).astype(np.uint8)
    assert next_click(gt, np.zeros((10, 10), np.float32)) == Click(4, 5, True)


@pytest.mark.parametrize(
    "gt, pred",
    [
        (np.zeros((4, 4), bool), np.zeros((4, 5), bool)),
        (np.zeros((4, 4, 1), bool), np.zeros((4, 4, 1), bool)),
        (np.zeros((4, 4), bool), np.full((4, 4), 0.7)),
    ],
)
def test_invalid_inputs_raise(gt, pred):
    with pytest.raises(ValueError):
        next_click(gt, pred)


def test_invalid_not_clicked_shape_raises():
    with pytest.raises(ValueError, match="not_clicked"):
        next_click(np.zeros((4, 4), bool), np.zeros((4, 4), bool), np.ones((3, 4), bool))


def test_clicker_history_and_undo():
    clicker = Clicker()
    assert clicker.undo() is None
    assert clicker.points_rc().shape == (0, 2)
    assert clicker.labels().shape == (0,)
    clicker.add(Click(1, 2, True))
    clicker.add(Click(3, 0, False))
    assert clicker.clicks == (Click(1, 2, True), Click(3, 0, False))
    np.testing.assert_array_equal(clicker.points_rc(), [[1.0, 2.0], [3.0, 0.0]])
    assert clicker.points_rc().dtype == np.float64
    np.testing.assert_array_equal(clicker.labels(), [1, 0])
    mask = clicker.not_clicked_mask((4, 4))
    assert not mask[1, 2] and not mask[3, 0] and mask.sum() == 14
    assert clicker.undo() == Click(3, 0, False)
    assert clicker.not_clicked_mask((4, 4))[3, 0]
    assert len(clicker) == 1
    clicker.reset()
    assert clicker.clicks == ()


def test_clicker_undo_frees_the_pixel_for_the_simulator():
    gt = _box((9, 9), 2, 7, 2, 7)
    pred = np.zeros_like(gt)
    clicker = Clicker()
    clicker.make_next_click(gt, pred)
    clicker.undo()
    assert clicker.make_next_click(gt, pred) == Click(4, 4, True)


def test_not_clicked_mask_rejects_clicks_outside_the_image():
    clicker = Clicker()
    clicker.add(Click(5, 0, True))
    with pytest.raises(ValueError, match="outside"):
        clicker.not_clicked_mask((4, 4))
