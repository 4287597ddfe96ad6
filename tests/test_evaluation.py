"""Tests of the interactive simulation loop with fake deterministic click models."""

import itertools
import math

import numpy as np
import pytest

from napari_cosas.interaction.clicks import Click
from napari_cosas.evaluation.evaluation import (
    EvalProtocol,
    evaluate_image,
    evaluate_object,
    image_target,
    instance_targets,
    spc,
)
from napari_cosas.interaction.correctors import FIRST_CLICK, GLOBAL_FIRST_CLICK_MAX_SIDE, ModelCorrector
from napari_cosas.models.click_decoding import ClickPrediction


def _box(shape, r0, r1, c0, c1):
    m = np.zeros(shape, dtype=bool)
    m[r0:r1, c0:c1] = True
    return m


class FakeModel:
    """Records every call; ``respond(points, labels)`` gives the mask; logits are fresh objects.

    The tests of the protocol's mechanics run it through `WholePrediction`.
    """

    def __init__(self, respond):
        self.respond = respond
        self.calls = []  # (points_rc, labels, mask_input)
        self.returned_logits = []
        self.images = []
        self.initial_logits = np.full((1, 8, 8), -1.0, np.float32)
        self.initial_probs = []
        self.windows = []  # (rows, cols) of each window-only call

    def set_image(self, image):
        self.images.append(image)

    def mask_to_prompt(self, prob):
        self.initial_probs.append(prob)
        return self.initial_logits

    def predict(self, points_rc, labels, mask_prompt, *, window=None):
        assert points_rc.ndim == 2 and points_rc.shape[1] == 2 and points_rc.dtype.kind == "f"
        assert labels.shape == (len(points_rc),) and labels.dtype.kind == "i"
        self.calls.append((points_rc.copy(), labels.copy(), mask_prompt))
        logits = np.full((1, 8, 8), float(len(self.calls)), np.float32)
        self.returned_logits.append(logits)
        full = np.where(self.respond(points_rc, labels), 10.0, -10.0).astype(np.float32)
        if window is None:
            return ClickPrediction(full, logits)
        self.windows.append(window)
        return ClickPrediction(full[window], None, window)


class WholePrediction:
    """RITM's click effect, for the tests of the loop's mechanics: the mask is the model's whole
    prediction for every click so far, with the product's mask prompts (``ModelCorrector.prompt``)."""

    effect = "whole"

    def __init__(self, model):
        self.model = model
        self.prompts = ModelCorrector(model, memory=None)

    def correct(self, context):
        prompt = self.prompts.prompt(context)
        return self.model.predict(context.points_rc(), context.labels(), prompt).logits > 0


def gt_after(gt, k):
    """A model that returns the ground truth from the k-th click on, an empty mask before."""
    return FakeModel(lambda pts, lab: gt.copy() if len(pts) >= k else np.zeros_like(gt))


def disc_model(shape, radius):
    """Paints a disc around each positive click and erases one around each negative, in order."""
    rr, cc = np.mgrid[: shape[0], : shape[1]]

    def respond(pts, labels):
        mask = np.zeros(shape, bool)
        for (r, c), lab in zip(pts, labels):
            mask[(rr - r) ** 2 + (cc - c) ** 2 <= radius**2] = bool(lab)
        return mask

    return FakeModel(respond)


def counting_clock():
    counter = itertools.count()
    return lambda: float(next(counter))


def _assert_prompts_are_masks(model, first):
    """The first click's mask prompt is ``first``; every later one is made from the mask
    (``mask_to_prompt``; ``None`` for an empty mask), never the model's own low-res logits."""
    inputs = [mask_input for _, _, mask_input in model.calls]
    assert inputs[0] is first
    assert all(passed is None or passed is model.initial_logits for passed in inputs[1:])
    assert not any(passed is low for passed in inputs for low in model.returned_logits)


def test_empty_init_reaches_gt_after_k_clicks_and_stops():
    gt = _box((20, 20), 4, 13, 5, 14)
    model = gt_after(gt, 3)
    res = evaluate_object(model, gt, EvalProtocol(), name="obj", clock=counting_clock(), corrector=WholePrediction(model))
    assert res.name == "obj"
    assert res.n_clicks == len(res.clicks) == len(res.ious) == 3
    assert res.ious == [0.0, 0.0, 1.0]
    assert res.noc == {"80": 3, "85": 3, "90": 3}
    assert res.initial_iou is None
    assert res.clicks[0] == Click(8, 9, True)  # centre of the 9x9 FN box
    assert all(c.is_positive for c in res.clicks) and len(set(res.clicks)) == 3
    assert res.decoder_seconds == pytest.approx(3.0)  # one fake second per predict call
    # every call gets all clicks so far
    assert [len(p) for p, _, _ in model.calls] == [1, 2, 3]
    np.testing.assert_array_equal(model.calls[-1][0], [[c.row, c.col] for c in res.clicks])
    _assert_prompts_are_masks(model, None)


def test_never_reaching_uses_the_full_budget():
    gt = _box((16, 16), 2, 10, 2, 10)
    model = gt_after(gt, 1000)
    res = evaluate_object(model, gt, EvalProtocol(max_clicks=20), corrector=WholePrediction(model))
    assert res.n_clicks == 20 and res.ious == [0.0] * 20
    assert res.noc == {"80": 20, "85": 20, "90": 20}
    assert len(set(res.clicks)) == 20  # clicked pixels are never clicked again


def test_max_clicks_and_stop_iou_respected():
    gt = _box((16, 16), 2, 10, 2, 10)
    model = gt_after(gt, 1000)
    res = evaluate_object(model, gt, EvalProtocol(max_clicks=5), corrector=WholePrediction(model))
    assert res.n_clicks == 5
    model = gt_after(gt, 2)
    res = evaluate_object(model, gt, EvalProtocol(stop_iou=0.5, thresholds=(0.5,)), corrector=WholePrediction(model))
    assert res.n_clicks == 2 and res.noc == {"50": 2}


def test_disc_model_positive_and_negative_clicks():
    shape = (40, 40)
    gt = _box(shape, 5, 25, 5, 25)
    model = disc_model(shape, 4)
    res = evaluate_object(model, gt, EvalProtocol(max_clicks=20), corrector=WholePrediction(model))
    assert res.clicks[0] == Click(14, 14, True)
    assert 1 <= res.n_clicks <= 20 and len(res.ious) == res.n_clicks
    assert res.ious[-1] >= 0.9 or res.n_clicks == 20
    assert all(i < 0.9 for i in res.ious[:-1])  # early stop at the first IoU >= 0.9
    _assert_prompts_are_masks(model, None)
    # negative clicks appear once the painted discs spill over the box
    assert any(not c.is_positive for c in res.clicks)


def test_auto_init_first_click_from_auto_mask_errors():
    shape = (30, 30)
    gt = _box(shape, 2, 10, 2, 10)
    prob = np.zeros(shape, np.float32)
    prob[gt] = 0.8
    prob[15:26, 15:26] = 0.7  # FP 11x11 blob, larger than any FN
    prob[0, 29] = 0.49  # exactly the threshold: background
    model = gt_after(gt, 2)
    res = evaluate_object(model, gt, EvalProtocol(init="auto"), init_prob=prob, corrector=WholePrediction(model))
    assert res.initial_iou == pytest.approx(64 / (64 + 121))
    assert res.clicks[0] == Click(20, 20, False)
    assert res.n_clicks == 2 and res.ious[-1] == 1.0
    assert res.noc == {"80": 2, "85": 2, "90": 2}
    assert len(model.initial_probs) == 1
    _assert_prompts_are_masks(model, model.initial_logits)


def test_auto_init_already_good_makes_no_click():
    gt = _box((12, 12), 2, 10, 2, 10)
    prob = gt.astype(np.float32) * 0.9
    model = gt_after(gt, 1)
    res = evaluate_object(model, gt, EvalProtocol(init="auto"), init_prob=prob, corrector=WholePrediction(model))
    assert res.n_clicks == 0 and res.ious == [] and res.clicks == []
    assert res.initial_iou == 1.0 and res.decoder_seconds == 0.0
    assert res.noc == {"80": 0, "85": 0, "90": 0}
    assert model.calls == []


def test_ignore_is_used_for_clicks_and_iou():
    gt = _box((20, 20), 2, 12, 2, 12)
    ignore = np.zeros_like(gt)
    ignore[2:12, 7:12] = True  # right half of the object does not count
    half = gt & ~ignore
    model = FakeModel(lambda pts, lab: half.copy())
    res = evaluate_object(model, gt, ignore=ignore)
    assert res.n_clicks == 1 and res.ious == [1.0]
    assert res.clicks[0].col < 7


def test_invalid_arguments():
    gt = _box((8, 8), 1, 5, 1, 5)
    with pytest.raises(ValueError, match="init_prob"):
        evaluate_object(gt_after(gt, 1), gt, EvalProtocol(init="auto"))
    with pytest.raises(ValueError, match="init"):
        evaluate_object(gt_after(gt, 1), gt, EvalProtocol(init="bogus"))
    with pytest.raises(ValueError, match="shape"):
        evaluate_object(gt_after(gt, 1), gt, EvalProtocol(init="auto"), init_prob=np.zeros((4, 4)))
    with pytest.raises(ValueError):
        evaluate_object(gt_after(gt, 1), gt[None])


def test_evaluate_image_encodes_once_and_spc():
    labels = np.zeros((20, 20), np.int32)
    labels[1:6, 1:6] = 1
    labels[10:18, 10:18] = 4
    targets = instance_targets(labels)
    assert [name for name, _ in targets] == ["instance_1", "instance_4"]
    union = labels > 0
    model = FakeModel(lambda pts, lab: union.copy())
    image = np.zeros((20, 20, 3), np.uint8)
    results, encode_s = evaluate_image(
        model, image, targets, EvalProtocol(max_clicks=3, effect="global", memory=None), clock=counting_clock()
    )
    assert len(model.images) == 1 and model.images[0] is image
    assert encode_s == pytest.approx(1.0)
    assert [r.name for r in results] == ["instance_1", "instance_4"]
    assert [r.n_clicks for r in results] == [3, 3]  # the other instance stays a false positive
    decoder_spc, total_spc = spc(results, encode_s)
    assert decoder_spc == pytest.approx(1.0)
    assert total_spc == pytest.approx((6 + 1) / 6)


def test_spc_without_clicks_is_nan():
    gt = _box((12, 12), 2, 10, 2, 10)
    res = evaluate_object(gt_after(gt, 1), gt, EvalProtocol(init="auto"), init_prob=gt * 0.9)
    assert all(math.isnan(x) for x in spc([res], 1.0))


def test_targets():
    mask = np.zeros((5, 5), np.uint8)
    assert image_target(mask) == []
    mask[1:3, 1:3] = 255
    ((name, fg),) = image_target(mask)
    assert name == "image" and fg.dtype == bool and fg.sum() == 4
    assert instance_targets(np.zeros((3, 3), np.int64)) == []
    with pytest.raises(ValueError):
        instance_targets(np.zeros((3, 3), np.float32))


def test_local_clicks_keep_changes_away_from_the_click_out():
    shape = (100, 100)
    gt = _box(shape, 20, 30, 20, 30)  # fits in the 19-pixel window around the second click
    spurious = _box(shape, 80, 95, 80, 95)

    def respond(pts, labels):
        # the first click gives half the object; later clicks complete it but also add a blob far away
        return _box(shape, 20, 25, 20, 30) if len(pts) == 1 else gt | spurious

    global_ = evaluate_object(FakeModel(respond), gt, EvalProtocol(max_clicks=3, effect="global", memory=None))
    local_model = FakeModel(respond)
    local = evaluate_object(local_model, gt, EvalProtocol(max_clicks=3, effect="local"))
    assert global_.ious[1] < 0.9
    assert local.ious == [0.5, 1.0] and local.n_clicks == 2
    # the mask, not the model's raw logits, is the prompt of the next click (made when it comes)
    assert len(local_model.initial_probs) == 1
    np.testing.assert_array_equal(local_model.initial_probs[-1], _box(shape, 20, 25, 20, 30))
    assert local_model.calls[1][2] is local_model.initial_logits
    # the second click asked for its window only (the first took the whole prediction)
    assert len(local_model.windows) == 1
    rows, cols = local_model.windows[0]
    assert (rows.stop - rows.start, cols.stop - cols.start) == (19, 19)


def test_local_first_click_takes_the_whole_prediction():
    shape = (100, 100)
    gt = _box(shape, 10, 20, 10, 20) | _box(shape, 70, 80, 70, 80)
    model = FakeModel(lambda pts, lab: gt.copy())  # one click finds both regions
    res = evaluate_object(model, gt, EvalProtocol(effect="local"))
    assert res.ious == [1.0]


@pytest.mark.parametrize("side", [GLOBAL_FIRST_CLICK_MAX_SIDE, GLOBAL_FIRST_CLICK_MAX_SIDE + 1])
def test_the_default_first_click_is_global_on_small_patches_only(side):
    """By default (``by-size``) the first click on the automatic mask takes the model's whole
    prediction on a patch of longer side at most ``GLOBAL_FIRST_CLICK_MAX_SIDE`` px; on a larger
    patch it changes only the region under the click, the far region stays as it was."""
    assert FIRST_CLICK == "by-size"
    shape = (side // 2, side)
    gt = _box(shape, 10, 60, 10, 60) | _box(shape, 100, 160, side - 70, side - 10)
    model = FakeModel(lambda pts, lab: gt.copy())  # the whole prediction is right everywhere
    auto = np.full(shape, 0.1, np.float32)  # misses both; the click lands in the larger
    res = evaluate_object(model, gt, EvalProtocol(init="auto", max_clicks=1), name="x", init_prob=auto)
    assert res.n_clicks == 1
    if side <= GLOBAL_FIRST_CLICK_MAX_SIDE:
        assert res.ious == [1.0]
    else:
        assert res.ious[0] < 1.0 and res.ious[0] > res.initial_iou
    assert ModelCorrector(model).takes_whole_prediction(shape) == (side <= GLOBAL_FIRST_CLICK_MAX_SIDE)


def test_the_model_sees_the_latest_clicks_only():
    """By default the model is shown the last ``CLICK_MEMORY`` clicks (earlier ones are in the
    mask prompt); ``memory=None`` shows all of them, as RITM does."""
    from napari_cosas.inference.refine import CLICK_MEMORY

    gt = _box((40, 40), 0, 40, 0, 40)
    capped, every = gt_after(gt, 1000), gt_after(gt, 1000)
    evaluate_object(capped, gt, EvalProtocol(max_clicks=CLICK_MEMORY + 3))
    evaluate_object(every, gt, EvalProtocol(max_clicks=CLICK_MEMORY + 3, memory=None))
    assert [len(c[0]) for c in capped.calls] == [min(k, CLICK_MEMORY) for k in range(1, CLICK_MEMORY + 4)]
    assert [len(c[0]) for c in every.calls] == list(range(1, CLICK_MEMORY + 4))
