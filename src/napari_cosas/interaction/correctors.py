"""How a click becomes a mask: the `Corrector` protocol, what it sees (`ClickContext`), and the
click model's corrector (`ModelCorrector`: the next mask prompt, the first-click rule, the focus
refiner). ``interaction.Interaction`` drives them; ``references`` holds the reference correctors.

Coordinates are ``(row, col)``; masks are ``(H, W)`` bool; probabilities ``(H, W)`` float32;
mask prompts ``(1, 256, 256)`` float32 low-res logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np

from ..inference.refine import (
    CLICK_MEMORY,
    LOCAL_WINDOW,
    ClickEffect,
    ClickLogits,
    click_mask,
    confident_elsewhere,
    shown_clicks,
)
from .clicks import Click, click_labels, points_rc

if TYPE_CHECKING:
    from ..inference.focus import Focus

__all__ = [
    "FIRST_CLICK",
    "GLOBAL_FIRST_CLICK_MAX_SIDE",
    "ClickContext",
    "Corrector",
    "FirstClick",
    "ModelCorrector",
    "PromptModel",
]

FirstClick = Literal["global", "local", "by-size"]
#: What the first local click on an unedited mask may change (``ModelCorrector.first_click``).
#: Chosen on held-out training images (``benchmarks/focus_first_click.md``).
FIRST_CLICK: FirstClick = "by-size"
#: With ``"by-size"`` the first click takes the model's whole prediction on a patch whose longer
#: side is at most this many pixels (seen by the click model at twice its size or more, like the
#: 224-px EBHI patches, where it mends the automatic mask everywhere), and stays local on a larger
#: one (the 775-px GlaS patches, where the whole prediction spoils as much as it mends).
GLOBAL_FIRST_CLICK_MAX_SIDE = 512


@dataclass(frozen=True)
class ClickContext:
    """What a corrector sees of the state before a click.

    Attributes:
        previous: ``(H, W)`` bool mask before the click.
        clicks: every click so far, the new one last.
        auto_prob: ``(H, W)`` float32 automatic probabilities the object started from, or ``None``.
        untouched: no click or edit changed the starting mask yet (the new click is the first
            on a mask nobody edited).
        hand_set: ``(H, W)`` bool pixels the user set by hand (brush edits, an imported mask)
            since the last reset, or ``None``: changes away from the click's own region (the
            focus refiner's, a global click's) leave them as they are.
    """

    previous: np.ndarray
    clicks: tuple[Click, ...]
    auto_prob: np.ndarray | None
    untouched: bool
    hand_set: np.ndarray | None = None

    @property
    def click(self) -> Click:
        return self.clicks[-1]

    def points_rc(self) -> np.ndarray:
        """``(N, 2)`` float64 ``(row, col)`` of the clicks."""
        return points_rc(self.clicks)

    def labels(self) -> np.ndarray:
        """``(N,)`` int64 labels of the clicks, 1 positive, 0 negative."""
        return click_labels(self.clicks)


class Corrector(Protocol):
    """How a click changes the mask. ``effect`` names it in click records (``"local"``, ...)."""

    effect: str

    def correct(self, context: ClickContext) -> np.ndarray:
        """The ``(H, W)`` bool mask after ``context.click``."""


class PromptModel(ClickLogits, Protocol):
    """A click model that also turns a mask into a mask prompt (``predictor.ClickPredictor``)."""

    def mask_to_prompt(self, prob: np.ndarray) -> np.ndarray:
        """``(H, W)`` probabilities or bool mask -> ``(1, 256, 256)`` float32 prompt logits."""


@dataclass
class ModelCorrector:
    """A click through the click model (``refine.click_mask``).

    The mask prompt is none for an empty mask, the automatic probabilities while the starting
    mask is untouched, else the mask itself.

    Args:
        model: the click predictor, its image set.
        effect: ``"local"`` or ``"global"`` (``refine.mask_after_click``; with ``focus``, a global
            click is the focus-refined click and the model's confident prediction beyond it).
        window: side of a local click's window, a fraction of the longer image side.
        memory: how many of the latest clicks the model is shown (``None``: all).
        first_click: what the first click on an unedited mask may change:
            ``"global"`` takes the model's whole prediction, ``"local"`` only the region under it,
            ``"by-size"`` the first on a patch of longer side at most `GLOBAL_FIRST_CLICK_MAX_SIDE`
            pixels, the second on a larger one.
        focus: the focus refiner on this image (``focus.Focus``): every click but a first one
            taking the whole prediction is refined in its focus window.
    """

    model: PromptModel
    effect: ClickEffect = "local"
    window: float = LOCAL_WINDOW
    memory: int | None = CLICK_MEMORY
    first_click: FirstClick = FIRST_CLICK
    focus: Focus | None = None

    def prompt(self, context: ClickContext) -> np.ndarray | None:
        """The ``(1, 256, 256)`` mask prompt of ``context``'s click (see the class docstring)."""
        if not context.previous.any():
            return None
        if context.untouched and context.auto_prob is not None:
            return self.model.mask_to_prompt(context.auto_prob)
        return self.model.mask_to_prompt(context.previous)

    def takes_whole_prediction(self, shape: tuple[int, int]) -> bool:
        """Whether the first click on an unedited ``(H, W)`` mask takes the model's whole prediction."""
        if self.first_click == "by-size":
            return max(shape) <= GLOBAL_FIRST_CLICK_MAX_SIDE
        return self.first_click == "global"

    def correct(self, context: ClickContext) -> np.ndarray:
        start_from_prediction = context.untouched and self.takes_whole_prediction(context.previous.shape)
        points, labels, prompt = context.points_rc(), context.labels(), self.prompt(context)
        if self.focus is None or start_from_prediction:
            return click_mask(self.model, context.previous, points, labels, prompt, effect=self.effect,
                              start_from_prediction=start_from_prediction, window=self.window,
                              memory=self.memory, keep=context.hand_set)
        mask = self.focus.click(self.model, context.previous, points, labels, prompt, memory=self.memory,
                                local=self.window, keep=context.hand_set)
        if self.effect == "local":
            return mask
        rows, cols = self.focus.reach(context.click.row, context.click.col, self.window)
        if (rows.stop - rows.start, cols.stop - cols.start) == mask.shape:
            return mask  # nothing lies beyond the click's reach (a patch within one focus window)
        # the whole prediction beyond the click's reach: a second decoder pass, on every token
        # (the focus click's pass attends to the tokens around its window only)
        logits = self.model.predict(*shown_clicks(points, labels, self.memory), prompt).logits
        return confident_elsewhere(mask, logits, rows, cols, context.hand_set)
