"""How a click changes the mask: only the region under the click, or that and, elsewhere, what
the model is sure of.

On a patch with many tumour regions a click should correct the region it was placed in and
leave the rest of the mask alone; otherwise a click can undo what is right elsewhere (the
click model's global prediction is often worse than the mask it starts from) and a pathologist's
brush edits would be overwritten. :func:`mask_after_click` implements both behaviours:

- ``"local"``: the first click on a mask nobody has edited may take the model's whole prediction
  (it refines the automatic mask everywhere; ``correctors.FIRST_CLICK`` says when: by default
  on small patches only); every other click changes only one connected
  region inside a window around it: a positive click adds the pixels connected to it whose
  logit is at least ``min(logit at the click, LOGIT_THRESHOLD)``, a negative click removes the
  pixels connected to it whose logit is at most ``max(logit at the click, LOGIT_THRESHOLD)``.
  The threshold moves to the clicked pixel's logit where the model did not flip it, so a
  click always changes its own pixel (a magic wand on the model's logits), and the window
  keeps that change local.
- ``"global"``: the same, and beyond the click's window every pixel whose logit is at least
  ``GLOBAL_MARGIN`` from the threshold takes the model's prediction (except pixels set by hand).
  The model's whole prediction as the mask (RITM's protocol) lost mean IoU with more clicks
  (``benchmarks/global_effect.md``).

A local click reads the model's logits inside its window only, so :func:`click_mask` asks the
model for just that window (``predict(..., window=...)``), which spares it upscaling the rest.
The model is shown only the latest ``CLICK_MEMORY`` clicks; the earlier ones live on in the mask
prompt, made from the mask.

Coordinates are ``(row, col)``; masks are ``(H, W)`` ``bool``, logits ``(H, W)`` float.
"""

from __future__ import annotations

from typing import Literal, Protocol

import numpy as np
from skimage.segmentation import flood

from ..models.click_decoding import LOGIT_THRESHOLD, ClickPrediction

__all__ = [
    "CLICK_MEMORY",
    "CONFIDENT_MARGIN",
    "CONTEXT_MARGIN",
    "FOCUS_MAX_SIDE",
    "FOCUS_MIN_SIDE",
    "FOCUS_RESOLUTION",
    "FOCUS_WINDOW",
    "GLOBAL_MARGIN",
    "LOCAL_WINDOW",
    "ClickEffect",
    "ClickLogits",
    "mask_after_click",
    "click_mask",
    "confident_elsewhere",
    "local_click",
    "local_window",
    "shown_clicks",
]

#: Side of the square a local click may change, as a fraction of the image's longer side
#: (270 px on a 1500x1500 patch). Chosen on held-out training images (weights/README.md).
LOCAL_WINDOW = 0.18

#: Side of a refined click's focus window (``napari_cosas.inference.focus``), a fraction of the longer image
#: side. Chosen on held-out training images (``benchmarks/focus_window_scaled.md``).
FOCUS_WINDOW = 0.75

#: The largest side, in pixels, of a focus window: on a larger patch the window is this many pixels
#: (a smaller fraction of the side, seen by the refiner at the same scale). A click's time grows
#: with its window's pixels: on a 1500x1500 patch a window of 0.75 (1125 px) made a click in a real
#: viewer 2.1x slower than 0.5 (``benchmarks/viewer_click_focus_window_uncapped.md``). The held-out and test
#: images (224 and 775 px) are below the cap, so it changes nothing measured there.
FOCUS_MAX_SIDE = 768

#: The smallest side, in pixels, of a focus window: on a patch whose longer side is at most this, the
#: window is the whole patch (seen by the refiner at ``FOCUS_RESOLUTION`` pixels), as the first click
#: takes the whole prediction there (``correctors.GLOBAL_FIRST_CLICK_MAX_SIDE``). On the held-out
#: 224-px EBHI patches the whole patch took 1.37 clicks off the sum of NoC@80/85/90 against 0.75 of
#: it (95 % CI -2.89 to -0.68); on the 775-px GlaS patches the whole patch was no better than 0.75
#: (``benchmarks/focus_window_scaled.md``), and 0.75 of their side is above this minimum.
FOCUS_MIN_SIDE = 512

#: The focus refiner's pixels per longer image side: a focus window of ``w`` of the side is
#: resampled to about ``FOCUS_RESOLUTION * w`` pixels (``focus.focus_size``), the image scale the
#: refiner was trained at (96 pixels for 0.5 of the side). A larger window is then seen larger,
#: not coarser; on the held-out training images that is what made larger windows pay
#: (``benchmarks/focus_window_scaled.md``).
FOCUS_RESOLUTION = 192

#: How far from the threshold (in logits) the focus refiner's output must be for a change away
#: from the click's connected region to be pasted back (``napari_cosas.inference.focus``). Chosen
#: on held-out training images (``benchmarks/focus_paste.md``).
CONFIDENT_MARGIN = 1.0

#: For a local click's window the click model's decoder attends to the window's image tokens and
#: this many tokens around them (``ClickPredictor``'s ``context_margin``; ``None``: every token).
#: Chosen on held-out training images (``benchmarks/attention_context.md``: no NoC worse than with
#: every token); on a 1500x1500 patch the decoder sees 48x48 of the 64x64 tokens and a focus-refined
#: click is 1.42x faster (``benchmarks/focus_click.md``).
CONTEXT_MARGIN: int | None = 8

#: How many of the latest clicks the click model is shown (each click is a decoder token; the
#: earlier ones are kept by the mask prompt). The default model was trained on sessions of at most
#: 5 clicks; 5 was chosen on held-out training images (``benchmarks/click_memory.md``).
CLICK_MEMORY = 5

#: How far from the threshold (in logits) the click model's whole prediction must be for a global
#: click to change a pixel beyond the click's own window (|logit - LOGIT_THRESHOLD| >= 3: a
#: probability above 0.95 or below 0.05). Chosen on held-out training images
#: (``benchmarks/global_effect.md``): on GlaS a margin of 1 or 2 cost 1.40 or 0.33 clicks (sum of
#: NoC@80/85/90) against the local effect, 3 cost 0.07 (one click on one image), 4 none; 3 is the
#: smallest within the noise, so that a global click still changes what the model is sure of.
GLOBAL_MARGIN = 3.0

ClickEffect = Literal["global", "local"]


def local_window(shape: tuple[int, int], row: int, col: int, fraction: float = LOCAL_WINDOW) -> tuple[slice, slice]:
    """The ``(rows, cols)`` slices of the square of side ``fraction * max(shape)`` centred on the
    click, cut at the image border (at least the clicked pixel)."""
    half = int(fraction * max(shape)) // 2
    return (
        slice(max(0, row - half), min(shape[0], row + half + 1)),
        slice(max(0, col - half), min(shape[1], col + half + 1)),
    )


class ClickLogits(Protocol):
    """The click model's logits for the clicks it is shown (``predictor.ClickPredictor``
    implements it).

    Points are ``(N, 2)`` float ``(row, col)``, labels ``(N,)`` int (1 positive, 0 negative), the
    mask prompt is the mask's low-res logits (``mask_to_prompt``) or ``None``.
    """

    def predict(
        self,
        points_rc: np.ndarray,
        labels: np.ndarray,
        mask_prompt: np.ndarray | None,
        *,
        window: tuple[slice, slice] | None = None,
    ) -> ClickPrediction:
        """``(H, W)`` float32 logits and the low-res logits for the next prompt; with a ``window``
        ``(rows, cols)``, the full-resolution float32 logits of ``[rows, cols]`` only."""


def click_mask(
    model: ClickLogits,
    previous: np.ndarray,
    points_rc: np.ndarray,
    labels: np.ndarray,
    mask_input: np.ndarray | None,
    *,
    effect: ClickEffect = "local",
    start_from_prediction: bool = False,
    window: float = LOCAL_WINDOW,
    memory: int | None = CLICK_MEMORY,
    keep: np.ndarray | None = None,
) -> np.ndarray:
    """Ask ``model`` for what the latest click (the last of ``points_rc``) needs and apply it.

    A local click on an edited mask reads only its window's logits; the global effect and the
    first click on an unedited mask read the whole prediction. The model is shown the last
    ``memory`` clicks (``None``: all). Other arguments as in `mask_after_click`.

    Returns:
        The ``(H, W)`` bool mask after the click.
    """
    previous = np.asarray(previous, dtype=bool)
    points_rc, labels = shown_clicks(points_rc, labels, memory)
    row, col = (int(v) for v in points_rc[-1])
    positive = bool(labels[-1])
    if effect == "local" and not start_from_prediction:
        _check_click(previous.shape, row, col, window)
        rows, cols = local_window(previous.shape, row, col, window)
        near = model.predict(points_rc, labels, mask_input, window=(rows, cols)).logits
        return local_click(previous, near, rows, cols, row, col, positive)
    logits = model.predict(points_rc, labels, mask_input).logits
    return mask_after_click(previous, logits, row, col, positive, effect=effect,
                            start_from_prediction=start_from_prediction, window=window, keep=keep)


def shown_clicks(points_rc: np.ndarray, labels: np.ndarray, memory: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The last ``memory`` of the ``(N, 2)`` ``(row, col)`` clicks and their ``(N,)`` labels, the
    ones the click model is shown (``None``: all)."""
    if memory is not None and memory < 1:
        raise ValueError(f"memory must be at least 1 click (or None for all), got {memory}")
    shown = slice(-memory, None) if memory is not None else slice(None)
    return np.asarray(points_rc)[shown], np.asarray(labels)[shown]


def local_click(
    previous: np.ndarray, near: np.ndarray, rows: slice, cols: slice, row: int, col: int, positive: bool
) -> np.ndarray:
    """The ``"local"`` effect given only the window's logits.

    Args:
        previous: ``(H, W)`` bool mask the click changes.
        near: logits of the window ``previous[rows, cols]`` (same shape).
        rows, cols: the window (`local_window`); ``(row, col)`` lies inside it.

    Returns:
        ``(H, W)`` bool mask, a new array: ``previous`` with the flooded region set to ``positive``.
    """
    if near.shape != previous[rows, cols].shape:
        raise ValueError(f"window logits are {near.shape} but the window is {previous[rows, cols].shape}")
    value = near[row - rows.start, col - cols.start]
    if positive:
        candidates = near >= min(value, LOGIT_THRESHOLD)
    else:
        candidates = near <= max(value, LOGIT_THRESHOLD)
    region = flood(candidates, (row - rows.start, col - cols.start), connectivity=1)
    mask = previous.copy()
    mask[rows, cols][region] = positive
    return mask


def _check_click(shape: tuple[int, ...], row: int, col: int, window: float) -> None:
    if not (0 <= row < shape[0] and 0 <= col < shape[1]):
        raise ValueError(f"click (row {row}, col {col}) is outside the {shape} mask")
    if not window > 0:
        raise ValueError(f"window must be a positive fraction of the image side, got {window}")


def mask_after_click(
    previous: np.ndarray,
    logits: np.ndarray,
    row: int,
    col: int,
    positive: bool,
    *,
    effect: ClickEffect = "local",
    start_from_prediction: bool = False,
    window: float = LOCAL_WINDOW,
    keep: np.ndarray | None = None,
) -> np.ndarray:
    """The mask after a click.

    Args:
        previous: ``(H, W)`` bool mask before the click.
        logits: ``(H, W)`` float logits the model predicted for all clicks so far.
        row, col: pixel of the latest click.
        positive: whether the click marks foreground.
        effect: ``"local"`` or ``"global"`` (see the module docstring).
        start_from_prediction: start from the model's whole prediction instead of ``previous``
            (the first click on an unedited mask).
        window: the click's window's side as a fraction of the longer image side.
        keep: for ``"global"``, ``(H, W)`` bool pixels the changes beyond the window leave alone
            (set by hand), or ``None``.

    Returns:
        ``(H, W)`` bool mask, a new array.
    """
    previous = np.asarray(previous, dtype=bool)
    logits = np.asarray(logits)
    if previous.shape != logits.shape:
        raise ValueError(f"mask is {previous.shape} but logits are {logits.shape}; they must match")
    _check_click(previous.shape, row, col, window)
    if effect not in ("global", "local"):
        raise ValueError(f'effect must be "global" or "local", got {effect!r}')
    start = logits > LOGIT_THRESHOLD if start_from_prediction else previous
    rows, cols = local_window(previous.shape, row, col, window)
    mask = local_click(start, logits[rows, cols], rows, cols, row, col, positive)
    if effect == "global" and not start_from_prediction:
        confident_elsewhere(mask, logits, rows, cols, keep)
    return mask


def confident_elsewhere(
    mask: np.ndarray, logits: np.ndarray, rows: slice, cols: slice, keep: np.ndarray | None = None
) -> np.ndarray:
    """Set, in place, the pixels of ``mask`` outside ``[rows, cols]`` whose logit is at least
    `GLOBAL_MARGIN` from the threshold to the prediction (``logits > LOGIT_THRESHOLD``), except
    those in ``keep``: what a global click changes beyond its own window.

    Args:
        mask: ``(H, W)`` bool mask after the click's own change; modified and returned.
        logits: ``(H, W)`` float logits of the click model's whole prediction.
        rows, cols: the part the click's own change covers (left as it is).
        keep: ``(H, W)`` bool pixels left alone (set by hand), or ``None``.
    """
    if logits.shape != mask.shape:
        raise ValueError(f"mask is {mask.shape} but logits are {logits.shape}; they must match")
    sure = np.abs(logits - LOGIT_THRESHOLD) >= GLOBAL_MARGIN
    sure[rows, cols] = False
    if keep is not None:
        sure &= ~keep
    mask[sure] = logits[sure] > LOGIT_THRESHOLD
    return mask
