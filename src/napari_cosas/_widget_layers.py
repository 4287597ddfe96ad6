"""The dock widget's layers: the patch image, the ``tumour mask`` labels and the ``clicks`` points.

:class:`PatchLayers` shows a patch (its own image layer, or the viewer layer the patch came
from), its mask and its clicks, creating the layers when needed. Masks are ``(H, W)`` bool in the
session and ``(H, W)`` uint8 (0 / 1) in the labels layer; click points are ``(row, col)`` image
pixels, napari's order for a 2-D points layer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.utils.colormaps import DirectLabelColormap

from ._widget_mask_labels import MaskLabels
from .interaction.patch import Patch

if TYPE_CHECKING:
    import napari

MASK_LAYER = "tumour mask"
CLICKS_LAYER = "clicks"
POSITIVE_RGBA = (0.1, 0.9, 0.1, 1.0)
NEGATIVE_RGBA = (0.95, 0.1, 0.1, 1.0)
#: Mask colour: cyan stands out on H&E's pinks and purples, filled or as an outline.
MASK_RGBA = (0.0, 0.9, 1.0, 1.0)
#: ``"Mask display"`` choices: Labels ``contour`` thickness (0 = filled) and opacity.
MASK_DISPLAYS = {"outline": (2, 1.0), "filled": (0, 0.5)}


@dataclass(frozen=True)
class PendingClick:
    """A click taken but not applied yet (running, or queued behind the running job), at image
    pixel ``(row, col)`` of ``patch``."""

    patch: Patch
    row: int
    col: int
    positive: bool


def update_labels_layer(
    layer: Any, labels: np.ndarray, replace: bool = False, within: tuple[slice, slice] | None = None
) -> None:
    """Show ``labels`` (``(H, W)`` uint8) in a napari Labels ``layer``.

    A click changes only a window of the mask: when the shape and dtype are unchanged only the
    changed pixels are written, with ``Labels.data_setitem``, which recolours and uploads to
    the GPU only their bounding box (a whole-layer refresh recolours, re-contours and uploads
    all 1500x1500 pixels: ``benchmarks/viewer_click.md``). They are looked for in ``within``,
    a ``(rows, cols)`` box outside which the caller knows the layer already shows ``labels``
    (a click's changed box), or else in the whole layer. Like a brush stroke, the write is one
    step of napari's own labels history, and emits the layer's ``paint`` event (the widget
    binds Ctrl+Z to the session's undo, which knows the clicks). With ``replace`` (another
    patch's mask) the data is replaced by a copy of ``labels`` instead, so that no history step
    leads back to the previous patch's pixels; ``labels`` itself is never kept.
    """
    data = layer.data
    if replace or not isinstance(data, np.ndarray) or data.shape != labels.shape or data.dtype != labels.dtype:
        layer.data = labels.copy()
        return
    rows, cols = within if within is not None else (slice(0, labels.shape[0]), slice(0, labels.shape[1]))
    box_rows, box_cols = np.nonzero(data[rows, cols] != labels[rows, cols])
    if not box_rows.size:
        return
    indices = (box_rows + rows.start, box_cols + cols.start)
    layer.data_setitem(indices, labels[indices])


def paler(rgba: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """``rgba`` half-transparent: the colour of a click whose mask has not arrived yet."""
    return (*rgba[:3], 0.45)


class PatchLayers:
    """The image, mask and clicks layers of the shown patch.

    Args:
        viewer: the napari viewer.
        on_paint: called on a brush stroke (or napari's labels undo) on the mask layer, not on
            the layers' own writes (``writing`` is ``True`` during those).
        bind_keys: binds the widget's keys on a layer it creates (napari asks the selected
            layer's keymap before the viewer's).
        display: the ``MASK_DISPLAYS`` key the mask layer is drawn with.
    """

    def __init__(
        self,
        viewer: napari.viewer.Viewer,
        *,
        on_paint: Callable[[], None],
        bind_keys: Callable[[Any], None],
        display: str,
    ) -> None:
        self.viewer = viewer
        self.display = display
        self.writing = False
        self.mask_patch: Patch | None = None  # the patch whose mask the mask layer holds
        self.image_layer: Any = None  # the layer showing the current patch
        self.own_image_layer: Any = None  # the widget's image layer (patches opened from files)
        self.source_layers: dict[int, Any] = {}  # id(patch) -> the viewer layer it came from
        self._on_paint = on_paint
        self._bind_keys = bind_keys

    def _layer(self, name: str) -> Any:
        return self.viewer.layers[name] if name in self.viewer.layers else None

    @property
    def mask_layer(self) -> Any:
        return self._layer(MASK_LAYER)

    @property
    def clicks_layer(self) -> Any:
        return self._layer(CLICKS_LAYER)

    def unlisted_images(self) -> list[Any]:
        """The viewer's image layers that are neither the widget's own nor a listed patch's source."""
        known = {id(layer) for layer in self.source_layers.values()}
        return [layer for layer in self.viewer.layers if layer.__class__.__name__ == "Image"
                and layer is not self.own_image_layer and id(layer) not in known]

    def show_image(self, patch: Patch) -> None:
        """Show ``patch``'s image (its source layer, or the widget's image layer), hide the others."""
        source = self.source_layers.get(id(patch))
        if source is not None and source not in self.viewer.layers:
            source = None
        for other in (self.own_image_layer, *self.source_layers.values()):
            if other is not None and other is not source and other in self.viewer.layers:
                other.visible = False
        if source is not None:
            layer = source
        elif self.own_image_layer is None or self.own_image_layer not in self.viewer.layers:
            layer = self.own_image_layer = self.viewer.add_image(patch.load(), name=patch.name, rgb=True)
        else:
            layer = self.own_image_layer
            layer.data = patch.load()
            layer.name = patch.name
        layer.visible = True
        self.image_layer = layer
        self.viewer.reset_view()

    def style_mask(self) -> None:
        """Draw the mask layer as ``display`` says (outline or filled)."""
        layer = self.mask_layer
        if layer is not None:
            layer.contour, layer.opacity = MASK_DISPLAYS[self.display]

    def show_mask(
        self, patch: Patch, pending: Sequence[PendingClick], select: bool, clicks: bool = True,
        within: tuple[slice, slice] | None = None,
    ) -> None:
        """Write the patch's mask and (with ``clicks``) its clicks, then ``pending``, into the
        layers, creating them when needed; with ``select``, make the mask layer the selected one.
        ``within``: the ``(rows, cols)`` box outside which the mask layer already shows the
        patch's mask, if it shows that patch (``update_labels_layer``)."""
        mask = patch.mask if patch.mask is not None else np.zeros(patch.shape, dtype=bool)
        labels = mask.view(np.uint8)  # read only: the layer gets a copy
        layer = self.mask_layer
        if layer is None:
            layer = self.viewer.add_layer(MaskLabels(
                labels.copy(), name=MASK_LAYER,
                colormap=DirectLabelColormap(color_dict={None: (0, 0, 0, 0), 0: (0, 0, 0, 0), 1: MASK_RGBA}),
            ))
            layer.selected_label = 1
            layer.events.paint.connect(self._painted)
            self._bind_keys(layer)
            self.style_mask()
        else:
            self._write_mask(layer, labels, replace=patch is not self.mask_patch, within=within)
        self.mask_patch = patch
        if clicks:
            self.show_clicks(patch, pending)
        if select:
            self.viewer.layers.selection.active = layer

    def _painted(self, _event: Any) -> None:
        if not self.writing:
            self._on_paint()

    def _write_mask(
        self, layer: Any, labels: np.ndarray, replace: bool, within: tuple[slice, slice] | None = None
    ) -> None:
        self.writing = True
        try:
            update_labels_layer(layer, labels, replace, within)
        finally:
            self.writing = False

    def show_clicks(self, patch: Patch, pending: Sequence[PendingClick]) -> None:
        """The patch's clicks, then its ``pending`` ones (paler), in the clicks layer.

        When a pending click's mask arrives only its point's colour changes. New coordinates
        are written without the layer's ``data`` event: on it napari re-derives the viewer's
        dimensions, which cannot change (every click is a pixel of the image), and that Python,
        about half of the update, would hold up a running click's model (the GUI thread keeps
        the GIL). The ``extent`` event, which keeps the layer list's extent (``reset_view``)
        right, still fires. The colours are compared to float32 precision (the layer keeps them
        so), so that unchanged colours are not written again: a write re-colours and re-uploads every
        point (``benchmarks/points_update.md``).
        """
        waiting = [q for q in pending if q.patch is patch]
        points = np.array(
            [*patch.clicker.points_rc().tolist(), *([q.row, q.col] for q in waiting)], dtype=float
        ).reshape(-1, 2)
        colors = [POSITIVE_RGBA if c.is_positive else NEGATIVE_RGBA for c in patch.clicker.clicks]
        colors += [paler(POSITIVE_RGBA if q.positive else NEGATIVE_RGBA) for q in waiting]
        clicks = self.clicks_layer
        if clicks is None:
            # a new point takes the current colour: positive, as most clicks are, needs no recolouring
            clicks = self.viewer.add_points(points, name=CLICKS_LAYER, size=max(4, max(patch.shape) // 60),
                                            face_color=np.array(POSITIVE_RGBA))
            clicks.editable = False  # display only: stays in pan/zoom, the canvas clicks stay ours
            self._bind_keys(clicks)
        elif clicks.data.shape != points.shape or not np.array_equal(clicks.data, points):
            with clicks.events.data.blocker():
                clicks.data = points
        wanted = np.array(colors, dtype=float).reshape(-1, 4)
        shown = clicks.face_color
        if len(points) and (shown.shape != wanted.shape or not np.allclose(shown, wanted, rtol=0, atol=1e-6)):
            clicks.face_color = wanted
