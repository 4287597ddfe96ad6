"""Brush strokes on the dock widget's mask layer, handed to the session as undoable edits.

A stroke made while no job runs is taken at once. One made while a job runs waits (the job will
write a new mask into the layer): when the job's mask arrives, the pixels brushed meanwhile are
put back on top of it (:meth:`BrushEdits.painted_since`, :meth:`BrushEdits.keep`); after a job
that showed no new mask, the layer is taken as it is (:meth:`BrushEdits.take_waiting`).
Masks are ``(H, W)`` bool.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._widget_layers import PatchLayers
from .interaction.patch import Patch
from .interaction.session import AnnotationSession


class BrushEdits:
    """The mask layer's brush strokes and the session.

    Args:
        session: the widget's session (its current patch is the one shown).
        layers: the widget's layers (the mask layer, and whether they are writing it).
        busy: whether a job runs.
        changed: called after a stroke changed the current patch's mask.
    """

    def __init__(
        self, session: AnnotationSession, layers: PatchLayers, *, busy: Callable[[], bool], changed: Callable[[], None]
    ) -> None:
        self.session = session
        self.layers = layers
        self.waiting = False  # brush strokes made while a job ran, not yet in the session
        self._busy = busy
        self._changed = changed

    def on_paint(self) -> None:
        """A brush stroke (or napari's labels undo) on the mask layer."""
        if self._busy():
            self.waiting = True  # taken once the job's result is shown
            return
        self.sync()

    def sync(self) -> None:
        """Hand brush edits of the mask layer to the session (not while a job runs)."""
        patch, layer = self.session.current, self.layers.mask_layer
        if (
            patch is None or layer is None or self._busy() or self.layers.writing
            or layer.data.shape != patch.shape
        ):
            return
        if self.session.sync_mask(patch, layer.data):
            self._changed()

    def take_waiting(self) -> None:
        """After a job that showed no new mask: the strokes made during it, as they are."""
        if self.waiting:
            self.waiting = False
            self.sync()

    def painted_since(self, patch: Patch) -> np.ndarray | None:
        """``(H, W)`` bool: the pixels brushed since the layer last showed ``patch.mask``, or
        ``None`` (no stroke while a job ran, or another patch shown)."""
        layer = self.layers.mask_layer
        if not self.waiting or patch is not self.session.current or layer is None:
            return None
        self.waiting = False
        shown = patch.mask if patch.mask is not None else np.zeros(patch.shape, dtype=bool)
        changed = (layer.data > 0) != shown
        return changed if changed.any() else None

    def keep(self, patch: Patch, painted: np.ndarray | None) -> None:
        """Put brush strokes made while a job ran back on top of the job's new mask (an undoable
        brush edit), so that the new mask does not overwrite them."""
        if painted is None:
            return
        layer_mask = self.layers.mask_layer.data > 0
        merged = patch.mask.copy() if patch.mask is not None else np.zeros(patch.shape, dtype=bool)
        merged[painted] = layer_mask[painted]
        self.session.sync_mask(patch, merged)
