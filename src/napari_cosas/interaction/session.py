"""Per-patch annotation state, shared by the napari widget and ``demo`` (no napari / Qt here).

An :class:`AnnotationSession` holds a list of ``patch.Patch`` objects. Each patch moves through
the states ``new`` (nothing computed) -> ``segmented`` (automatic mask) -> ``corrected`` (clicks
or brush edits not yet exported) -> ``exported`` (written; any later change makes it
``corrected`` again, undoing back to the exported state makes it ``exported``). Corrections stay
in memory per patch when switching patches. A patch's mask, clicks and undo / redo history are
its :class:`~napari_cosas.interaction.engine.Interaction`, the engine ``evaluate`` and ``demo`` use too.

Work that takes time is split in two so that a front end can run it in a worker thread:
``compute_*`` methods read state and call the models (safe off the GUI thread, one at a time);
``apply_*`` methods mutate state (call them on the GUI thread). Which of those jobs a patch
needs next (its automatic mask, its click embedding) is :meth:`AnnotationSession.jobs_after`'s
to say. What an export writes and records is :mod:`napari_cosas.io.exports`'s (the outline:
:mod:`napari_cosas.io.geojson`); the models it uses are a :class:`~napari_cosas.inference.model_bundle.ModelBundle`.

Coordinates: clicks and masks use napari's ``(row, col)`` pixel order; the click model's
``(x, y)`` conversion happens in :mod:`napari_cosas.inference.predictor`.
Images are ``(H, W, 3)`` uint8, masks ``(H, W)`` bool, probabilities ``(H, W)`` float32.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from ..inference.model_bundle import ModelBundle
from ..inference.refine import ClickEffect
from ..io.exports import (
    ExportResult,
    content_sha256,
    mask_suffix,
    now_iso,
    reusable_export,
    sidecar_record,
    write_export,
)
from ..io.geojson import mask_to_geojson
from ..io.image_io import ImageFormatError, as_rgb_uint8, encode_image, list_images
from .clicks import Click
from .correctors import FIRST_CLICK, FirstClick, ModelCorrector
from .engine import ClickOutsideError, ClickRecord, Interaction, StaleClickError
from .patch import ClickResult, Patch

__all__ = [
    "AnnotationSession",
    "ClickOutsideError",
    "ClickRecord",
    "PatchEvent",
    "PatchJob",
]

#: Background work a front end runs for a patch: its automatic mask, its click embedding.
PatchJob = Literal["segment", "encode"]
#: What happened to a patch, for :meth:`AnnotationSession.jobs_after`.
PatchEvent = Literal["opened", "segmented", "mask set"]


class AnnotationSession:
    """Patches, the current one, the models and the session's click statistics.

    ``click_effect`` (``refine.mask_after_click``): ``"local"`` (default) changes only the region
    under each click once the mask has been clicked or brushed, so nothing annotated elsewhere
    is overwritten; ``"global"`` also changes, beyond the click's window, the pixels the model is
    sure of (brush edits excepted). ``first_click``: what the first click on the automatic mask may change
    (``correctors.ModelCorrector``).
    """

    def __init__(
        self,
        models: ModelBundle | None = None,
        click_effect: ClickEffect = "local",
        first_click: FirstClick = FIRST_CLICK,
    ) -> None:
        self.models = models if models is not None else ModelBundle()
        self.click_effect: ClickEffect = click_effect
        self.first_click: FirstClick = first_click
        self.patches: list[Patch] = []
        self.index = -1
        self.total_clicks = 0
        self.total_click_seconds = 0.0
        self._embedded: tuple[int, str] | None = None

    # -- patch list -------------------------------------------------------------------

    @property
    def current(self) -> Patch | None:
        return self.patches[self.index] if 0 <= self.index < len(self.patches) else None

    def add_files(self, paths: Sequence[str | os.PathLike]) -> list[Patch]:
        """Append patches for image files (read lazily); files already listed are skipped."""
        known = {p.path.resolve() for p in self.patches if p.path is not None}
        added = []
        for path in map(Path, paths):
            if path.resolve() in known:
                continue
            added.append(Patch(name=path.stem, path=path))
            known.add(path.resolve())
        self.patches.extend(added)
        return added

    def add_folder(self, folder: str | os.PathLike) -> list[Patch]:
        """Append every image directly in ``folder`` (sorted by name)."""
        return self.add_files(list_images(folder))

    def add_array(self, name: str, image: np.ndarray, path: str | os.PathLike | None = None) -> Patch:
        """Append a patch from pixels (e.g. an image layer); ``image`` is converted to RGB uint8."""
        patch = Patch(name=name, path=Path(path) if path else None, image=as_rgb_uint8(image, name=name))
        self.patches.append(patch)
        return patch

    def select(self, index: int) -> Patch:
        """Make patch ``index`` current, reading its image; on a read error nothing changes."""
        if not 0 <= index < len(self.patches):
            raise IndexError(f"no patch {index}; there are {len(self.patches)}")
        self.patches[index].load()
        self.index = index
        return self.patches[index]

    def step(self, delta: int) -> Patch | None:
        """Select the patch ``delta`` places away; ``None`` (and no change) past either end."""
        target = self.index + delta
        return self.select(target) if 0 <= target < len(self.patches) else None

    def set_models(self, models: ModelBundle) -> None:
        """Use other models (the next click embeds its patch again)."""
        self.models = models
        self._embedded = None

    # -- automatic mask and embedding ---------------------------------------------------

    def compute_segmentation(
        self, patch: Patch, progress: Callable[[int, int], None] | None = None
    ) -> np.ndarray:
        """``(H, W)`` float32 automatic probabilities (worker thread; no state change)."""
        return self.models.segmenter().predict_proba(patch.load(), progress=progress)

    def apply_segmentation(self, patch: Patch, prob: np.ndarray) -> None:
        """Start the patch over from the automatic mask (clicks and history cleared)."""
        prob = np.asarray(prob, dtype=np.float32)
        if prob.shape != patch.shape:
            raise ImageFormatError(
                f"automatic mask is {prob.shape} but patch {patch.name!r} is {patch.shape} (rows, cols)"
            )
        patch.auto_prob = prob
        patch.interaction = Interaction(patch.shape, auto_prob=prob)
        patch.exported_state = None

    def prepare_embedding(self, patch: Patch) -> None:
        """Encode ``patch`` with the click model unless it is already set (worker thread)."""
        predictor = self.models.predictor()
        key = (id(predictor), patch.sha256)
        if self._embedded != key or not predictor.is_image_set:
            predictor.set_image(patch.load())
            self._embedded = key

    def jobs_after(self, patch: Patch, event: PatchEvent, *, segment_new: bool = True) -> list[PatchJob]:
        """The background jobs ``patch`` needs after ``event``, in order; a front end runs them
        (``compute_segmentation`` / ``prepare_embedding`` in a worker) and asks again after each.

        * ``"opened"`` (the patch is shown): ``"segment"`` for a new patch (nothing computed or
          edited) when ``segment_new``, else none;
        * ``"segmented"`` (its automatic mask was applied): ``"encode"`` while it is the current
          patch and untouched (a brush stroke during the segmentation, or another patch shown
          meanwhile: none), so that its first click finds the embedding ready;
        * ``"mask set"`` (a starting mask made elsewhere was applied): ``"encode"``.
        """
        if event == "opened":
            return ["segment"] if segment_new and patch.state == "new" else []
        if event == "segmented":
            return ["encode"] if patch is self.current and patch.state == "segmented" else []
        return ["encode"]

    # -- clicks, brush edits, undo, reset ---------------------------------------------------

    def sync_mask(self, patch: Patch, mask: np.ndarray, *, whole: bool = False) -> bool:
        """Take a mask edited outside the session (a brush), or with ``whole`` a whole mask the
        user supplied (an imported one); returns whether it changed.

        A change is undoable, marks the patch ``corrected`` and makes the edited mask the next
        click's mask prompt. The pixels it set by hand (every pixel with ``whole``) are left alone
        by a click's changes away from its own region (``Interaction.hand_set``).
        """
        mask = np.asarray(mask) > 0
        if mask.shape != patch.shape:
            raise ImageFormatError(f"mask is {mask.shape} but patch {patch.name!r} is {patch.shape} (rows, cols)")
        if patch.interaction is None:
            if not mask.any():
                return False
            patch.interaction = Interaction(patch.shape)
        return patch.interaction.edit(mask, whole=whole)

    def corrector(self, patch: Patch) -> ModelCorrector:
        """The click model with the session's click effect and the focus refiner on ``patch``
        (the predictor's image must be set to it)."""
        from ..inference.focus import Focus

        refiner = self.models.refiner()
        return ModelCorrector(self.models.predictor(), effect=self.click_effect, first_click=self.first_click,
                              focus=None if refiner is None else Focus(refiner, patch.load()))

    def compute_click(self, patch: Patch, row: float, col: float, positive: bool) -> ClickResult:
        """Run the click model for the patch's clicks plus this one (worker thread; no state change).

        Raises:
            ClickOutsideError: ``(row, col)`` is not on the image.
        """
        if not patch.contains(row, col):
            raise ClickOutsideError(
                f"click at (row {row:.0f}, col {col:.0f}) is outside the {patch.shape[0]}x{patch.shape[1]} image"
            )
        self.prepare_embedding(patch)
        interaction = patch.interaction if patch.interaction is not None else Interaction(patch.shape)
        step = interaction.compute(self.corrector(patch), Click(int(row), int(col), bool(positive)))
        return ClickResult(patch, interaction, step)

    def is_stale(self, result: ClickResult) -> bool:
        """Whether ``result`` was computed on a state of its patch that has changed since (so
        `apply_click` would refuse it)."""
        current = result.patch.interaction
        return (current is not None and current is not result.interaction) or not result.interaction.is_current(
            result.step)

    def apply_click(self, result: ClickResult) -> None:
        """Record a computed click and its mask (undoable).

        Raises:
            StaleClickError: the patch was segmented again or changed since the click was computed.
        """
        patch = result.patch
        if patch.interaction is None:
            patch.interaction = result.interaction
        elif patch.interaction is not result.interaction:
            raise StaleClickError(f"{patch.name} was segmented again while the click was computed; click again")
        patch.interaction.apply(result.step)
        self.total_clicks += 1
        self.total_click_seconds += result.latency_s

    def click(self, patch: Patch, row: float, col: float, positive: bool) -> ClickResult:
        """:meth:`compute_click` then :meth:`apply_click` (for scripts and tests)."""
        result = self.compute_click(patch, row, col, positive)
        self.apply_click(result)
        return result

    def undo(self, patch: Patch) -> bool:
        """Undo the last click, brush edit or reset; ``False`` when there is nothing to undo."""
        return patch.interaction is not None and patch.interaction.undo()

    def redo(self, patch: Patch) -> bool:
        """Redo the last undone change; ``False`` when there is none."""
        return patch.interaction is not None and patch.interaction.redo()

    def reset(self, patch: Patch) -> bool:
        """Back to the automatic mask (or an empty one before segmenting), clicks and edits
        dropped; undoable. ``False`` when there was nothing to drop."""
        return patch.interaction is not None and patch.interaction.reset()

    # -- statistics -----------------------------------------------------------------------

    @property
    def seconds_per_click(self) -> float | None:
        """Mean model time per click over the session (``None`` before the first click)."""
        return self.total_click_seconds / self.total_clicks if self.total_clicks else None

    # -- export -----------------------------------------------------------------------------

    def export(self, patch: Patch, out_dir: str | os.PathLike) -> ExportResult:
        """Write the mask, the GeoJSON outline and the JSON sidecar under ``out_dir``.

        Layout and guarantees: :mod:`napari_cosas.io.exports`. ``masks/<stem>.png`` (``.tif`` when
        a side exceeds ``exports.LARGE_SIDE``; 0 / 255 uint8), ``geojson/<stem>.geojson``,
        ``sidecars/<stem>.json`` (written last), where ``<stem>`` is the patch name made safe as
        a file name, or ``<stem>_v2``, ``<stem>_v3``, ... so that no earlier export is
        overwritten, by this process or another one. If a write fails, this export's files are
        removed. A patch unchanged since its export to ``out_dir`` (same mask, same clicks) is
        not written again: its complete earlier export there is returned.
        """
        if patch.mask is None:
            raise ValueError(f"patch {patch.name!r} has no mask yet: segment it or click first.")
        suffix = mask_suffix(patch.shape)
        mask_bytes = encode_image(patch.mask.astype(np.uint8) * 255, suffix)
        record = sidecar_record(patch, segmenter_id=self.models.segmenter_id, click_id=self.models.click_id,
                                created=now_iso())
        content = content_sha256(mask_bytes, record)
        result = reusable_export(patch.exports, content, out_dir)
        if result is None:
            result = write_export(
                out_dir, patch.name, mask=mask_bytes, suffix=suffix,
                geojson=json.dumps(mask_to_geojson(patch.mask)).encode(), sidecar=record, content_sha256=content,
            )
            patch.exports.append(result)
        patch.exported_state = patch.interaction.state_id
        return result
