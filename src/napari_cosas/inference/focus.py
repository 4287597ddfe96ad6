"""Focus refinement: a click re-predicts the crop around it at close to native resolution.

A local click (``refine.local_click``) floods the click model's coarse logits inside a small
window; where the coarse logits are wrong the flood is too. With a refiner
(:class:`~napari_cosas.models.focus_refiner.FocusRefiner`), a click instead

1. asks the click model for its coarse logits in the *focus window*, a square of side
   ``FOCUS_WINDOW`` of the longer image side (at least ``FOCUS_MIN_SIDE`` pixels, so the whole
   of a small patch; at most ``FOCUS_MAX_SIDE`` pixels) around the click, shifted to lie inside
   the image;
2. resamples the crop's image, mask, coarse logits and clicks to ``Focus.size`` pixels,
   ``FOCUS_RESOLUTION`` per longer image side (:func:`focus_size`), and lets the refiner predict
   the mask there (:func:`focus_inputs` builds its input);
3. pastes back, at the window's own resolution, the connected region (8-connectivity) of the
   refined mask's changes that contains the clicked pixel (a positive click adds it, a negative
   one removes it), then the refiner's changes in the window where it is confident, of either
   kind: its logit at least ``CONFIDENT_MARGIN`` from the threshold, except on pixels the user
   set by hand (``keep``: brush edits, an imported mask). Nothing outside the focus window changes.

The confident changes away from the click are what FocalClick's focus crop keeps too; on the
held-out training images they took 5 clicks off the sum of NoC@80/85/90 on GlaS and EBHI
against the connected region alone (``benchmarks/focus_paste.md``).

When the refiner leaves the clicked pixel as it was, the click falls back to the plain local
click, so a click always changes its own pixel.

Coordinates are ``(row, col)``; images ``(H, W, 3)`` uint8 RGB, masks ``(H, W)`` bool, logits
``(H, W)`` float32.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from ..models.click_decoding import LOGIT_THRESHOLD
from ..models.focus_refiner import FocusRefiner
from .refine import (
    CONFIDENT_MARGIN,
    FOCUS_MAX_SIDE,
    FOCUS_MIN_SIDE,
    FOCUS_RESOLUTION,
    FOCUS_WINDOW,
    LOCAL_WINDOW,
    ClickLogits,
    local_click,
    local_window,
    shown_clicks,
)

__all__ = ["CLICK_RADIUS", "FOCUS_SIZE", "Focus", "focus_inputs", "focus_size", "focus_window"]

#: Side, in pixels, of the squares the refiner is trained on (``training.focus_training``).
FOCUS_SIZE = 96
#: Radius, in refiner pixels, of a click's disk.
CLICK_RADIUS = 5.0

_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
_STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
_EIGHT = np.ones((3, 3), dtype=bool)


def focus_window(shape: tuple[int, int], row: int, col: int, fraction: float = FOCUS_WINDOW) -> tuple[slice, slice]:
    """The ``(rows, cols)`` slices of the square of side ``fraction * max(shape)`` (at least 8 px)
    that contains the click, centred on it where the image border allows (shifted inside the
    image, cut only where the image is narrower than the square)."""

    side = max(8, int(round(fraction * max(shape))))

    def span(centre: int, length: int) -> slice:
        extent = min(side, length)
        start = min(max(centre - extent // 2, 0), length - extent)
        return slice(start, start + extent)

    return span(row, shape[0]), span(col, shape[1])


def focus_size(window: float, resolution: int = FOCUS_RESOLUTION) -> int:
    """The side, in pixels, the refiner sees a focus window of ``window`` of the longer image side
    at: ``resolution * window`` rounded to a multiple of 16 (the refiner's stride), at least 16."""
    if not window > 0:
        raise ValueError(f"the focus window must be a positive fraction of the image side, got {window}")
    if not resolution > 0:
        raise ValueError(f"the focus resolution must be a positive number of pixels, got {resolution}")
    return max(16, 16 * round(resolution * window / 16))


def focus_inputs(
    rgb: torch.Tensor,
    previous: torch.Tensor,
    logits: torch.Tensor,
    points_rc: np.ndarray,
    labels: np.ndarray,
    size: int = FOCUS_SIZE,
) -> torch.Tensor:
    """The refiner's ``(FOCUS_CHANNELS, size, size)`` float32 input for one crop.

    Args:
        rgb: ``(3, h, w)`` the crop of the image, float32 in ``[0, 1]`` or uint8.
        previous: ``(h, w)`` float32 0 / 1, the mask before the click.
        logits: ``(h, w)`` float32 coarse logits of the click model.
        points_rc: ``(N, 2)`` float ``(row, col)`` of the clicks in crop pixels, the latest last
            (clicks outside the crop are ignored).
        labels: ``(N,)`` int, 1 positive, 0 negative.
        size: side of the square the crop is resampled to.

    The image is scaled to ``[0, 1]`` and normalised after the resampling, on ``size x size``
    pixels instead of ``h x w``: the resampling's weights sum to 1 at every output pixel, so
    the result is the same as normalising first.
    """
    h, w = previous.shape

    def resample(planes: torch.Tensor) -> torch.Tensor:
        return F.interpolate(planes[None].float(), size=(size, size), mode="bilinear", align_corners=False,
                             antialias=size < max(h, w))[0]

    image = resample(rgb)
    if rgb.dtype == torch.uint8:
        image = image / 255.0
    planes = [(image - _MEAN) / _STD, resample(previous[None]), resample(torch.tanh(logits[None] / 4.0))]
    disks = torch.zeros(4, size, size)
    grid_r = torch.arange(size, dtype=torch.float32)[:, None]
    grid_c = torch.arange(size, dtype=torch.float32)[None, :]
    scale = (size / h, size / w)
    last = len(points_rc) - 1
    for i, ((r, c), label) in enumerate(zip(np.asarray(points_rc, dtype=np.float64), np.asarray(labels))):
        rs, cs = (r + 0.5) * scale[0] - 0.5, (c + 0.5) * scale[1] - 0.5
        if not (-0.5 <= rs < size - 0.5 and -0.5 <= cs < size - 0.5):
            continue
        disk = ((grid_r - rs) ** 2 + (grid_c - cs) ** 2) <= CLICK_RADIUS**2
        channel = (0 if label else 1) + (0 if i == last else 2)
        disks[channel][disk] = 1.0
    return torch.cat([*planes, disks])


@dataclass
class Focus:
    """The refiner applied to the clicks on one image.

    Args:
        refiner: the trained refiner (in eval mode).
        image: ``(H, W, 3)`` uint8 RGB, the patch being corrected.
        window: side of the focus window, a fraction of the longer image side.
        resolution: the refiner's pixels per longer image side; it sees the window as a square of
            ``size = focus_size(fraction, resolution)`` pixels.
        min_side: the window's smallest side in pixels (the whole patch where that is smaller;
            0: no minimum).
        max_side: the window's largest side in pixels (``None``: no limit); ``fraction`` is the
            window's side as a fraction of the longer image side once both are applied.
        margin: the refiner's changes away from the click's connected region are pasted where
            its logit is at least this far from the threshold (``math.inf``: none of them).
    """

    refiner: FocusRefiner
    image: np.ndarray
    window: float = FOCUS_WINDOW
    margin: float = CONFIDENT_MARGIN
    resolution: int = FOCUS_RESOLUTION
    min_side: int = FOCUS_MIN_SIDE
    max_side: int | None = FOCUS_MAX_SIDE
    fraction: float = field(init=False)
    size: int = field(init=False)

    def __post_init__(self) -> None:
        if self.min_side < 0:
            raise ValueError(f"the focus window's smallest side must be 0 or more pixels, got {self.min_side}")
        longer = max(self.image.shape[:2])
        side = max(self.window * longer, min(longer, self.min_side))
        if self.max_side is not None:
            side = min(side, self.max_side)
        self.fraction = side / longer
        self.size = focus_size(self.fraction, self.resolution)

    def window_of(self, row: int, col: int) -> tuple[slice, slice]:
        """The ``(rows, cols)`` focus window of a click at ``(row, col)`` (`focus_window` at
        ``fraction``): nothing outside it changes."""
        return focus_window(self.image.shape[:2], row, col, self.fraction)

    def reach(self, row: int, col: int, local: float = LOCAL_WINDOW) -> tuple[slice, slice]:
        """The ``(rows, cols)`` box :meth:`click` may change: its focus window and the window of
        its fallback local click (``local`` of the longer side)."""
        f_rows, f_cols = self.window_of(row, col)
        l_rows, l_cols = local_window(self.image.shape[:2], row, col, local)
        return (slice(min(f_rows.start, l_rows.start), max(f_rows.stop, l_rows.stop)),
                slice(min(f_cols.start, l_cols.start), max(f_cols.stop, l_cols.stop)))

    def click(
        self,
        model: ClickLogits,
        previous: np.ndarray,
        points_rc: np.ndarray,
        labels: np.ndarray,
        mask_input: np.ndarray | None,
        *,
        memory: int | None,
        local: float = LOCAL_WINDOW,
        keep: np.ndarray | None = None,
    ) -> np.ndarray:
        """The ``(H, W)`` bool mask after the latest click (the last of ``points_rc``).

        Args:
            model: the click model, its image set; it is shown the last ``memory`` clicks.
            previous: ``(H, W)`` bool mask before the click.
            points_rc: ``(N, 2)`` float ``(row, col)`` of all clicks so far, labels ``(N,)``.
            mask_input: the model's mask prompt.
            local: the window of the fallback local click, a fraction of the longer side.
            keep: ``(H, W)`` bool pixels the refiner's confident changes away from the click's
                connected region must not touch (the ones the user set by hand), or ``None``.
        """
        if self.image.shape[:2] != previous.shape:
            raise ValueError(f"the focus image is {self.image.shape[:2]} but the mask is {previous.shape}")
        row, col = (int(v) for v in points_rc[-1])
        positive = bool(labels[-1])
        f_rows, f_cols = self.window_of(row, col)
        l_rows, l_cols = local_window(previous.shape, row, col, local)
        rows, cols = self.reach(row, col, local)
        near = model.predict(*shown_clicks(points_rc, labels, memory), mask_input, window=(rows, cols)).logits
        inner = (slice(f_rows.start - rows.start, f_rows.stop - rows.start),
                 slice(f_cols.start - cols.start, f_cols.stop - cols.start))
        before = previous[f_rows, f_cols]
        logits = self.refine(before, near[inner], points_rc - (f_rows.start, f_cols.start), labels, f_rows, f_cols)
        refined = logits > LOGIT_THRESHOLD
        seed = (row - f_rows.start, col - f_cols.start)
        if refined[seed] == positive and before[seed] != positive:
            changes = refined != before
            regions, _ = ndimage.label(changes, structure=_EIGHT)
            confident = changes & (np.abs(logits - LOGIT_THRESHOLD) >= self.margin)
            if keep is not None:
                confident &= ~keep[f_rows, f_cols]
            mask = previous.copy()
            window = mask[f_rows, f_cols]  # a view: writes go to `mask`
            window[regions == regions[seed]] = positive
            window[confident] = refined[confident]
            return mask
        near_local = near[l_rows.start - rows.start:l_rows.stop - rows.start,
                          l_cols.start - cols.start:l_cols.stop - cols.start]
        return local_click(previous, near_local, l_rows, l_cols, row, col, positive)

    @torch.no_grad()
    def refine(
        self, previous: np.ndarray, logits: np.ndarray, points_rc: np.ndarray, labels: np.ndarray,
        rows: slice, cols: slice,
    ) -> np.ndarray:
        """The refiner's ``(h, w)`` float32 logits for the focus window ``[rows, cols]`` (its
        ``previous`` mask and coarse ``logits``; clicks in window pixels)."""
        crop = torch.from_numpy(np.ascontiguousarray(self.image[rows, cols])).permute(2, 0, 1)
        x = focus_inputs(crop, torch.from_numpy(previous.astype(np.float32)),
                         torch.from_numpy(logits.astype(np.float32, copy=False)), points_rc, labels, self.size)
        out = self.refiner(x[None])
        return F.interpolate(out, size=previous.shape, mode="bilinear", align_corners=False)[0, 0].numpy()
