"""How a click changes the mask: local (the region under it) or global (that, and elsewhere what the
model is sure of)."""

import numpy as np
import pytest

from napari_cosas.models.click_decoding import LOGIT_THRESHOLD, ClickPrediction
from napari_cosas.inference.refine import GLOBAL_MARGIN, mask_after_click, click_mask, local_window

HIGH, LOW = 8.0, -8.0


def _logits(shape, *boxes, value=HIGH):
    """``LOW`` everywhere and ``value`` in each ``(r0, r1, c0, c1)`` box."""
    logits = np.full(shape, LOW, np.float32)
    for r0, r1, c0, c1 in boxes:
        logits[r0:r1, c0:c1] = value
    return logits


def test_global_click_is_local_plus_what_the_model_is_sure_of_elsewhere():
    """Beyond the click's window a global click takes the model's prediction where the logit is at
    least GLOBAL_MARGIN from the threshold, leaves unsure pixels and pixels set by hand as they
    were, and inside the window it changes only the region under the click, as a local click."""
    shape = (100, 100)
    previous = np.zeros(shape, bool)
    previous[80:90, 5:15] = True  # the model is sure this is background: removed
    previous[5:15, 80:90] = True  # unsure (below the margin): kept
    previous[60:70, 80:90] = True  # sure background, but set by hand: kept
    logits = _logits(shape, (45, 52, 45, 52), (47, 53, 54, 57), (80, 90, 80, 90))
    logits[5:15, 80:90] = LOGIT_THRESHOLD - (GLOBAL_MARGIN - 0.5)
    logits[20:30, 20:30] = LOGIT_THRESHOLD + GLOBAL_MARGIN - 0.5  # unsure foreground: not added
    keep = np.zeros(shape, bool)
    keep[60:70, 80:90] = True
    mask = mask_after_click(previous, logits, 50, 50, True, effect="global", window=0.15, keep=keep)
    rows, cols = local_window(shape, 50, 50, 0.15)
    expected = previous.copy()
    expected[45:52, 45:52] = True  # the clicked region
    expected[80:90, 5:15] = False
    expected[80:90, 80:90] = True  # sure foreground far away: added
    np.testing.assert_array_equal(mask[rows, cols], mask_after_click(previous, logits, 50, 50, True, window=0.15)[rows, cols])
    assert not mask[47:53, 54:57].any()  # a separate blob inside the window: a local click leaves it
    np.testing.assert_array_equal(mask, expected)
    assert not np.array_equal(mask, logits > LOGIT_THRESHOLD)  # not the thresholded prediction


def test_first_click_taking_the_prediction_is_the_same_in_both_effects():
    logits = _logits((10, 10), (2, 5, 2, 5))
    logits[0, 0] = LOGIT_THRESHOLD  # exactly the threshold: background
    previous = np.ones((10, 10), bool)
    for effect in ("local", "global"):
        mask = mask_after_click(previous, logits, 3, 3, True, effect=effect, start_from_prediction=True)
        np.testing.assert_array_equal(mask, logits > LOGIT_THRESHOLD)


def test_positive_click_adds_only_the_region_under_it():
    shape = (100, 100)
    previous = np.zeros(shape, bool)
    previous[5:15, 5:15] = True  # an earlier region the model now forgets
    logits = _logits(shape, (40, 50, 40, 50), (40, 50, 52, 60), (90, 99, 90, 99))
    mask = mask_after_click(previous, logits, 45, 45, True)
    expected = previous.copy()
    expected[40:50, 40:50] = True  # not the separate blob two columns away, nor the far one
    np.testing.assert_array_equal(mask, expected)


def test_negative_click_removes_only_the_region_under_it():
    shape = (100, 100)
    previous = np.zeros(shape, bool)
    previous[10:20, 10:20] = True
    previous[10:20, 30:40] = True
    logits = _logits(shape, (10, 20, 30, 40))  # the model drops the first region and keeps the second
    logits[60:70, 60:70] = HIGH  # and adds a region nobody asked for
    mask = mask_after_click(previous, logits, 15, 15, False)
    expected = previous.copy()
    expected[10:20, 10:20] = False
    np.testing.assert_array_equal(mask, expected)


def test_a_click_the_model_did_not_follow_still_changes_its_pixel():
    shape = (100, 100)
    logits = _logits(shape)
    logits[45:55, 45:55] = -2.0  # more likely tumour than around it, but below the threshold
    logits[48:52, 48:52] = -1.0
    mask = mask_after_click(np.zeros(shape, bool), logits, 50, 46, True)
    expected = np.zeros(shape, bool)
    expected[45:55, 45:55] = True  # every connected pixel at least as likely as the clicked one
    np.testing.assert_array_equal(mask, expected)

    previous = np.ones(shape, bool)
    logits = -logits  # a negative click on foreground the model keeps
    mask = mask_after_click(previous, logits, 50, 46, False)
    np.testing.assert_array_equal(mask, ~expected)


def test_the_change_stays_inside_the_window():
    shape = (1000, 1000)
    logits = _logits(shape, (0, 1000, 0, 1000))  # the model says "all tumour"
    mask = mask_after_click(np.zeros(shape, bool), logits, 500, 500, True, window=0.1)
    rows, cols = local_window(shape, 500, 500, 0.1)
    assert (rows.start, rows.stop, cols.start, cols.stop) == (450, 551, 450, 551)
    assert mask.sum() == 101 * 101 and mask[rows, cols].all()


def test_window_is_cut_at_the_border():
    rows, cols = local_window((200, 100), 0, 99, 0.5)
    assert (rows.start, rows.stop, cols.start, cols.stop) == (0, 51, 49, 100)


def test_first_click_can_start_from_the_whole_prediction():
    shape = (100, 100)
    previous = np.zeros(shape, bool)
    previous[0:10, 0:10] = True
    logits = _logits(shape, (40, 50, 40, 50), (80, 90, 80, 90))
    mask = mask_after_click(previous, logits, 45, 45, True, start_from_prediction=True)
    np.testing.assert_array_equal(mask, logits > 0)


def test_previous_mask_is_not_modified():
    previous = np.zeros((20, 20), bool)
    mask_after_click(previous, _logits((20, 20), (5, 10, 5, 10)), 7, 7, True)
    assert not previous.any()


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="must match"):
        mask_after_click(np.zeros((3, 3), bool), np.zeros((3, 4)), 0, 0, True)
    with pytest.raises(ValueError, match="outside"):
        mask_after_click(np.zeros((3, 3), bool), np.zeros((3, 3)), 3, 0, True)
    with pytest.raises(ValueError, match="effect"):
        mask_after_click(np.zeros((3, 3), bool), np.zeros((3, 3)), 0, 0, True, effect="bogus")
    with pytest.raises(ValueError, match="window"):
        mask_after_click(np.zeros((3, 3), bool), np.zeros((3, 3)), 0, 0, True, window=0)


class _WholeLogits:
    """A click model with fixed logits that records which of them each call asked for."""

    def __init__(self, logits):
        self.logits = logits
        self.calls = []

    def predict(self, points_rc, labels, mask_prompt, *, window=None):
        if window is None:
            self.calls.append("full")
            return ClickPrediction(self.logits.copy(), np.zeros((1, 8, 8), np.float32))
        rows, cols = window
        self.calls.append((rows.start, rows.stop, cols.start, cols.stop))
        return ClickPrediction(self.logits[window].copy(), None, window)


@pytest.mark.parametrize("effect, start", [("local", False), ("local", True), ("global", False)])
def test_click_mask_asks_only_for_what_the_click_reads(effect, start):
    """A local click on an edited mask reads its window only and gets the same mask as with the
    whole prediction; the first click and global clicks read the whole prediction."""
    shape = (200, 300)
    logits = _logits(shape, (40, 60, 40, 60), (150, 190, 250, 290))
    previous = np.zeros(shape, bool)
    previous[0:20, 0:20] = True
    model = _WholeLogits(logits)
    points, labels = np.array([[10.0, 15.0], [50.0, 45.0]]), np.array([1, 1])
    mask = click_mask(model, previous, points, labels, None, effect=effect, start_from_prediction=start, window=0.2)
    expected = mask_after_click(previous, logits, 50, 45, True, effect=effect, start_from_prediction=start, window=0.2)
    np.testing.assert_array_equal(mask, expected)
    if effect == "local" and not start:
        assert model.calls == [(20, 81, 15, 76)]
    else:
        assert model.calls == ["full"]


def test_click_mask_shows_the_model_the_latest_clicks_only():
    """Earlier clicks live on in the mask prompt; the model sees the last ``memory`` of them."""
    shape = (50, 50)

    class Recorder(_WholeLogits):
        def predict(self, points_rc, labels, mask_prompt, *, window=None):
            self.calls.append((points_rc.copy(), labels.copy()))
            return ClickPrediction(self.logits[window].copy(), None, window)

    model = Recorder(_logits(shape, (20, 30, 20, 30)))
    points = np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [25.0, 25.0]])
    labels = np.array([0, 1, 0, 1])
    mask = click_mask(model, np.zeros(shape, bool), points, labels, None, memory=2)
    np.testing.assert_array_equal(model.calls[0][0], points[-2:])
    np.testing.assert_array_equal(model.calls[0][1], labels[-2:])
    assert mask[25, 25]
    click_mask(model, np.zeros(shape, bool), points, labels, None, memory=None)
    assert len(model.calls[1][0]) == 4
    with pytest.raises(ValueError, match="memory"):
        click_mask(model, np.zeros(shape, bool), points, labels, None, memory=0)
