"""Rein segmenter training: Rein + head (and the backbone when it is not frozen) on 512 crops.

Training data are folders of images and masks paired by file stem, the layout the widget's
export writes, so corrected masks feed straight back. Each folder pair is one "dataset" and
datasets are sampled equally often, whatever their sizes. Validation runs the sliding-window
inference of :meth:`ReinSegmenter.predict_proba` and reports the COSAS score.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ..evaluation import metrics
from ..io.files import atomic_write
from ..io.image_io import load_image, load_mask, pair_images_and_masks
from ..models.click_decoding import PROB_THRESHOLD
from ..models.devices import resolve_device
from ..models.registry import load_backbone_state, load_segmenter
from ..models.segmenter import ReinSegmenter, SegmenterConfig, build_segmenter, normalise_batch
from .augment import random_crop, random_dihedral, stain_jitter
from .common import load_resume_checkpoint, segmentation_loss, warmup_cosine

log = logging.getLogger(__name__)

Sample = tuple[np.ndarray, np.ndarray]


@dataclass
class SegmenterTrainConfig:
    """Settings of a segmenter training run (stored in checkpoints so a run can resume)."""

    model: dict = field(default_factory=lambda: asdict(SegmenterConfig()))
    init_from: str | None = None
    steps: int = 2000
    batch_size: int = 4
    crop: int = 512
    lr: float = 1e-4
    backbone_lr: float = 1e-5
    weight_decay: float = 1e-4
    val_every: int = 500
    checkpoint_every: int = 250
    seed: int = 0


def load_pairs(images_dir: str | Path, masks_dir: str | Path, *, allow_lossy_masks: bool = False) -> list[Sample]:
    """All ``(image (H, W, 3) uint8, mask (H, W) bool)`` pairs of two folders, by file stem
    (``image_io.pair_images_and_masks``: an export folder gives each patch's latest complete export)."""
    out = []
    for pair in pair_images_and_masks(images_dir, masks_dir, allow_lossy_masks=allow_lossy_masks):
        image = load_image(pair.image)
        out.append((image, load_mask(pair.mask, shape=image.shape[:2]) > 0))
    return out


class CropStream(IterableDataset):
    """Endless random augmented crops, each dataset drawn equally often.

    Yields ``(crop, crop, 3)`` uint8 images, ``(crop, crop)`` float32 masks and valid maps
    (False on padding). Each DataLoader worker draws from its own seeded generator.
    """

    def __init__(self, datasets: Sequence[Sequence[Sample]], crop: int, seed: int) -> None:
        self.datasets = [d for d in datasets if len(d)]
        if not self.datasets:
            raise ValueError("no training images")
        self.crop = crop
        self.seed = seed

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        info = get_worker_info()
        rng = np.random.default_rng([self.seed, info.id if info is not None else 0])
        while True:
            data = self.datasets[int(rng.integers(len(self.datasets)))]
            image, mask = data[int(rng.integers(len(data)))]
            image, mask, ok = random_crop(image, mask, self.crop, rng)
            image = stain_jitter(image, rng)
            stacked = np.stack([mask, ok], axis=-1)
            image, stacked = random_dihedral(image, stacked, rng)
            yield image, stacked[..., 0].astype(np.float32), stacked[..., 1].astype(np.float32)


def validate(model: ReinSegmenter, samples: Sequence[Sample]) -> dict[str, float]:
    """Mean Dice, Jaccard and COSAS score of sliding-window predictions (probability > 0.49)."""
    scores = {"dice": [], "jaccard": [], "cosas_score": []}
    model.eval()
    for image, mask in samples:
        pred = model.predict_proba(image) > PROB_THRESHOLD
        scores["dice"].append(metrics.dice(pred, mask))
        scores["jaccard"].append(metrics.jaccard(pred, mask))
        scores["cosas_score"].append(metrics.cosas_score(pred, mask))
    return {k: float(np.mean(v)) for k, v in scores.items()}


def _load_trained_state(model: ReinSegmenter, state: dict[str, Tensor], source: str) -> None:
    expected = set(model.trainable_state_dict())
    missing, unexpected = expected - set(state), set(state) - expected
    if missing or unexpected:
        raise KeyError(
            f"{source} does not match this model: missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
        )
    model.load_state_dict(state, strict=False)


def initial_model(config: SegmenterTrainConfig) -> ReinSegmenter:
    """The model a run starts from, on the CPU.

    Without ``init_from``: a new segmenter (``config.model``) whose backbone holds the official
    weights ``backbone_weights`` (fetched from the registry), or random weights when that is
    ``None``. With ``init_from``: every parameter of that segmenter, its backbone included,
    whether this run freezes the backbone or not; the architecture is the checkpoint's, and
    this run sets only ``freeze_backbone`` and the sliding window.
    """
    model_config = SegmenterConfig.from_dict(config.model)
    if not config.init_from:
        weights = model_config.backbone_weights
        return build_segmenter(model_config, load_backbone_state(weights) if weights else None)
    init = load_segmenter(config.init_from)
    if init.config.backbone != model_config.backbone:
        raise ValueError(f"{config.init_from} holds a {init.config.backbone!r} segmenter, not "
                         f"{model_config.backbone!r}: pass --backbone {init.config.backbone}")
    official = init.config.backbone_weights if init.backbone_from_official_file else None
    if model_config.backbone_weights not in (None, official):
        raise ValueError(
            f"{config.init_from} brings its own backbone weights ("
            f"{official or 'trained with the segmenter'}), so --backbone-weights "
            f"{model_config.backbone_weights} cannot apply; leave it out"
        )
    model = build_segmenter(replace(
        init.config, freeze_backbone=model_config.freeze_backbone, crop=model_config.crop,
        stride=model_config.stride, backbone_weights=official,
    ))
    model.load_state_dict(init.state_dict())
    return model


def train_segmenter(
    datasets: Sequence[Sequence[Sample]],
    config: SegmenterTrainConfig,
    out_dir: str | Path,
    *,
    val: Sequence[Sample] = (),
    device: str = "auto",
    workers: int = 0,
    progress: Callable[[int, int, dict], None] | None = None,
) -> dict:
    """Train a segmenter; checkpoints in ``out_dir`` (``last.pt`` to resume, ``segmenter.pt`` to use).

    ``segmenter.pt`` is the best validation checkpoint when ``val`` is given (the ``init_from``
    model itself, validated as step 0, included), else the last one.
    ``workers`` DataLoader processes prepare augmented crops. Resuming restores weights,
    optimiser and schedule; the crop stream restarts with a seed derived from the step.
    Returns a summary with trainable parameters, median step time and validation history.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    torch.manual_seed(config.seed)
    model = initial_model(config).to(dev)
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    backbone_params = [p for n, p in trainable if n.startswith("backbone.backbone.")]
    other = [p for n, p in trainable if not n.startswith("backbone.backbone.")]
    groups = [{"params": other, "lr": config.lr}]
    if backbone_params:
        groups.append({"params": backbone_params, "lr": config.backbone_lr})
    optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
    warmup = min(200, max(1, config.steps // 10))
    schedule = warmup_cosine(optimizer, config.steps, warmup)
    history: list[dict] = []
    start = 0

    def validate_and_keep(step: int) -> dict[str, float]:
        """Validate, record, and save ``segmenter.pt`` when the score beats every earlier one."""
        scores = validate(model, val)
        if scores["cosas_score"] > max((h["cosas_score"] for h in history), default=-1.0):
            model.save(out_dir / "segmenter.pt")
        history.append({"step": step, **scores})
        return scores

    last = out_dir / "last.pt"
    ckpt = load_resume_checkpoint(last, asdict(config), optimizer, schedule, dev)
    if ckpt is not None:
        _load_trained_state(model, ckpt["state_dict"], str(last))
        start, history = ckpt["step"], ckpt["history"]
        log.info("resumed from %s at step %d", last, start)
    elif val and config.init_from:
        validate_and_keep(0)  # the starting model is a candidate too: fine-tuning never hands back a worse one
    stream = CropStream(datasets, config.crop, seed=config.seed * 100_003 + start)
    loader = iter(DataLoader(stream, batch_size=config.batch_size, num_workers=workers, persistent_workers=workers > 0))
    step_times, loss_value = [], float("nan")
    for step in range(start, config.steps):
        t0 = time.perf_counter()
        model.train()
        images, target, valid = next(loader)
        x = normalise_batch(images, model.config, dev)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            logits = model(x)
        loss = segmentation_loss(logits, target.to(dev), valid.to(dev))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], 1.0)
        optimizer.step()
        schedule.step()
        loss_value = float(loss.detach())
        step_times.append(time.perf_counter() - t0)
        done = step + 1
        info = {"loss": loss_value}
        if val and (done % config.val_every == 0 or done == config.steps):
            info.update(validate_and_keep(done))
        if progress is not None:
            progress(done, config.steps, info)
        if done % config.checkpoint_every == 0 or done == config.steps:
            checkpoint = {
                "config": asdict(config),
                "step": done,
                "state_dict": model.trainable_state_dict(),
                "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "history": history,
            }
            atomic_write(last, partial(torch.save, checkpoint))
    if not val:
        model.save(out_dir / "segmenter.pt")
    return {
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "total_parameters": sum(p.numel() for p in model.parameters()),
        "median_step_s": float(np.median(step_times)) if step_times else float("nan"),
        "final_loss": loss_value,
        "best_val_cosas_score": max(h["cosas_score"] for h in history) if history else None,
        "history": history,
    }
