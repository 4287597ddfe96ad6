"""The interaction engine: one path for the widget's session and ``evaluate``; undo / redo / reset
with diffs; the reference correctors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_cosas.interaction.clicks import Click
from napari_cosas.evaluation.evaluation import EvalProtocol, evaluate_object
from napari_cosas.inference.focus import Focus
from napari_cosas.interaction.engine import MAX_UNDO, Interaction, StaleClickError
from napari_cosas.inference.model_bundle import ModelBundle
from napari_cosas.models.focus_refiner import FocusRefiner
from napari_cosas.models.sam_models import build_tiny_sam
from napari_cosas.inference.predictor import ClickPredictor
from napari_cosas.interaction.references import OracleCorrector, WandCorrector
from napari_cosas.interaction.session import AnnotationSession


class Recording:
    """A real tiny click predictor that logs every call the click path makes and what it returned."""

    def __init__(self, predictor: ClickPredictor) -> None:
        self.predictor = predictor
        self.calls: list[tuple] = []

    def __getattr__(self, name):  # set_image, is_image_set, model_id, ...
        return getattr(self.predictor, name)

    def mask_to_prompt(self, prob):
        out = self.predictor.mask_to_prompt(prob)
        self.calls.append(("mask_to_prompt", np.array(prob, dtype=np.float32), out))
        return out

    def predict(self, points_rc, labels, mask_prompt, *, window=None):
        out = self.predictor.predict(points_rc, labels, mask_prompt, window=window)
        if window is None:
            self.calls.append(("full", points_rc.copy(), labels.copy(), mask_prompt, out.logits))
        else:
            self.calls.append(("window", points_rc.copy(), labels.copy(), mask_prompt, *window, out.logits))
        return out


def _same_calls(a: list[tuple], b: list[tuple]) -> None:
    assert [c[0] for c in a] == [c[0] for c in b]
    for x, y in zip(a, b):
        for u, v in zip(x[1:], y[1:]):
            if isinstance(u, np.ndarray) or isinstance(v, np.ndarray):
                np.testing.assert_array_equal(u, v)
            else:
                assert u == v


@pytest.mark.parametrize(("effect", "refined"), [("local", False), ("local", True), ("global", False), ("global", True)])
def test_session_and_evaluate_make_the_same_model_calls_and_masks(effect: str, refined: bool) -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (96, 80, 3), dtype=np.uint8)
    gt = np.zeros((96, 80), dtype=bool)
    gt[20:60, 15:50] = True
    prob = np.clip(gt * 0.8 + rng.normal(0, 0.3, gt.shape), 0, 1).astype(np.float32)
    predictor = ClickPredictor(build_tiny_sam(decoder="enhanced"), "tiny", device="cpu")
    refiner = FocusRefiner().eval() if refined else None

    simulated = Recording(predictor)
    simulated.set_image(image)
    result = evaluate_object(simulated, gt, EvalProtocol(init="auto", max_clicks=8, stop_iou=1.01, thresholds=(0.9,),
                                                         effect=effect),
                             init_prob=prob, focus=Focus(refiner, image) if refined else None)
    assert result.n_clicks == 8

    product = Recording(predictor)
    session = AnnotationSession(ModelBundle(predictor=product, refiner=refiner, focus_name="cosas-default-focus"
                                            if refined else None), click_effect=effect)
    patch = session.add_array("patch", image)
    session.select(0)
    session.apply_segmentation(patch, prob)
    masks = []
    for click in result.clicks:
        session.click(patch, click.row, click.col, click.is_positive)
        masks.append(patch.mask.copy())
    _same_calls(product.calls, simulated.calls)
    # the IoU after each click in evaluate is the IoU of the session's mask after the same click
    ious = [float((m & gt).sum() / (m | gt).sum()) for m in masks]
    np.testing.assert_allclose(ious, result.ious)


def _square(shape, r0, r1, c0, c1) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m[r0:r1, c0:c1] = True
    return m


class Paint:
    """A corrector that paints the clicked pixel's 5x5 neighbourhood with the click's label."""

    effect = "paint"

    def correct(self, context):
        mask = context.previous.copy()
        c = context.click
        mask[max(0, c.row - 2): c.row + 3, max(0, c.col - 2): c.col + 3] = c.is_positive
        return mask


def test_undo_redo_reset_round_trip() -> None:
    start = _square((50, 60), 10, 30, 10, 30)
    inter = Interaction((50, 60), auto_prob=start.astype(np.float32))
    states = [inter.mask.copy()]
    inter.click(Paint(), Click(40, 40, True))
    states.append(inter.mask.copy())
    edited = inter.mask.copy()
    edited[0:3, 0:3] = True
    assert inter.edit(edited) and inter.edited
    states.append(inter.mask.copy())
    inter.click(Paint(), Click(15, 15, False))
    states.append(inter.mask.copy())
    assert [c.row for c in inter.clicker.clicks] == [40, 15]

    assert inter.reset() and np.array_equal(inter.mask, start) and not inter.clicker.clicks
    assert not inter.edited and inter.untouched
    assert inter.undo()  # undo the reset: clicks, records and the edit flag are back
    assert np.array_equal(inter.mask, states[3]) and len(inter.records) == 2 and inter.edited
    for expected in reversed(states[:-1]):
        assert inter.undo()
        assert np.array_equal(inter.mask, expected)
    assert not inter.undo() and inter.state_id == 0 and inter.untouched
    for expected in states[1:]:
        assert inter.redo()
        assert np.array_equal(inter.mask, expected)
    assert inter.redo() and np.array_equal(inter.mask, start)  # the reset again
    assert not inter.redo()
    inter.undo()
    inter.click(Paint(), Click(45, 5, True))  # a new change drops what could be redone
    assert not inter.can_redo


def test_history_stores_only_what_changed_and_is_bounded() -> None:
    inter = Interaction((2000, 2000))
    rng = np.random.default_rng(0)
    for _ in range(MAX_UNDO + 50):
        inter.click(Paint(), Click(int(rng.integers(2000)), int(rng.integers(2000)), bool(rng.integers(2))))
    assert len(inter._undo) == MAX_UNDO and len(inter.records) == MAX_UNDO + 50
    stored = sum(c.diff.bits.nbytes for c in inter._undo if c.diff is not None)
    assert stored <= MAX_UNDO * 4  # 5x5 boxes, bit-packed: a full-mask copy per click would be 4 MB
    for _ in range(MAX_UNDO):
        assert inter.undo()
    assert not inter.undo() and len(inter.records) == 50


def test_the_pixels_set_by_hand_follow_edits_undo_reset_and_the_history_bound() -> None:
    """What a click's changes away from its region must leave alone (``ClickContext.hand_set``):
    the pixels brush edits flipped, every pixel of an imported mask, none after a reset or once
    the edit is undone, and still those of an edit too old to be undone."""
    seen = []

    class Watch(Paint):
        def correct(self, context):
            seen.append(context.hand_set)
            return super().correct(context)

    inter = Interaction((30, 30))
    inter.click(Watch(), Click(5, 5, True))
    assert seen[-1] is None and inter.hand_set() is None  # clicks set nothing by hand
    inter.edit(inter.mask | _square((30, 30), 20, 25, 20, 25))
    inter.edit(inter.mask & ~_square((30, 30), 4, 6, 4, 6))  # erases part of the click's paint
    inter.click(Watch(), Click(15, 15, False))
    expected = _square((30, 30), 20, 25, 20, 25) | _square((30, 30), 4, 6, 4, 6)
    np.testing.assert_array_equal(seen[-1], expected)
    inter.undo()
    inter.undo()  # the erase
    np.testing.assert_array_equal(inter.hand_set(), _square((30, 30), 20, 25, 20, 25))
    inter.redo()
    np.testing.assert_array_equal(inter.hand_set(), expected)
    inter.reset()
    assert inter.hand_set() is None
    inter.edit(_square((30, 30), 0, 3, 0, 3), whole=True)  # an imported mask: every pixel
    assert inter.hand_set().all()
    inter.undo()
    assert inter.hand_set() is None

    old = Interaction((30, 30))
    old.edit(_square((30, 30), 0, 2, 0, 2))
    for i in range(MAX_UNDO):
        old.click(Paint(), Click(10 + i % 10, 20, True))
    assert all(c.kind == "click" for c in old._undo)  # the edit fell out of the history
    np.testing.assert_array_equal(old.hand_set(), _square((30, 30), 0, 2, 0, 2))


def test_a_computed_click_knows_the_box_of_the_pixels_it_flips() -> None:
    """The widget writes only that box into the labels layer: it must hold every flipped pixel."""
    inter = Interaction((40, 40), mask=_square((40, 40), 10, 20, 10, 20))
    step = inter.compute(Paint(), Click(30, 5, True))
    flipped = step.mask != inter.mask
    rows, cols = step.changed_box
    assert flipped.any() and flipped[rows, cols].sum() == flipped.sum()
    assert rows == slice(*np.flatnonzero(flipped.any(1))[[0, -1]] + [0, 1])
    inter.apply(step)
    nothing = inter.compute(Paint(), Click(30, 5, True))  # the pixel is already in the mask
    assert nothing.changed_box == (slice(0, 0), slice(0, 0))
    inter.apply(nothing)
    assert inter.undo() and inter.undo() and np.array_equal(inter.mask, _square((40, 40), 10, 20, 10, 20))


def test_a_click_computed_on_an_older_state_is_refused() -> None:
    inter = Interaction((20, 20))
    step = inter.compute(Paint(), Click(5, 5, True))
    inter.click(Paint(), Click(10, 10, True))
    with pytest.raises(StaleClickError):
        inter.apply(step)


def test_session_undo_returns_to_the_exported_state(tmp_path) -> None:
    session = AnnotationSession()  # no click: the models are never loaded
    patch = session.add_array("p", np.zeros((30, 30, 3), np.uint8))
    session.apply_segmentation(patch, _square((30, 30), 5, 15, 5, 15).astype(np.float32))
    assert patch.state == "segmented"
    edited = patch.mask.copy()
    edited[20:25, 20:25] = True
    session.sync_mask(patch, edited)
    assert patch.state == "corrected"
    session.export(patch, tmp_path)
    assert patch.state == "exported"
    assert session.reset(patch) and patch.state == "segmented"
    assert session.undo(patch) and patch.state == "exported"


def test_oracle_flips_the_whole_error_region_under_the_click() -> None:
    gt = _square((40, 40), 5, 20, 5, 20) | _square((40, 40), 30, 35, 30, 35)
    previous = _square((40, 40), 5, 12, 5, 20) | _square((40, 40), 0, 3, 35, 40)
    inter = Interaction((40, 40), mask=previous)
    inter.click(OracleCorrector(gt), Click(15, 10, True))  # in the missing lower part of the square
    assert np.array_equal(inter.mask, previous | _square((40, 40), 12, 20, 5, 20))
    inter.click(OracleCorrector(gt), Click(1, 38, False))  # the false positive corner
    inter.click(OracleCorrector(gt), Click(32, 32, True))
    assert np.array_equal(inter.mask, gt)
    inter.click(OracleCorrector(gt), Click(0, 0, False))  # no error there: nothing changes
    assert np.array_equal(inter.mask, gt)


def test_wand_fills_the_clicked_colour_inside_the_window() -> None:
    image = np.full((100, 100, 3), 230, np.uint8)  # pale background
    image[20:60, 20:60] = (120, 40, 140)  # a purple gland
    image[70:90, 70:90] = (120, 40, 140)  # another one, not connected
    wand = WandCorrector(image, tolerance=20, sigma=1.0, window=0.5)
    inter = Interaction((100, 100))
    inter.click(wand, Click(40, 40, True))
    filled = inter.mask
    assert filled[25:55, 25:55].all() and not filled[70:90, 70:90].any() and not filled[:10].any()
    inter.click(wand, Click(5, 5, False))  # removing background that was not there changes nothing
    assert np.array_equal(inter.mask, filled)
    wide = WandCorrector(image, tolerance=20, sigma=1.0, window=0.2)  # a 20-px window
    inter = Interaction((100, 100))
    inter.click(wide, Click(40, 40, True))
    assert inter.mask.sum() <= 21 * 21 and inter.mask[40, 40]
