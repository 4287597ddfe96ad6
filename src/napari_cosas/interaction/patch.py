"""One patch of a session: its image, automatic probabilities, interaction and exports, and the
state they put it in (``new`` / ``segmented`` / ``corrected`` / ``exported``); a computed click
of it (`ClickResult`). ``session.AnnotationSession`` holds the patches and moves them on.

Images are ``(H, W, 3)`` uint8, masks ``(H, W)`` bool, probabilities ``(H, W)`` float32.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from ..io.exports import ExportResult
from ..io.image_io import ImageFormatError, image_sha256, load_image
from ..models.click_decoding import PROB_THRESHOLD
from .clicks import Click, Clicker
from .engine import ClickRecord, ClickStep, Interaction

__all__ = ["ClickResult", "Patch", "PatchState"]

PatchState = Literal["new", "segmented", "corrected", "exported"]

@dataclass
class Patch:
    """One image and its annotation state.

    ``auto_prob``: ``(H, W)`` float32 automatic probabilities, ``None`` before segmenting.
    ``interaction``: the mask, clicks and history (``None`` before segmenting or clicking).
    """

    name: str
    path: Path | None = None
    image: np.ndarray | None = None
    auto_prob: np.ndarray | None = None
    interaction: Interaction | None = None
    exports: list[ExportResult] = field(default_factory=list)
    exported_state: int | None = None
    _sha256: str | None = None

    def load(self) -> np.ndarray:
        """The image, ``(H, W, 3)`` uint8, read from ``path`` on first use."""
        if self.image is None:
            if self.path is None:
                raise ImageFormatError(f"patch {self.name!r} has neither pixels nor a file")
            self.image = load_image(self.path)
        return self.image

    @property
    def shape(self) -> tuple[int, int]:
        image = self.load()
        return image.shape[0], image.shape[1]

    @property
    def sha256(self) -> str:
        if self._sha256 is None:
            self._sha256 = image_sha256(self.load())
        return self._sha256

    @property
    def auto_mask(self) -> np.ndarray | None:
        """``(H, W)`` bool automatic mask (probability > 0.49), or ``None``."""
        return None if self.auto_prob is None else self.auto_prob > PROB_THRESHOLD

    @property
    def mask(self) -> np.ndarray | None:
        """``(H, W)`` bool current mask, ``None`` before segmenting or clicking."""
        return None if self.interaction is None else self.interaction.mask

    @property
    def clicker(self) -> Clicker:
        """The clicks so far (an empty ``Clicker`` before any)."""
        return Clicker() if self.interaction is None else self.interaction.clicker

    @property
    def clicks(self) -> list[ClickRecord]:
        """The clicks so far with their times and effects."""
        return [] if self.interaction is None else self.interaction.records

    @property
    def brush_edited(self) -> bool:
        return self.interaction is not None and self.interaction.edited

    @property
    def state(self) -> PatchState:
        interaction = self.interaction
        if interaction is None:
            return "new"
        if self.exported_state == interaction.state_id:
            return "exported"
        if interaction.untouched:
            return "new" if self.auto_prob is None else "segmented"
        return "corrected"

    @property
    def unsaved(self) -> bool:
        return self.state == "corrected"

    def contains(self, row: float, col: float) -> bool:
        rows, cols = self.shape
        return 0 <= row < rows and 0 <= col < cols


@dataclass(frozen=True)
class ClickResult:
    """A computed click of ``patch`` (:meth:`AnnotationSession.compute_click`), not yet applied."""

    patch: Patch
    interaction: Interaction
    step: ClickStep

    @property
    def click(self) -> Click:
        return self.step.click

    @property
    def mask(self) -> np.ndarray:
        """``(H, W)`` bool mask after the click."""
        return self.step.mask

    @property
    def latency_s(self) -> float:
        return self.step.record.latency_s
