"""What one click's decoding is: the interface of the click decoders and what a prediction returns.

Two decoders implement `ClickDecoding`: `models.fast_decoder.FastClickDecoder` (the decoder's
arithmetic re-associated for one image and few clicks, the shipped path) and
`models.eager_decoder.EagerClickDecoder` (the decoder modules as written, the reference).
``predictor.ClickPredictor`` holds one of them and never asks which.

No torch at import: `LOGIT_THRESHOLD` and `ClickPrediction` are read by pure-NumPy modules
(``refine``, ``batch``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from torch import Tensor

__all__ = [
    "LOGIT_THRESHOLD",
    "PROB_THRESHOLD",
    "TOKEN_PIXELS",
    "ClickDecoding",
    "ClickPrediction",
    "TokenRegion",
    "check_block_in_region",
]

#: The protocol's rule "prediction = probability > 0.49" (RITM's ``pred_thr``).
PROB_THRESHOLD = 0.49
#: The same rule on logits.
LOGIT_THRESHOLD = math.log(PROB_THRESHOLD / (1.0 - PROB_THRESHOLD))

#: Each image token becomes its own ``TOKEN_PIXELS x TOKEN_PIXELS`` block of low-resolution
#: logits (the output upscaling's two stride-2 transposed convolutions).
TOKEN_PIXELS = 4
#: ``(rows, cols)`` unit-step slices of the image token grid.
TokenRegion = tuple[slice, slice]


@dataclass(frozen=True)
class ClickPrediction:
    """What ``ClickPredictor.predict`` returns for the clicks it was shown.

    Attributes:
        logits: float32 logits at full resolution: ``(H, W)`` for the whole image, or
            ``(rows.stop - rows.start, cols.stop - cols.start)`` for a window.
        next_prompt: ``(1, 256, 256)`` float32 low-resolution logits, the mask prompt of the next
            click; ``None`` for a window (only the window's tokens were upscaled).
        window: the ``(rows, cols)`` image slices ``logits`` covers, ``None`` for the whole image.
    """

    logits: np.ndarray
    next_prompt: np.ndarray | None
    window: tuple[slice, slice] | None = None

    @property
    def mask(self) -> np.ndarray:
        """The prediction, ``logits > LOGIT_THRESHOLD``: bool, the shape of ``logits``."""
        return self.logits > LOGIT_THRESHOLD


def check_block_in_region(token_rows: slice, token_cols: slice, region: TokenRegion) -> None:
    """``ValueError`` unless the token block ``[token_rows, token_cols]`` lies inside ``region``."""
    if not (region[0].start <= token_rows.start < token_rows.stop <= region[0].stop
            and region[1].start <= token_cols.start < token_cols.stop <= region[1].stop):
        raise ValueError(f"the token block {token_rows}, {token_cols} is not inside the context {region}")


class ClickDecoding(Protocol):
    """A mask decoder's per-click path for one image at a time (inference only, under
    ``torch.inference_mode``).

    Shapes: image embedding and positional encoding ``(1, C, h, w)`` float32; clicks ``(1, N, 2)``
    float32 ``(x, y)`` in SAM's resized frame with ``(1, N)`` int64 labels (1 positive, 0
    negative); mask prompt ``(1, 1, 4h, 4w)`` float32 logits or ``None``.
    """

    def set_image(self, image_embedding: Tensor, image_pe: Tensor) -> None:
        """Take the image encoder's embedding and the dense positional encoding; compute the
        prompt-independent terms once (an enhanced decoder's image context)."""

    def low_res_logits(self, coords_xy: Tensor, labels: Tensor, mask_input: Tensor | None = None) -> Tensor:
        """The single-mask output's low-resolution logits, ``(1, 1, 4h, 4w)`` float32
        (``multimask_output=False``)."""

    def low_res_block(
        self,
        coords_xy: Tensor,
        labels: Tensor,
        mask_input: Tensor | None,
        token_rows: slice,
        token_cols: slice,
        context: TokenRegion | None = None,
    ) -> Tensor:
        """The low-resolution logits of the image tokens ``[token_rows, token_cols]`` only,
        ``(1, 1, TOKEN_PIXELS * rows, TOKEN_PIXELS * cols)`` float32. Without a ``context`` the
        attention sees every token (the same rows and columns of `low_res_logits`); with one,
        ``(rows, cols)`` token slices holding the block, only that region's tokens: the decoder on
        the embedding, positional encoding and dense prompt cropped to it."""
