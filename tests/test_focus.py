"""Focus refinement: the window, the refiner's input, what a refined click may change, the weights
file, and recording / training on this CPU."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from napari_cosas.inference.focus import Focus, focus_inputs, focus_size, focus_window
from napari_cosas.models.click_decoding import LOGIT_THRESHOLD, ClickPrediction
from napari_cosas.models.focus_refiner import FOCUS_CHANNELS, FocusRefiner, refiner_payload
from napari_cosas.models.sam_models import build_tiny_sam
from napari_cosas.inference.predictor import ClickPredictor
from napari_cosas.inference.refine import GLOBAL_MARGIN, local_click, local_window
from napari_cosas.interaction.clicks import Click
from napari_cosas.interaction.correctors import ClickContext, ModelCorrector
from napari_cosas.models.registry import WeightsError, load_focus_refiner
from napari_cosas.training.focus_training import RECORD_SIZE, record_folder, train_refiner


class CoarseCopy(nn.Module):
    """A refiner that predicts the click model's coarse mask (input channel 4) back."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 10.0 * x[:, 4:5]


class Fixed:
    """A click model whose logits are a fixed ``(H, W)`` map."""

    def __init__(self, logits: np.ndarray) -> None:
        self.logits = logits
        self.windows: list[tuple[slice, slice]] = []

    def predict(self, points_rc, labels, mask_prompt, *, window):
        self.windows.append(window)
        return ClickPrediction(self.logits[window].copy(), None, window)


def test_the_focus_window_is_a_square_shifted_inside_the_image() -> None:
    rows, cols = focus_window((100, 300), 50, 299, 0.35)
    assert (rows, cols) == (slice(0, 100), slice(195, 300))  # 105 px, cut to the 100 rows
    rows, cols = focus_window((400, 400), 5, 200, 0.25)
    assert (rows, cols) == (slice(0, 100), slice(150, 250))


def test_the_refiner_input_draws_each_click_at_its_row_and_col() -> None:
    rgb = torch.rand(3, 40, 80)
    previous, logits = torch.zeros(40, 80), torch.zeros(40, 80)
    points = np.array([[30.0, 5.0], [-20.0, 10.0], [10.0, 60.0]])  # earlier negative, one outside, latest
    x = focus_inputs(rgb, previous, logits, points, np.array([0, 1, 1]), size=96)
    assert x.shape == (FOCUS_CHANNELS, 96, 96)

    def centre(channel: int) -> tuple[float, float]:
        r, c = np.nonzero(x[channel].numpy())
        return r.mean(), c.mean()

    np.testing.assert_allclose(centre(5), ((10.5 * 96 / 40) - 0.5, (60.5 * 96 / 80) - 0.5), atol=0.5)
    np.testing.assert_allclose(centre(8), ((30.5 * 96 / 40) - 0.5, (5.5 * 96 / 80) - 0.5), atol=0.7)
    assert x[6].sum() == 0 and x[7].sum() == 0  # no latest negative; the earlier positive is outside


@pytest.mark.parametrize("side", [40, 300])  # resampled up to 96 px, and down with antialiasing
def test_the_refiner_input_is_the_normalised_crop_resampled(side: int) -> None:
    """The image is normalised after the resampling (cheaper); the refiner was trained on the
    crop normalised first, then resampled, and must get the same input from a uint8 crop."""
    rng = np.random.default_rng(side)
    crop = torch.from_numpy(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).permute(2, 0, 1)
    previous = torch.from_numpy((rng.random((side, side)) > 0.5).astype(np.float32))
    logits = torch.from_numpy(rng.normal(0.0, 6.0, (side, side)).astype(np.float32))
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    planes = torch.cat([(crop.float() / 255.0 - mean) / std, previous[None], torch.tanh(logits[None] / 4.0)])
    expected = F.interpolate(planes[None], size=(96, 96), mode="bilinear", align_corners=False,
                             antialias=side > 96)[0]
    points, labels = np.array([[side / 3, side / 2]]), np.array([1])
    for rgb in (crop, crop.float() / 255.0):
        x = focus_inputs(rgb, previous, logits, points, labels, size=96)
        torch.testing.assert_close(x[:5], expected, atol=1e-5, rtol=0)


def _two_blobs() -> tuple[np.ndarray, np.ndarray]:
    logits = np.full((120, 120), -8.0, dtype=np.float32)
    logits[40:60, 40:55] = 8.0  # blob A, clicked
    logits[40:60, 65:80] = 8.0  # blob B, inside the focus window too
    logits[100:110, 5:15] = 8.0  # outside the window
    image = np.random.default_rng(0).integers(0, 256, (120, 120, 3), dtype=np.uint8)
    return logits, image


def test_a_refined_click_pastes_its_region_and_the_confident_changes_in_the_window_only() -> None:
    """The change connected to the click is pasted, and the refiner's confident changes elsewhere
    in the focus window (blob B added, a false region removed); a weak change away from the click
    is not, and nothing outside the window changes (the user's region there stays)."""
    logits, image = _two_blobs()
    logits[25:31, 20:26] = 0.3  # blob C: in the window, the refiner only slightly for it
    focus = Focus(CoarseCopy(), image, window=0.5, min_side=0)  # window rows 20-80, cols 17-77
    previous = np.zeros((120, 120), dtype=bool)
    previous[0:10, 0:10] = True  # a region the user made, outside the window
    previous[100:110, 50:60] = True  # and another one, the model against it
    previous[70:76, 25:31] = True  # a false region in the window, the refiner sure against it
    mask = focus.click(Fixed(logits), previous, np.array([[50.0, 47.0]]), np.array([1]), None, memory=5)
    assert mask[45:55, 43:52].all()  # blob A, under the click
    assert mask[45:55, 68:75].all()  # blob B, confident
    assert not mask[70:76, 25:31].any()  # the false region, confidently removed
    assert not mask[26:30, 21:25].any()  # blob C, weak and not connected to the click
    assert not mask[100:110, 5:15].any() and mask[0:10, 0:10].all() and mask[100:110, 50:60].all()
    assert abs(int(mask.sum()) - 200 - 2 * 20 * 15) <= 80  # blobs A and B and the kept regions, up to resampling


def test_the_refiners_confident_changes_leave_the_pixels_set_by_hand() -> None:
    """Pixels the user set by hand (``keep``) keep their value under the refiner's confident
    changes away from the click; the change connected to the click still takes them."""
    logits, image = _two_blobs()
    focus = Focus(CoarseCopy(), image, window=0.5, min_side=0)
    previous = np.zeros((120, 120), dtype=bool)
    previous[70:76, 25:31] = True  # painted by hand, the refiner sure against it
    keep = np.zeros((120, 120), dtype=bool)
    keep[70:76, 25:31] = True
    keep[40:60, 65:72] = True  # the left part of blob B was painted background by hand
    keep[48:52, 45:49] = True  # and so was the clicked spot, before the click
    mask = focus.click(Fixed(logits), previous, np.array([[50.0, 47.0]]), np.array([1]), None, memory=5,
                       keep=keep)
    assert mask[70:76, 25:31].all()  # kept, though the refiner removed it with confidence
    assert not mask[40:60, 65:72].any() and mask[45:55, 72:75].all()  # blob B only where not set by hand
    assert mask[45:55, 43:52].all()  # blob A, connected to the click, set by hand or not


def test_the_refiner_sees_a_larger_window_at_the_same_scale_not_coarser() -> None:
    """The refiner's input side follows the window (``FOCUS_RESOLUTION`` pixels per longer image
    side, in multiples of its stride), so a window of 0.75 of a 120-px image (90 px) reaches it as
    144 px, and a lower resolution shrinks it. On a small patch the window is the whole patch
    (``FOCUS_MIN_SIDE``), on a large one at most ``FOCUS_MAX_SIDE`` pixels."""
    logits, image = _two_blobs()
    seen: list[tuple[int, ...]] = []

    class Recording(CoarseCopy):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(tuple(x.shape))
            return super().forward(x)

    for window, resolution in ((0.5, 192), (0.75, 192), (1.0, 192), (0.75, 128)):
        Focus(Recording(), image, window=window, resolution=resolution, min_side=0).click(
            Fixed(logits), np.zeros((120, 120), dtype=bool), np.array([[50.0, 47.0]]), np.array([1]), None, memory=5)
    assert [shape[-2:] for shape in seen] == [(96, 96), (144, 144), (192, 192), (96, 96)]
    for shape, fraction in (((120, 120), 1.0), ((224, 224), 1.0), ((500, 300), 1.0), ((600, 400), 512 / 600),
                            ((775, 522), 0.75)):
        focus = Focus(Recording(), np.zeros((*shape, 3), dtype=np.uint8), window=0.75)
        assert focus.fraction == pytest.approx(fraction)  # at least 512 px, or the whole patch
        assert focus.size == focus_size(fraction)
    assert focus_size(0.3) == 64 and focus_size(0.01) == 16
    large = Focus(Recording(), np.zeros((1500, 1500, 3), dtype=np.uint8), window=0.75)
    assert (large.fraction, large.size) == (768 / 1500, 96)  # the window is capped at 768 px, same scale
    with pytest.raises(ValueError, match="focus window must be a positive"):
        focus_size(0.0)
    with pytest.raises(ValueError, match="focus resolution must be a positive"):
        Focus(Recording(), image, resolution=0)
    with pytest.raises(ValueError, match="smallest side"):
        Focus(Recording(), image, min_side=-1)


def test_a_click_the_refiner_ignores_falls_back_to_the_local_click() -> None:
    logits, image = _two_blobs()

    class Nothing(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.full_like(x[:, :1], -10.0)

    model = Fixed(logits)
    previous = np.zeros((120, 120), dtype=bool)
    mask = Focus(Nothing(), image, window=0.5, min_side=0).click(model, previous, np.array([[50.0, 47.0]]),
                                                      np.array([1]), None, memory=5)
    rows, cols = local_window(previous.shape, 50, 47)
    np.testing.assert_array_equal(mask, local_click(previous, logits[rows, cols], rows, cols, 50, 47, True))
    assert mask[50, 47]


def test_refiner_weights_round_trip_and_a_wrong_file_is_named(tmp_path) -> None:
    torch.manual_seed(0)
    refiner = FocusRefiner().eval()
    path = tmp_path / "refiner.pt"
    torch.save(refiner_payload(refiner), path)
    loaded = load_focus_refiner(path)
    x = torch.randn(1, FOCUS_CHANNELS, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), refiner(x))
    torch.save({"format": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(WeightsError, match="not a usable focus refiner file"):
        load_focus_refiner(tmp_path / "other.pt")


def test_the_bundled_refiner_loads() -> None:
    refiner = load_focus_refiner("cosas-default-focus")
    with torch.no_grad():
        out = refiner(torch.zeros(1, FOCUS_CHANNELS, 96, 96))
    assert out.shape == (1, 1, 96, 96) and torch.isfinite(out).all()


def test_recording_and_training_resume(tmp_path) -> None:
    rng = np.random.default_rng(0)
    for folder in ("images", "masks"):
        (tmp_path / folder).mkdir()
    for i in range(2):
        iio.imwrite(tmp_path / "images" / f"p{i}.png", rng.integers(0, 256, (64, 72, 3), dtype=np.uint8))
        gt = np.zeros((64, 72), dtype=np.uint8)
        gt[10 + i:40, 12:50 - i] = 255
        iio.imwrite(tmp_path / "masks" / f"p{i}.png", gt)
    torch.manual_seed(0)
    predictor = ClickPredictor(build_tiny_sam(decoder="enhanced"), "tiny", device="cpu")
    out = tmp_path / "records.npz"
    n = record_folder(predictor, None, tmp_path / "images", tmp_path / "masks", out,
                      starts=("degraded", "empty"), max_clicks=3, stop_iou=1.01)
    records = np.load(out)
    assert n == 2 * 2 * 2 and records["image"].shape == (n, RECORD_SIZE, RECORD_SIZE, 3)
    latest = records["points"][:, -1]
    assert np.all((latest >= 0) & (latest < RECORD_SIZE)) and np.all(records["labels"][:, -1] >= 0)

    big = tmp_path / "big"
    for folder in ("images", "masks"):
        (big / folder).mkdir(parents=True)
    iio.imwrite(big / "images" / "p.png", rng.integers(0, 256, (520, 530, 3), dtype=np.uint8))
    gt = np.zeros((520, 530), dtype=np.uint8)
    gt[100:400, 120:420] = 255
    iio.imwrite(big / "masks" / "p.png", gt)
    n_big = record_folder(predictor, None, big / "images", big / "masks", tmp_path / "big.npz",
                          starts=("degraded",), max_clicks=3, stop_iou=1.01)
    assert n_big == 3  # above GLOBAL_FIRST_CLICK_MAX_SIDE the refiner sees the first click too

    run = tmp_path / "run"
    train_refiner([out], run, steps=2, batch_size=2, checkpoint_every=2)
    assert torch.load(run / "last.pt", weights_only=True)["step"] == 2
    train_refiner([out], run, steps=3, batch_size=2, checkpoint_every=2)
    assert torch.load(run / "last.pt", weights_only=True)["step"] == 3


def test_records_of_a_chosen_window_and_size_train_at_a_chosen_size(tmp_path) -> None:
    for folder in ("images", "masks"):
        (tmp_path / folder).mkdir()
    rng = np.random.default_rng(1)
    iio.imwrite(tmp_path / "images" / "p.png", rng.integers(0, 256, (64, 72, 3), dtype=np.uint8))
    gt = np.zeros((64, 72), dtype=np.uint8)
    gt[8:40, 20:60] = 255
    iio.imwrite(tmp_path / "masks" / "p.png", gt)
    torch.manual_seed(0)
    predictor = ClickPredictor(build_tiny_sam(decoder="enhanced"), "tiny", device="cpu")
    out = tmp_path / "whole.npz"
    n = record_folder(predictor, None, tmp_path / "images", tmp_path / "masks", out,
                      starts=("empty",), max_clicks=3, stop_iou=1.01, window=1.0, size=48)
    records = np.load(out)
    assert records["image"].shape == (n, 48, 48, 3) and n == 2  # the first click took the whole prediction
    # a window of the whole side covers the whole 64x72 image: every record is the whole ground truth
    whole = F.interpolate(torch.from_numpy(gt.astype(np.float32))[None, None], size=(48, 48), mode="bilinear",
                          align_corners=False, antialias=True)[0, 0].numpy()
    assert np.abs(records["gt"][0].astype(np.float32) - whole).max() <= 1
    for points, labels in zip(records["points"], records["labels"]):  # the latest click, in record pixels
        r, c = points[-1]
        assert gt[int((r + 0.5) * 64 / 48), int((c + 0.5) * 72 / 48)] == 255 * int(labels[-1])
    run = tmp_path / "run"
    refiner = train_refiner([out], run, steps=1, batch_size=2, size=32)
    with torch.no_grad():
        assert refiner(torch.zeros(1, FOCUS_CHANNELS, 32, 32)).shape == (1, 1, 32, 32)
    for bad in ({"window": 0.0}, {"window": 1.5}, {"size": 8}):
        with pytest.raises(ValueError, match="record"):
            record_folder(predictor, None, tmp_path / "images", tmp_path / "masks", tmp_path / "bad.npz",
                          starts=("empty",), max_clicks=1, **bad)


class Whole(Fixed):
    """`Fixed`, also asked for its whole map (a global click's second pass)."""

    def predict(self, points_rc, labels, mask_prompt, *, window=None):
        if window is None:
            self.windows.append(None)
            return ClickPrediction(self.logits.copy(), None)
        return super().predict(points_rc, labels, mask_prompt, window=window)


def test_a_global_refined_click_also_takes_the_sure_prediction_beyond_its_reach() -> None:
    """With the focus refiner a global click is the refined local click, and beyond the box that
    click may change (`Focus.reach`) the pixels whose logit is at least GLOBAL_MARGIN from the
    threshold take the model's prediction, except those set by hand; a local click leaves them."""
    shape = (800, 800)
    logits = np.full(shape, -8.0, np.float32)
    logits[90:110, 90:110] = 8.0  # under the click
    logits[700:760, 700:760] = 8.0  # sure foreground far away
    logits[700:760, 20:80] = LOGIT_THRESHOLD + GLOBAL_MARGIN - 0.5  # foreground, but unsure
    logits[20:80, 700:760] = 8.0  # sure, but set to background by hand
    hand = np.zeros(shape, bool)
    hand[20:80, 700:760] = True
    focus = Focus(CoarseCopy(), np.zeros((*shape, 3), np.uint8))
    context = ClickContext(np.zeros(shape, bool), (Click(100, 100, True),), auto_prob=None, untouched=False,
                           hand_set=hand)
    rows, cols = focus.reach(100, 100)
    assert rows.stop < 700 and cols.stop < 700
    local = ModelCorrector(Whole(logits), focus=focus).correct(context)
    global_ = ModelCorrector(Whole(logits), effect="global", focus=focus).correct(context)
    assert local[100, 100] and local[95:105, 95:105].all()
    np.testing.assert_array_equal(global_[rows, cols], local[rows, cols])
    beyond = np.ones(shape, bool)
    beyond[rows, cols] = False
    assert not local[beyond].any()
    np.testing.assert_array_equal(global_[beyond], _box(shape, 700, 760, 700, 760)[beyond])


def _box(shape, r0, r1, c0, c1) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m[r0:r1, c0:c1] = True
    return m


def test_a_global_click_within_one_focus_window_needs_no_second_pass() -> None:
    """On a patch the click's reach covers (at most FOCUS_MIN_SIDE px), nothing lies beyond it: a
    global click is the local one and asks the model for its window only."""
    shape = (224, 224)
    logits = np.full(shape, -8.0, np.float32)
    logits[90:110, 90:110] = 8.0
    model = Whole(logits)
    focus = Focus(CoarseCopy(), np.zeros((*shape, 3), np.uint8))
    context = ClickContext(np.zeros(shape, bool), (Click(100, 100, True),), auto_prob=None, untouched=False)
    global_ = ModelCorrector(model, effect="global", focus=focus).correct(context)
    np.testing.assert_array_equal(global_, ModelCorrector(Whole(logits), focus=focus).correct(context))
    assert len(model.windows) == 1 and model.windows[0] == (slice(0, 224), slice(0, 224))
