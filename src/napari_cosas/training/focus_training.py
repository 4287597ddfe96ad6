"""Training the focus refiner (``napari_cosas.inference.focus``) on this CPU.

Two stages, both on the ``fit`` training images only:

1. :func:`record_folder` plays simulated click sessions (RITM-placed clicks, the product's
   interaction engine) with the frozen click model, from the automatic segmenter's mask, from a
   degraded ground truth (``mask_degrade``) and from an empty mask. Before every click that is
   not the first on an untouched mask it stores the click model's coarse logits, the image, the
   mask before the click, the ground truth and the clicks in a square of ``window`` (by default
   ``RECORD_WINDOW``) of the longer side around the click, resampled to ``size`` (``RECORD_SIZE``)
   pixels. Playing the sessions with a
   refiner already in the loop (``refiner=``) records the masks that refiner leads to.
2. :func:`train_refiner` fits the refiner on random sub-squares of those records (half to all of
   their side, so records of 0.5 of the image side teach focus windows of 0.25 to 0.5), with
   dihedral flips, resampled to ``size`` (``FOCUS_SIZE``) pixels.

Records are ``.npz`` files of arrays: ``image (N, S, S, 3) uint8``, ``previous`` and ``gt``
``(N, S, S) uint8`` (0-255, the resampled fraction), ``logits (N, S, S) float16``, ``points (N, K, 2)
float32`` ``(row, col)`` in record pixels (NaN-padded, the latest click last) and ``labels (N, K)
int8`` (-1 padding).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from ..evaluation.metrics import iou
from ..inference.focus import FOCUS_SIZE, Focus, focus_inputs, focus_window
from ..inference.refine import shown_clicks
from ..interaction.clicks import next_click
from ..interaction.correctors import ClickContext, ModelCorrector
from ..interaction.engine import Interaction
from ..io.files import atomic_write
from ..io.image_io import load_image, load_mask, pair_images_and_masks
from ..models.focus_refiner import FocusRefiner
from .common import segmentation_loss, warmup_cosine
from .mask_degrade import degrade_mask

if TYPE_CHECKING:
    from ..inference.model_bundle import Segmenter
    from ..inference.predictor import ClickPredictor

__all__ = ["RECORD_SIZE", "RECORD_WINDOW", "record_folder", "train_refiner"]

log = logging.getLogger(__name__)

#: Side of a recorded square, a fraction of the longer image side.
RECORD_WINDOW = 0.5
#: Side, in pixels, a record is resampled to.
RECORD_SIZE = 192
#: Most clicks kept per record (the latest ones).
MAX_POINTS = 24
STARTS = ("auto", "degraded", "empty")


@dataclass
class _Recorder:
    """A corrector that stores the record of each click the refiner would see (all but a first
    click taking the whole prediction), then lets ``inner`` correct."""

    inner: ModelCorrector
    image: np.ndarray
    gt: np.ndarray
    records: list[dict]
    window: float = RECORD_WINDOW
    size: int = RECORD_SIZE

    @property
    def effect(self) -> str:
        return self.inner.effect

    def correct(self, context: ClickContext) -> np.ndarray:
        if not (context.untouched and self.inner.takes_whole_prediction(context.previous.shape)):
            self.records.append(self._record(context))
        return self.inner.correct(context)

    def _record(self, context: ClickContext) -> dict:
        click = context.click
        rows, cols = focus_window(context.previous.shape, click.row, click.col, self.window)
        points, labels = context.points_rc(), context.labels()
        logits = self.inner.model.predict(*shown_clicks(points, labels, self.inner.memory),
                                          self.inner.prompt(context), window=(rows, cols)).logits
        h, w = rows.stop - rows.start, cols.stop - cols.start
        stack = torch.from_numpy(np.concatenate([
            self.image[rows, cols].astype(np.float32),
            context.previous[rows, cols, None].astype(np.float32) * 255,
            self.gt[rows, cols, None].astype(np.float32) * 255,
            logits[..., None].astype(np.float32),
        ], axis=-1)).permute(2, 0, 1)[None]
        out = F.interpolate(stack, size=(self.size, self.size), mode="bilinear", align_corners=False,
                            antialias=self.size < max(h, w))[0].permute(1, 2, 0).numpy()
        pts = np.full((MAX_POINTS, 2), np.nan, dtype=np.float32)
        lab = np.full(MAX_POINTS, -1, dtype=np.int8)
        keep = slice(-MAX_POINTS, None)
        local = (points[keep] - (rows.start, cols.start) + 0.5) * (self.size / h, self.size / w) - 0.5
        pts[-len(local):] = local
        lab[-len(local):] = labels[keep]
        return {
            "image": np.clip(np.rint(out[..., :3]), 0, 255).astype(np.uint8),
            "previous": np.clip(np.rint(out[..., 3]), 0, 255).astype(np.uint8),
            "gt": np.clip(np.rint(out[..., 4]), 0, 255).astype(np.uint8),
            "logits": out[..., 5].astype(np.float16),
            "points": pts,
            "labels": lab,
        }


def record_folder(
    predictor: ClickPredictor,
    segmenter: Segmenter,
    images_dir: Path,
    masks_dir: Path,
    out: Path,
    *,
    images: int | None = None,
    starts: tuple[str, ...] = STARTS,
    max_clicks: int = 10,
    stop_iou: float = 0.95,
    refiner: FocusRefiner | None = None,
    seed: int = 0,
    window: float = RECORD_WINDOW,
    size: int = RECORD_SIZE,
) -> int:
    """Play click sessions on (a seeded sample of ``images`` of) a folder and write their records
    to ``out`` (``.npz``, appended when missing as numpy does; written atomically); returns the
    number of records. Each record is the square of ``window`` of the longer image side around a
    click, resampled to ``size`` pixels."""
    if not 0 < window <= 1:
        raise ValueError(f"the record window must be a fraction of the image side in (0, 1], got {window}")
    if size < 16:
        raise ValueError(f"records must be at least 16 pixels on a side, got {size}")
    rng = np.random.default_rng(seed)
    pairs = sorted(pair_images_and_masks(images_dir, masks_dir), key=lambda p: p.name)
    if images is not None and images < len(pairs):
        pairs = [pairs[i] for i in sorted(rng.choice(len(pairs), images, replace=False))]
    records: list[dict] = []
    start_time = time.perf_counter()
    for n, pair in enumerate(pairs):
        image = load_image(pair.image)
        gt = load_mask(pair.mask, shape=image.shape[:2]) > 0
        predictor.set_image(image)
        auto_prob = segmenter.predict_proba(image) if "auto" in starts else None
        for start in starts:
            if start == "auto":
                interaction = Interaction(gt.shape, auto_prob=auto_prob)
            elif start == "degraded":
                interaction = Interaction(gt.shape, mask=degrade_mask(gt, rng))
            else:
                interaction = Interaction(gt.shape)
            inner = ModelCorrector(predictor, focus=None if refiner is None else Focus(refiner, image))
            recorder = _Recorder(inner, image, gt, records, window, size)
            for _ in range(max_clicks):
                if iou(interaction.mask, gt) >= stop_iou:
                    break
                click = next_click(gt, interaction.mask, interaction.clicker.not_clicked_mask(gt.shape))
                interaction.click(recorder, click)
        log.info("%d/%d images, %d records, %.0f s", n + 1, len(pairs), len(records), time.perf_counter() - start_time)
    arrays = {key: np.stack([r[key] for r in records]) for key in records[0]}
    target = out if out.name.endswith(".npz") else out.with_name(out.name + ".npz")  # numpy's naming rule
    atomic_write(target, lambda fh: np.savez(fh, **arrays))
    return len(records)


class _Records:
    """All records of some ``.npz`` files, drawn with each file equally often."""

    def __init__(self, paths: list[Path]) -> None:
        self.sets = [dict(np.load(p)) for p in paths]

    def draw(self, rng: np.random.Generator, batch: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch: ``(B, FOCUS_CHANNELS, size, size)`` inputs and ``(B, size, size)`` targets."""
        xs, ys = [], []
        for _ in range(batch):
            data = self.sets[rng.integers(len(self.sets))]
            i = int(rng.integers(len(data["image"])))
            xs_i, y_i = _sample(data, i, rng, size)
            xs.append(xs_i)
            ys.append(y_i)
        return torch.stack(xs), torch.stack(ys)


def _sample(data: dict, i: int, rng: np.random.Generator, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Record ``i`` cut to a random sub-square (half to all of its side) that contains the latest
    click, flipped at random, as the refiner's input and its target."""
    full = data["image"].shape[1]
    points = data["points"][i]
    keep = data["labels"][i] >= 0
    points, labels = points[keep], data["labels"][i][keep]
    side = int(rng.integers(full // 2, full + 1))
    r, c = points[-1]
    r0 = int(np.clip(rng.integers(int(r) - side + 8, int(r) - 7 + 1), 0, full - side))
    c0 = int(np.clip(rng.integers(int(c) - side + 8, int(c) - 7 + 1), 0, full - side))
    window = (slice(r0, r0 + side), slice(c0, c0 + side))
    rgb = torch.from_numpy(data["image"][i][window]).permute(2, 0, 1).float() / 255.0
    previous = torch.from_numpy(data["previous"][i][window].astype(np.float32) / 255.0)
    logits = torch.from_numpy(data["logits"][i][window].astype(np.float32))
    gt = torch.from_numpy(data["gt"][i][window].astype(np.float32) / 255.0)
    x = focus_inputs(rgb, previous, logits, points - (r0, c0), labels, size)
    y = F.interpolate(gt[None, None], size=(size, size), mode="bilinear", align_corners=False,
                      antialias=size < side)[0, 0]
    if rng.random() < 0.5:
        x, y = x.flip(-1), y.flip(-1)
    if rng.random() < 0.5:
        x, y = x.flip(-2), y.flip(-2)
    if rng.random() < 0.5:
        x, y = x.transpose(-1, -2), y.transpose(-1, -2)
    return x, (y > 0.5).float()


def train_refiner(
    records: list[Path],
    out: Path,
    *,
    steps: int = 3000,
    batch_size: int = 16,
    lr: float = 2e-3,
    size: int = FOCUS_SIZE,
    seed: int = 0,
    checkpoint_every: int = 250,
    start: FocusRefiner | None = None,
) -> FocusRefiner:
    """Fit a :class:`FocusRefiner` on ``records``, from random weights or from ``start``'s;
    ``out/last.pt`` is written every ``checkpoint_every`` steps and a run resumes from it.
    Returns the trained refiner."""
    torch.manual_seed(seed)
    refiner = FocusRefiner() if start is None else start
    optimizer = torch.optim.AdamW(refiner.parameters(), lr=lr, weight_decay=1e-4)
    schedule = warmup_cosine(optimizer, steps, warmup=min(100, steps // 10 + 1))
    out.mkdir(parents=True, exist_ok=True)
    last = out / "last.pt"
    step = 0
    if last.exists():
        ckpt = torch.load(last, map_location="cpu", weights_only=True)
        refiner.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        schedule.load_state_dict(ckpt["schedule"])
        step = ckpt["step"]
    data = _Records(records)
    rng = np.random.default_rng(seed + step)
    refiner.train()
    start = time.perf_counter()
    losses: list[float] = []
    while step < steps:
        x, y = data.draw(rng, batch_size, size)
        loss = segmentation_loss(refiner(x), y, torch.ones_like(y))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        step += 1
        losses.append(loss.item())
        if step % 50 == 0:
            log.info("step %d/%d loss %.4f (%.2f s/step)", step, steps, float(np.mean(losses[-50:])),
                     (time.perf_counter() - start) / len(losses))
        if step % checkpoint_every == 0 or step == steps:
            state = {"model": refiner.state_dict(), "optimizer": optimizer.state_dict(),
                     "schedule": schedule.state_dict(), "step": step}
            atomic_write(last, lambda fh: torch.save(state, fh))
    refiner.eval()
    return refiner

