"""A small U-Net that re-predicts the mask in a square crop around the latest click.

FocalClick's focus refinement (Chen et al., CVPR 2022), on the decoder side of the click model:
after the SAM-style decoder has predicted its coarse logits for the clicks, the refiner looks at
the crop around the latest click at (close to) native resolution and predicts the mask there
again, from

====  =========================================================================
ch    input, all ``(S, S)`` resampled from the crop
====  =========================================================================
0-2   RGB, normalised with the ImageNet mean and standard deviation
3     the mask before the click (0 / 1)
4     the click model's coarse logits, ``tanh(logit / 4)``
5-6   the latest click, a disk of ones (channel 5 if positive, 6 if negative)
7-8   the earlier clicks inside the crop (positive, negative disks)
====  =========================================================================

The trunk of the click model is not involved: the refiner is trained on its own, with the trunk
and the decoder frozen (``napari_cosas.training.focus_training``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["FOCUS_CHANNELS", "FOCUS_FORMAT", "FocusRefiner", "refiner_from_payload", "refiner_payload"]

#: Input channels (see the module docstring).
FOCUS_CHANNELS = 9


def _block(in_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_dim, out_dim, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_dim),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_dim, out_dim, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_dim),
        nn.ReLU(inplace=True),
    )


class FocusRefiner(nn.Module):
    """A U-Net at half resolution with a full-resolution head:
    ``(B, FOCUS_CHANNELS, S, S)`` float32 -> ``(B, 1, S, S)`` logits.

    A strided stem halves the input, ``len(widths)`` levels (each halving again) run at ``S / 2``
    and below, and the head sees the upsampled features beside the input itself, so edges are
    placed at full resolution. ``S`` must be divisible by ``2 ** len(widths)``.
    """

    def __init__(self, widths: tuple[int, ...] = (24, 48, 64, 96), stem: int = 16, head: int = 16) -> None:
        super().__init__()
        self.widths = tuple(widths)
        self.stem = nn.Sequential(
            nn.Conv2d(FOCUS_CHANNELS, stem, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(stem),
            nn.ReLU(inplace=True),
        )
        self.down = nn.ModuleList()
        in_dim = stem
        for width in self.widths:
            self.down.append(_block(in_dim, width))
            in_dim = width
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList(
            _block(self.widths[i + 1] + self.widths[i], self.widths[i]) for i in reversed(range(len(self.widths) - 1))
        )
        self.head = nn.Sequential(
            nn.Conv2d(self.widths[0] + FOCUS_CHANNELS, head, 3, padding=1, bias=False),
            nn.BatchNorm2d(head),
            nn.ReLU(inplace=True),
            nn.Conv2d(head, 1, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        skips = []
        y = self.stem(x)
        for i, block in enumerate(self.down):
            y = block(y if i == 0 else self.pool(y))
            skips.append(y)
        y = skips.pop()
        for block in self.up:
            skip = skips.pop()
            y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            y = block(torch.cat([y, skip], dim=1))
        y = F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.head(torch.cat([y, x], dim=1))


#: ``format`` of a refiner weights file (``refiner_payload`` / ``refiner_from_payload``).
FOCUS_FORMAT = "napari-cosas-focus/1"


def refiner_payload(refiner: FocusRefiner) -> dict:
    """What a refiner weights file holds: its format, architecture and float32 state."""
    return {
        "format": FOCUS_FORMAT,
        "widths": list(refiner.widths),
        "stem": refiner.stem[0].out_channels,
        "head": refiner.head[0].out_channels,
        "state": {k: v.detach().cpu().clone() for k, v in refiner.state_dict().items()},
    }


def refiner_from_payload(payload: object) -> FocusRefiner:
    """The refiner a weights file's payload describes, in eval mode.

    Raises:
        ValueError: the payload is not a ``FOCUS_FORMAT`` file, or its state does not fit.
    """
    if not isinstance(payload, dict) or payload.get("format") != FOCUS_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(f"not a focus refiner file (format {found!r}, expected {FOCUS_FORMAT!r})")
    refiner = FocusRefiner(tuple(payload["widths"]), stem=int(payload["stem"]), head=int(payload["head"]))
    refiner.load_state_dict(payload["state"], strict=True)
    return refiner.eval()
