"""The click-training simulator: views in SAM's padded frame and simulated click sessions on them.

A `TrainView` is one augmented image in SAM's input frame (resized so that its longest side is
``img_size``, 1024, padded bottom-right) with its target at the decoder's output resolution
(`LOW_RES`, 256 x 256). `ClickSimulator` runs a session on a batch of views: the first click from
the target or from a degraded "automatic" mask's errors, then rounds where the model's own
prediction gives the next click (RITM's rule at 256 x 256) and its logits the next mask prompt.
Its clicks sit on the low-resolution grid and are converted to SAM's ``(x, y)`` with the
block-centre rule ``(c + 0.5) * 4 - 0.5`` (`ClickSimulator.decode`). ``click_training`` trains on
what it simulates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam
from segment_anything.utils.transforms import ResizeLongestSide
from torch import Tensor

from ..inference.predictor import clipped_logits
from ..inference.refine import LOCAL_WINDOW
from ..interaction.clicks import next_click
from ..models.click_decoding import LOGIT_THRESHOLD
from .mask_degrade import degrade_mask

if TYPE_CHECKING:
    from .click_training import ClickTrainConfig, EncoderSplit

#: Side of the decoder's low-resolution output, where targets live and clicks are simulated.
LOW_RES = 256


@dataclass
class TrainView:
    """One augmented view in SAM's frame: the model input or cached features, and targets.

    ``source``: ``(3, S, S)`` uint8 resized + padded image, or the cached encoder output.
    ``gt``: ``(256, 256)`` float32 target fraction per low-res cell; ``valid``: ``(256, 256)``
    bool, False on the padding.
    """

    source: Tensor
    gt: Tensor
    valid: Tensor


def prepare_view(image: np.ndarray, mask: np.ndarray, img_size: int) -> tuple[Tensor, Tensor, Tensor]:
    """Resize (longest side ``img_size``) and pad an image and its mask into SAM's frame.

    Returns the ``(3, S, S)`` uint8 image, the ``(256, 256)`` float32 target fraction and the
    ``(256, 256)`` bool validity map.
    """
    transform = ResizeLongestSide(img_size)
    resized = transform.apply_image(image)
    rows, cols = resized.shape[:2]
    img = torch.zeros(3, img_size, img_size, dtype=torch.uint8)
    img[:, :rows, :cols] = torch.from_numpy(resized).permute(2, 0, 1)
    m = torch.zeros(1, 1, img_size, img_size)
    m[..., :rows, :cols] = F.interpolate(
        torch.from_numpy(mask.astype(np.float32))[None, None], (rows, cols), mode="nearest"
    )
    gt = F.adaptive_avg_pool2d(m, LOW_RES)[0, 0]
    valid = torch.zeros(LOW_RES, LOW_RES, dtype=torch.bool)
    scale = LOW_RES / img_size
    valid[: math.ceil(rows * scale), : math.ceil(cols * scale)] = True
    return img, gt, valid


def _first_click(gt: np.ndarray, pred: np.ndarray, rng: np.random.Generator, from_errors: bool) -> tuple:
    """First click: RITM's rule on the errors of ``pred``, or a random pixel of the target."""
    if from_errors or not gt.any() or rng.random() < 0.5:
        c = next_click(gt, pred)
        return c.row, c.col, c.is_positive
    rows, cols = np.nonzero(gt)
    k = int(rng.integers(len(rows)))
    return int(rows[k]), int(cols[k]), True


class ClickSimulator:
    """Simulated click sessions on batches of views (clicks at 256 x 256, RITM rule)."""

    def __init__(self, model: Sam, split: EncoderSplit, config: ClickTrainConfig, rng: np.random.Generator):
        self.model = model
        self.split = split
        self.config = config
        self.rng = rng
        self.scale = model.image_encoder.img_size / LOW_RES

    def embed(self, views: Sequence[TrainView]) -> Tensor:
        """``(B, 256, 64, 64)`` image embeddings (gradient flows where the scope trains)."""
        source = torch.stack([v.source.float() for v in views])  # float16 caches: CPU autocast refuses them
        if self.split.caches:
            return self.split.rest(source)
        return self.model.image_encoder(self.model.preprocess(source))

    def context(self, embedding: Tensor) -> Tensor:
        """The decoder's prompt-independent image context ``(B, 256, 64, 64)`` (its global
        attention over the image tokens; the embedding itself for a plain decoder)."""
        return self.model.mask_decoder.image_context(embedding, self.model.prompt_encoder.get_dense_pe())

    def decode(
        self, context: Tensor, points: list[list[tuple]], mask_input: Tensor | None
    ) -> Tensor:
        """Low-res logits ``(B, 1, 256, 256)`` for per-view click lists ``(row, col, positive)``,
        from the image `context`."""
        coords = torch.tensor(
            [[[(c + 0.5) * self.scale - 0.5, (r + 0.5) * self.scale - 0.5] for r, c, _ in pts] for pts in points],
            dtype=torch.float32,
            device=context.device,
        )
        labels = torch.tensor([[int(p) for _, _, p in pts] for pts in points], device=context.device)
        sparse, dense = self.model.prompt_encoder(points=(coords, labels), boxes=None, masks=mask_input)
        logits, _ = self.model.mask_decoder.forward_with_context(
            context, self.model.prompt_encoder.get_dense_pe(), sparse, dense, multimask_output=False
        )
        return logits

    def session(self, views: Sequence[TrainView], context: Tensor) -> tuple[list[list[tuple]], Tensor | None]:
        """Run the no-gradient part of a session on the image `context` (detached); return the
        clicks and the last mask prompt."""
        gts = [(v.gt > 0.5).cpu().numpy() for v in views]
        valid = [v.valid.cpu().numpy() for v in views]
        auto = self.rng.random() < self.config.p_auto_start
        mask_input = None
        if auto:
            probs = [degrade_mask(g, self.rng) * m for g, m in zip(gts, valid)]
            preds = [p > 0.49 for p in probs]
            prompt = torch.from_numpy(np.stack(probs)).to(context.device)[:, None]
            mask_input = clipped_logits(prompt)
        else:
            preds = [np.zeros_like(g) for g in gts]
        points = [[_first_click(g, p, self.rng, auto)] for g, p in zip(gts, preds)]
        rounds = int(self.rng.integers(0, self.config.max_rounds + 1))
        mask_prompts = self.config.p_mask_prompt > 0 and self.rng.random() < self.config.p_mask_prompt
        with torch.no_grad():
            for _ in range(rounds):
                logits = self.decode(context, points, mask_input)
                pred = (logits[:, 0] > LOGIT_THRESHOLD).cpu().numpy()
                for k, pts in enumerate(points):
                    not_clicked = np.ones_like(gts[k])
                    for r, c, _ in pts:
                        not_clicked[r, c] = False
                    click = next_click(gts[k], pred[k] & valid[k], not_clicked, ignore=~valid[k])
                    pts.append((click.row, click.col, click.is_positive))
                mask_input = clipped_logits((logits > LOGIT_THRESHOLD).float()) if mask_prompts else logits.float()
        return points, mask_input

    def loss_weights(self, views: Sequence[TrainView], points: list[list[tuple]]) -> Tensor:
        """``(B, 256, 256)`` float loss weights: 1 on the valid pixels, ``1 + click_focus`` inside
        the local click window (``refine.LOCAL_WINDOW``) around each view's last click."""
        weights = torch.stack([v.valid for v in views]).float()
        if self.config.click_focus > 0:
            half = int(LOCAL_WINDOW * LOW_RES) // 2
            for k, pts in enumerate(points):
                r, c, _ = pts[-1]
                window = weights[k, max(0, r - half): r + half + 1, max(0, c - half): c + half + 1]
                window *= 1 + self.config.click_focus
        return weights
