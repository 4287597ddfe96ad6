"""Tests of overlap metrics and NoC / NoF / IoU-curve aggregation."""

from dataclasses import dataclass

import numpy as np
import pytest

from napari_cosas.evaluation.metrics import cosas_score, dice, iou, jaccard, mean_iou_curve, noc, nof, summarize


def test_iou_dice_cosas_known_values():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[0, :2] = True  # 2 px
    b[0, 1:4] = True  # 3 px, overlap 1
    assert iou(a, b) == pytest.approx(1 / 4)
    assert jaccard(a, b) == pytest.approx(1 / 4)
    assert dice(a, b) == pytest.approx(2 / 5)
    assert cosas_score(a, b) == pytest.approx(0.5 * 2 / 5 + 0.5 / 4)


def test_empty_vs_empty_is_one_and_empty_vs_nonempty_is_zero():
    e = np.zeros((3, 3), bool)
    f = e.copy()
    f[1, 1] = True
    assert iou(e, e) == dice(e, e) == cosas_score(e, e) == 1.0
    assert iou(e, f) == dice(e, f) == cosas_score(e, f) == 0.0


def test_iou_ignore_mask():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[0, :2] = True
    b[0, 1:4] = True
    ignore = np.zeros((4, 4), bool)
    ignore[0, 2:] = True
    assert iou(a, b, ignore) == pytest.approx(1 / 2)
    assert iou(a, a, np.ones((4, 4), bool)) == 1.0


def test_shape_mismatch_raises():
    with pytest.raises(ValueError):
        iou(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError):
        iou(np.zeros((2, 2)), np.zeros((2, 2)), np.zeros((3, 3)))


def test_noc_cases():
    assert noc([0.95], 0.9) == 1  # at click 1
    assert noc([0.5] * 19 + [0.9], 0.9) == 20  # exactly at click 20
    assert noc([0.5] * 20, 0.9) == 20  # never
    assert noc([0.5, 0.7], 0.9) == 20  # stopped early, never reached
    assert noc([0.5, 0.86, 0.91], 0.85) == 2
    assert noc([0.5], 0.85, initial_iou=0.86) == 0  # auto start already good
    assert noc([], 0.85, initial_iou=0.86) == 0
    assert noc([0.2, 0.9], 0.85, initial_iou=0.5) == 2
    assert noc([0.5] * 5, 0.9, max_clicks=5) == 5
    with pytest.raises(ValueError):
        noc([0.5] * 21, 0.9)


def test_nof_follows_ritm_noc_equal_to_max():
    nocs = [noc([0.5] * 19 + [0.9], 0.9), noc([0.5] * 20, 0.9), noc([0.95], 0.9), 0]
    assert nocs == [20, 20, 1, 0]
    assert nof(nocs, 20) == 2


def test_mean_iou_curve_pads_with_last_value():
    curve = mean_iou_curve([[0.2, 0.6], [0.4, 0.8, 1.0]], max_clicks=4)
    assert curve == pytest.approx([0.3, 0.7, 0.8, 0.8])
    assert len(mean_iou_curve([[0.1]], 20)) == 20
    with pytest.raises(ValueError):
        mean_iou_curve([[]], 4)
    with pytest.raises(ValueError):
        mean_iou_curve([[0.1] * 5], 4)


@dataclass
class _Trace:
    ious: list
    initial_iou: float | None = None


def test_summarize():
    results = [
        _Trace([0.82, 0.87, 0.91]),
        _Trace([0.5] * 20),
        _Trace([], initial_iou=0.95),
    ]
    s = summarize(results, max_clicks=20)
    assert s["n_objects"] == 3
    assert s["noc80"] == pytest.approx((1 + 20 + 0) / 3)
    assert s["noc85"] == pytest.approx((2 + 20 + 0) / 3)
    assert s["noc90"] == pytest.approx((3 + 20 + 0) / 3)
    assert s["nof80"] == s["nof85"] == s["nof90"] == 1
    curve = s["mean_iou_per_click"]
    assert len(curve) == 20
    assert curve[0] == pytest.approx((0.82 + 0.5 + 0.95) / 3)
    assert curve[-1] == pytest.approx((0.91 + 0.5 + 0.95) / 3)
    with pytest.raises(ValueError):
        summarize([])
