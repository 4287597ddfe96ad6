"""Pieces shared by segmenter and click training: the loss and the learning-rate schedule."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..models.checkpoints import read_weights_file


def segmentation_loss(logits: Tensor, target: Tensor, valid: Tensor) -> Tensor:
    """Binary cross-entropy plus soft Dice over valid pixels.

    Args:
        logits: ``(B, 1, H, W)`` logits.
        target: ``(B, H, W)`` float targets in ``[0, 1]`` (fractions allowed).
        valid: ``(B, H, W)`` bool or float weights; 0 on padding.
    """
    logits = logits[:, 0].float()
    w = valid.float()
    bce = (F.binary_cross_entropy_with_logits(logits, target, reduction="none") * w).sum() / w.sum().clamp(min=1)
    prob = torch.sigmoid(logits) * w
    dice = 1 - (2 * (prob * target).sum((1, 2)) + 1) / (prob.sum((1, 2)) + (target * w).sum((1, 2)) + 1)
    return bce + dice.mean()


def warmup_cosine(optimizer: torch.optim.Optimizer, steps: int, warmup: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``steps``."""

    def factor(step: int) -> float:
        return min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def load_resume_checkpoint(
    path: Path,
    config: dict,
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    device: torch.device,
) -> dict[str, Any] | None:
    """Restore optimiser, schedule and torch RNG from a run's ``last.pt``; ``None`` if absent.

    Returns the checkpoint (step, trained parameters and the trainer's own entries). A
    checkpoint written with other settings is refused rather than silently mixed in; only how
    often it is saved (``checkpoint_every``) may change between the run and its resumption.
    """
    if not path.exists():
        return None
    ckpt = read_weights_file(path, device)
    if _settings(ckpt["config"]) != _settings(config):
        raise ValueError(f"{path} was written by a run with other settings; use another --out folder.")
    optimizer.load_state_dict(ckpt["optimizer"])
    schedule.load_state_dict(ckpt["schedule"])
    torch.set_rng_state(ckpt["torch_rng"])
    return ckpt


def _settings(config: dict) -> dict:
    """A run's settings that must match for it to resume."""
    return {k: v for k, v in config.items() if k != "checkpoint_every"}
