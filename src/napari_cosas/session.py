"""Per-patch annotation state and export, shared by the napari widget (no napari / Qt here).

An :class:`AnnotationSession` holds a list of :class:`Patch` objects. Each patch moves through
the states ``new`` (nothing computed) -> ``segmented`` (automatic mask) -> ``corrected`` (clicks
or brush edits not yet exported) -> ``exported`` (written; any later change makes it
``corrected`` again, undoing back to the exported state makes it ``exported``). Corrections stay
in memory per patch when switching patches. A patch's mask, clicks and undo / redo history are
its :class:`~napari_cosas.interaction.Interaction`, the engine ``evaluate`` and ``demo`` use too.

Work that takes time is split in two so that a front end can run it in a worker thread:
``compute_*`` methods read state and call the models (safe off the GUI thread, one at a time);
``apply_*`` methods mutate state (call them on the GUI thread).

Coordinates: clicks and masks use napari's ``(row, col)`` pixel order; the click model's
``(x, y)`` conversion happens in :mod:`napari_cosas.predictor`; GeoJSON uses ``x = col``,
``y = row`` in pixel units with the origin at the top-left corner of pixel ``(0, 0)``.
Images are ``(H, W, 3)`` uint8, masks ``(H, W)`` bool, probabilities ``(H, W)`` float32.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from scipy.ndimage import binary_fill_holes
from skimage.measure import find_contours, label, regionprops

from .clicks import Click, Clicker
from .exports import (
    SIDECAR_FORMAT,
    ExportResult,
    export_problem,
    load_sidecar,
    versioned_stem,
    write_export,
)
from .image_io import ImageFormatError, as_rgb_uint8, encode_image, image_sha256, list_images, load_image
from .interaction import (
    FIRST_CLICK,
    ClickOutsideError,
    ClickRecord,
    ClickStep,
    FirstClick,
    Interaction,
    ModelCorrector,
    StaleClickError,
)
from .refine import PROB_THRESHOLD, ClickEffect

if TYPE_CHECKING:  # torch is imported only when a model is used (keeps the napari reader light)
    from .models.focus_refiner import FocusRefiner
    from .predictor import ClickPredictor

__all__ = [
    "AnnotationSession",
    "ClickOutsideError",
    "ClickRecord",
    "ClickResult",
    "ExportResult",
    "ModelBundle",
    "Patch",
    "SIDECAR_FORMAT",
    "available_models",
    "load_sidecar",
    "mask_to_geojson",
    "ring_signed_area",
    "versioned_stem",
]

PatchState = Literal["new", "segmented", "corrected", "exported"]
DEFAULT_SEGMENTER = "cosas-default-segmenter"
DEFAULT_CLICK = "cosas-default-click"
DEFAULT_FOCUS = "cosas-default-focus"
#: Masks with a side longer than this are exported as (zlib-compressed) TIFF instead of PNG.
LARGE_SIDE = 2048


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


# ----------------------------------------------------------------------------- models


def available_models(kind: Literal["click", "segmenter"]) -> list[str]:
    """Registry names of ``kind`` whose weights are on this machine, the default first.

    The project's default is always listed (loading it reports missing weights clearly); other
    models are listed only when their file is in the weights folders or the download cache
    (existence only: the checksum is verified when the model is loaded).
    """
    from . import registry

    default = DEFAULT_CLICK if kind == "click" else DEFAULT_SEGMENTER
    names = [default]
    for spec in registry.list_models(kind):
        if spec.name == default:
            continue
        folders = registry.weights_dirs() if spec.bundled else [registry.cache_dir()]
        if any((folder / spec.filename).is_file() for folder in folders):
            names.append(spec.name)
    return names


class ModelBundle:
    """The automatic segmenter and the click predictor, loaded from the registry on first use.

    Args:
        segmenter_name, click_name: registry names (see :func:`available_models`).
        focus_name: registry name of the focus refiner of local clicks (:mod:`napari_cosas.focus`),
            or ``None`` for none.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"`` (the refiner runs on the CPU).
        segmenter, predictor, refiner: ready models (tests, scripts); they skip loading.
        segmenter_id: id recorded in sidecars for an injected segmenter.
    """

    def __init__(
        self,
        segmenter_name: str = DEFAULT_SEGMENTER,
        click_name: str = DEFAULT_CLICK,
        device: str = "auto",
        *,
        focus_name: str | None = DEFAULT_FOCUS,
        segmenter: Any | None = None,
        predictor: ClickPredictor | None = None,
        refiner: FocusRefiner | None = None,
        segmenter_id: str | None = None,
    ) -> None:
        self.segmenter_name = segmenter_name
        self.click_name = click_name
        self.focus_name = focus_name
        self.device = device
        self._segmenter = segmenter
        self._predictor = predictor
        self._refiner = refiner
        self._segmenter_id = segmenter_id

    @property
    def segmenter_id(self) -> str:
        return self._segmenter_id or self.segmenter_name

    @property
    def click_id(self) -> str:
        return self._predictor.model_id if self._predictor is not None else self.click_name

    def segmenter(self) -> Any:
        """The ``ReinSegmenter`` (loads it on first call; raises ``WeightsError`` if missing)."""
        if self._segmenter is None:
            from .registry import load_segmenter

            self._segmenter = load_segmenter(self.segmenter_name, device=self.device)
        return self._segmenter

    def predictor(self) -> ClickPredictor:
        """The ``ClickPredictor`` with an on-disk embedding cache (loads it on first call)."""
        if self._predictor is None:
            from .embedding_cache import EmbeddingCache
            from .predictor import ClickPredictor

            self._predictor = ClickPredictor.from_registry(
                self.click_name, device=self.device, cache=EmbeddingCache()
            )
        return self._predictor

    def refiner(self) -> FocusRefiner | None:
        """The focus refiner (loads it on first call), or ``None`` when the bundle has none."""
        if self._refiner is None and self.focus_name is not None:
            from .registry import load_focus_refiner

            self._refiner = load_focus_refiner(self.focus_name)
        return self._refiner


# ----------------------------------------------------------------------------- patches


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
    def logits(self) -> np.ndarray | None:
        """``(1, 256, 256)`` low-res logits the last (global) click left as the next mask prompt."""
        return None if self.interaction is None else self.interaction.logits

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
    def logits(self) -> np.ndarray | None:
        """``(1, 256, 256)`` float32 next mask prompt, or ``None`` when it is made from ``mask``."""
        return self.step.logits

    @property
    def latency_s(self) -> float:
        return self.step.record.latency_s


class AnnotationSession:
    """Patches, the current one, the models and the session's click statistics.

    ``click_effect`` (``refine.apply_click``): ``"local"`` (default) changes only the region
    under each click once the mask has been clicked or brushed, so nothing annotated elsewhere
    is overwritten; ``"global"`` replaces the mask with the model's whole prediction.
    ``first_click``: what the first local click on the automatic mask may change
    (``interaction.ModelCorrector``).
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
        """Use other models; every patch's next click takes its prompt from its mask."""
        self.models = models
        self._embedded = None
        for patch in self.patches:
            if patch.interaction is not None:
                patch.interaction.logits = None

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

    # -- clicks, brush edits, undo, reset ---------------------------------------------------

    def sync_mask(self, patch: Patch, mask: np.ndarray) -> bool:
        """Take a mask edited outside the session (a brush); returns whether it changed.

        A change is undoable, marks the patch ``corrected`` and makes the edited mask the next
        click's mask prompt.
        """
        mask = np.asarray(mask) > 0
        if mask.shape != patch.shape:
            raise ImageFormatError(f"mask is {mask.shape} but patch {patch.name!r} is {patch.shape} (rows, cols)")
        if patch.interaction is None:
            if not mask.any():
                return False
            patch.interaction = Interaction(patch.shape)
        return patch.interaction.edit(mask)

    def corrector(self, patch: Patch) -> ModelCorrector:
        """The click model with the session's click effect and the focus refiner on ``patch``
        (the predictor's image must be set to it)."""
        from .focus import Focus

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

        Layout and guarantees: :mod:`napari_cosas.exports`. ``masks/<stem>.png`` (``.tif`` when
        a side exceeds ``LARGE_SIDE``; 0 / 255 uint8), ``geojson/<stem>.geojson``,
        ``sidecars/<stem>.json`` (written last), where ``<stem>`` is the patch name made safe as
        a file name, or ``<stem>_v2``, ``<stem>_v3``, ... so that no earlier export is
        overwritten, by this process or another one. If a write fails, this export's files are
        removed. A patch unchanged since its export to ``out_dir`` (same mask, same clicks) is
        not written again: its complete earlier export there is returned.
        """
        if patch.mask is None:
            raise ValueError(f"patch {patch.name!r} has no mask yet: segment it or click first.")
        out = Path(out_dir)
        suffix = ".tif" if max(patch.shape) > LARGE_SIDE else ".png"
        mask_bytes = encode_image(patch.mask.astype(np.uint8) * 255, suffix)
        content = self._content_sha256(patch, mask_bytes)
        for earlier in reversed(patch.exports):
            if (earlier.content_sha256 == content and earlier.sidecar.parent.parent.resolve() == out.resolve()
                    and export_problem(earlier.sidecar) is None):
                patch.exported_state = patch.interaction.state_id
                return earlier
        result = write_export(
            out, patch.name, mask=mask_bytes, suffix=suffix,
            geojson=json.dumps(mask_to_geojson(patch.mask)).encode(),
            sidecar=self._sidecar(patch), content_sha256=content,
        )
        patch.exports.append(result)
        patch.exported_state = patch.interaction.state_id
        return result

    def _content_sha256(self, patch: Patch, mask_bytes: bytes) -> str:
        """Digest of what an export of ``patch`` records: mask, clicks, start, brush edits, models."""
        record = self._sidecar(patch)
        del record["created"]
        digest = hashlib.sha256(mask_bytes)
        digest.update(json.dumps(record, sort_keys=True).encode())
        return digest.hexdigest()

    def _sidecar(self, patch: Patch) -> dict[str, Any]:
        """The sidecar's record of the patch (``exports.write_export`` adds the files)."""
        return {
            "format": SIDECAR_FORMAT,
            "created": _now_iso(),
            "image": {
                "name": patch.name,
                "path": str(patch.path.resolve()) if patch.path is not None else None,
                "sha256": patch.sha256,
                "shape_rc": list(patch.shape),
            },
            "models": {"segmenter": self.models.segmenter_id, "click": self.models.click_id},
            "started_from": "automatic" if patch.auto_prob is not None else "empty",
            "brush_edited": patch.brush_edited,
            "coordinates": "clicks are (row, col) image pixels; positive true = tumour",
            "clicks": [
                {"row": c.row, "col": c.col, "positive": c.positive, "timestamp": c.timestamp,
                 "latency_s": round(c.latency_s, 6), "effect": c.effect}
                for c in patch.clicks
            ],
        }


# ----------------------------------------------------------------------------- GeoJSON


def ring_signed_area(ring: np.ndarray) -> float:
    """Shoelace area of a closed ring ``(K, 2)`` of ``(x, y)``; positive when counter-clockwise
    in a y-up frame (the GeoJSON / RFC 7946 exterior orientation)."""
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * float(np.sum(x[:-1] * y[1:] - x[1:] * y[:-1]))


def _rings(mask: np.ndarray, offset: tuple[int, int], connectivity: str, exterior: bool) -> list[list[list[float]]]:
    """Closed rings around the ``True`` pixels of ``mask`` as ``[[x, y], ...]`` lists.

    ``find_contours`` returns ``(row, col)`` points at the 0.5 level between pixel centres;
    with a 1-pixel pad removed and the half-pixel shift to corner-origin pixel units,
    ``x = col + offset_col + 0.5`` and ``y = row + offset_row + 0.5``.
    """
    padded = np.pad(mask, 1).astype(np.float32)
    rings = []
    for contour in find_contours(padded, 0.5, fully_connected=connectivity):
        xy = contour[:, ::-1] + np.array([offset[1] - 0.5, offset[0] - 0.5])
        if len(xy) < 4:
            continue
        if (ring_signed_area(xy) > 0) != exterior:
            xy = xy[::-1]
        rings.append(xy.tolist())
    return rings


def mask_to_geojson(mask: np.ndarray, name: str = "Tumor") -> dict[str, Any]:
    """QuPath-compatible GeoJSON of a mask's outline.

    Args:
        mask: ``(H, W)`` bool (or 0 / non-zero) mask.

    Returns:
        A ``FeatureCollection`` with one ``annotation`` feature classified ``name`` (none for an
        empty mask): a ``Polygon`` for one 8-connected region, a ``MultiPolygon`` otherwise;
        holes (4-connected background enclosed by a region) are interior rings. Coordinates are
        ``[x, y] = [col, row]`` in pixel units, origin at the top-left corner of pixel
        ``(0, 0)``; exterior rings have positive shoelace area on these numbers, holes negative.
    """
    mask = np.asarray(mask) > 0
    polygons = []
    for region in regionprops(label(mask, connectivity=2)):
        r0, c0 = region.bbox[:2]
        body = region.image
        filled = binary_fill_holes(body)
        exterior = _rings(filled, (r0, c0), "high", exterior=True)
        if exterior:  # one ring: a filled 8-connected region has a single outer contour
            polygons.append([exterior[0], *_rings(filled & ~body, (r0, c0), "low", exterior=False)])
    features = []
    if polygons:
        geometry = (
            {"type": "Polygon", "coordinates": polygons[0]}
            if len(polygons) == 1
            else {"type": "MultiPolygon", "coordinates": polygons}
        )
        features.append(
            {
                "type": "Feature",
                "geometry": geometry,
                "properties": {
                    "objectType": "annotation",
                    "classification": {"name": name, "color": [200, 0, 0]},
                },
            }
        )
    return {"type": "FeatureCollection", "features": features}
