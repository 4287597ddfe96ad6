"""The napari-cosas dock widget: a thin Qt front end over :mod:`napari_cosas.interaction.session`.

It reads and writes three layers (the patch image, the ``tumour mask`` labels, the ``clicks``
points), runs every model call and every export in a worker thread, one job at a time, and
shows errors as notifications. Clicks made while a job runs are queued and applied in order.

The front end is split by what each part does; :class:`CosasWidget` (the entry ``napari.yaml``
names) holds the actions and ties them together:

* ``_widget_ui.py``: the panel's controls and layout, the patch list's text;
* ``_widget_layers.py``: the image, mask and clicks layers (:class:`PatchLayers`);
* ``_widget_canvas.py``: mouse clicks on the canvas and the key bindings;
* ``_widget_clicks.py``: the click model's runs, one at a time, and the clicks queued meanwhile;
* ``_widget_patch_jobs.py``: a patch's background jobs (automatic mask, click embedding);
* ``_widget_brush.py``: brush strokes on the mask layer, handed to the session;
* ``_widget_close.py``: what closing the viewer asks and waits for;
* ``_widget_jobs.py``: the worker thread runner (:class:`JobRunner`) and torch thread counts;
* ``_widget_process.py``: the process-wide changes made when the widget opens (all of them).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import QWidget

from ._widget_brush import BrushEdits
from ._widget_canvas import bind_keys, bind_layer_keys, canvas_clicks
from ._widget_clicks import ClickQueue
from ._widget_close import CloseGuard
from ._widget_jobs import JobRunner
from ._widget_layers import PatchLayers
from ._widget_patch_jobs import PatchJobs
from ._widget_process import prepare_process
from ._widget_ui import click_stats, confirm_drop, default_export_dir, setup_ui, show_patch_list
from .inference.model_bundle import ModelBundle
from .interaction.patch import Patch
from .interaction.session import AnnotationSession
from .io.mask_import import load_start_mask

if TYPE_CHECKING:
    import napari


class CosasWidget(QWidget):
    """Open patches, segment them, refine with clicks, export.

    Args:
        napari_viewer: the viewer (injected by napari).
        models: models to use instead of the registry's (tests, scripts).
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer, models: ModelBundle | None = None) -> None:
        super().__init__()
        prepare_process()
        self.viewer = napari_viewer
        self.session = AnnotationSession(models if models is not None else ModelBundle())
        self.jobs = JobRunner(on_busy=self._set_busy, on_finished=self._after_job, on_error=self._on_error)
        setup_ui(self)
        self.layers = PatchLayers(
            self.viewer, on_paint=lambda: self.brush.on_paint(), display=self.display_combo.currentText(),
            bind_keys=lambda layer: bind_layer_keys(layer, self._key_actions()),
        )
        self.brush = BrushEdits(self.session, self.layers, busy=lambda: self.busy, changed=self._refresh)
        self.clicks = ClickQueue(
            self.session, self.jobs, self.layers, self.brush, message=self._message,
            show_mask=lambda patch, within: self.layers.show_mask(patch, (), select=False, clicks=False,
                                                                  within=within),
            refresh=self._refresh, parent=self,
        )
        self.patch_jobs = PatchJobs(self.session, self.jobs, self.brush, self.progress_bar, segment=self.segment,
                                    auto_segment=self.auto_segment_box.isChecked, message=self._message,
                                    show_mask=self._show_mask)
        self.jobs.progress.changed.connect(self.patch_jobs.on_progress)
        self.on_mouse_drag = canvas_clicks(self.viewer, lambda: self.layers.image_layer, self.add_click,
                                           on_press=self.press_click, on_drag=self.clicks.cancel_press)
        self.viewer.mouse_drag_callbacks.append(self.on_mouse_drag)
        bind_keys(self.viewer, self, self._key_actions())
        self._close_guard = CloseGuard(
            self, self.viewer, unsaved=lambda: [p.name for p in self.session.patches if p.unsaved],
            closing=lambda: self.jobs.closing, shutdown=self.shutdown,
        )
        self._refresh()

    @property
    def busy(self) -> bool:
        """Whether a job runs (actions wait; navigation and clicks, queued, do not)."""
        return self.jobs.busy

    @property
    def mask_layer(self) -> Any:
        return self.layers.mask_layer

    @property
    def clicks_layer(self) -> Any:
        return self.layers.clicks_layer

    def _key_actions(self) -> dict[str, Callable[[], Any]]:
        """napari key names and what they do."""
        return {
            "n": self.next_patch, "Shift-N": self.previous_patch, "s": self.segment,
            "u": self.undo, "Shift-U": self.redo, "r": self.reset, "Shift-S": self.export,
            "a": self.accept_and_next,
            # napari's labels undo would replay the layer's writes, not the session's steps
            "Control-Z": self.undo, "Control-Shift-Z": self.redo,
        }

    # -- patches ----------------------------------------------------------------------------

    def add_paths(self, paths: list[str | Path]) -> None:
        """List image files as patches and show the first new one."""
        self._added(self.session.add_files(paths))

    def add_folder(self, folder: str | Path) -> None:
        """List every image of ``folder`` as a patch."""
        try:
            self._added(self.session.add_folder(folder))
        except (OSError, ValueError) as exc:
            show_error(str(exc))

    def add_viewer_images(self) -> None:
        """List the viewer's image layers (other than the widget's own) as patches; each is shown
        in its own layer (no copy on top of it)."""
        added = []
        for layer in self.layers.unlisted_images():
            try:
                patch = self.session.add_array(layer.name, np.asarray(layer.data), layer.source.path)
            except ValueError as exc:
                show_error(f"{layer.name}: {exc}")
                continue
            self.layers.source_layers[id(patch)] = layer
            added.append(patch)
        self._added(added)

    def _added(self, added: list[Patch]) -> None:
        if not self.out_edit.text().strip() and self.session.patches:
            self.out_edit.setText(str(default_export_dir(self.session.patches)))
        if added:
            self.select_patch(self.session.patches.index(added[0]))
        else:
            self._refresh()

    def select_patch(self, index: int) -> None:
        """Show patch ``index`` (its unsaved corrections are kept in the session), then start the
        jobs it needs (`AnnotationSession.jobs_after`; after the running job, if one runs)."""
        if index == self.session.index:
            return
        if self.brush.waiting:
            self._refuse("switching patches (brush strokes wait for it)")
            self._refresh()
            return
        self.brush.sync()
        try:
            patch = self.session.select(index)
        except (OSError, ValueError) as exc:
            show_error(str(exc))
            self._refresh()
            return
        self.layers.show_image(patch)
        self._show_mask(patch)
        self._message(f"{patch.name}: {patch.state}")
        self.patch_jobs.opened(patch)

    def next_patch(self) -> None:
        self.select_patch(min(self.session.index + 1, len(self.session.patches) - 1))

    def previous_patch(self) -> None:
        self.select_patch(max(self.session.index - 1, 0))

    def on_row_changed(self, row: int) -> None:
        if row >= 0:
            self.select_patch(row)

    # -- settings ------------------------------------------------------------------------------

    def on_effect_changed(self, effect: str) -> None:
        self.session.click_effect = "global" if effect == "global" else "local"

    def on_display_changed(self, display: str) -> None:
        self.layers.display = display
        self.layers.style_mask()

    def on_models_changed(self) -> None:
        self.session.set_models(
            ModelBundle(
                self.segmenter_combo.currentText(),
                self.click_combo.currentText(),
                self.device_combo.currentText(),
            )
        )

    # -- the mask layer and brush strokes --------------------------------------------------------

    def _show_mask(self, patch: Patch, select: bool = True) -> None:
        """Write the patch's mask and clicks into the layers; with ``select``, make the mask layer
        the selected one (not after a click: the user's choice of layer stays)."""
        self.layers.show_mask(patch, self.clicks.pending(), select)
        self._refresh()

    # -- jobs -----------------------------------------------------------------------------------

    def _after_job(self, then: Callable[[], None] | None) -> None:
        """After each job (`JobRunner`): a failed click's point goes, strokes made during a job
        that showed no new mask are taken, ``then()`` runs, then the next queued click."""
        self.clicks.job_finished()
        self.brush.take_waiting()
        if then is not None:
            then()
        if not self.busy:
            self._next_queued()

    def _on_error(self, exc: Exception) -> None:
        show_error(str(exc))

    def _refuse(self, what: str) -> None:
        """Say (in the panel and as a notification) that ``what`` waits for the running job."""
        text = f"Busy: {what} has to wait for the running job; try again when it is done."
        self._message(text)
        show_info(text)

    def _ready(self, what: str) -> Patch | None:
        """The current patch when no job runs, else ``None`` with a message."""
        if self.busy:
            self._refuse(what)
            return None
        if self.session.current is None:
            self._message("Open a patch first.")
            return None
        return self.session.current

    # -- segment, click, undo, reset ------------------------------------------------------------

    def segment(self) -> None:
        """Automatic mask in a worker, then the jobs the session asks for (the click embedding)."""
        patch = self._ready("segmenting")
        if patch is None or not confirm_drop(self, patch, "Segmenting again"):
            return
        self.patch_jobs.segment(patch)

    def add_click(self, row: int, col: int, positive: bool) -> None:
        """Refine the mask with a click at ``(row, col)`` (image pixels), in a worker; while a job
        runs the click is queued (shown at once) and applied after it."""
        patch = self.session.current
        if patch is None:
            self._message("Open a patch first.")
            return
        if not patch.contains(row, col):
            self._message(f"Click at (row {row}, col {col}) is outside the image: ignored.")
            return
        self.clicks.add(patch, row, col, positive)

    def press_click(self, row: int, col: int, positive: bool) -> None:
        """A mouse press at ``(row, col)`` (image pixels) that may become a click: its model
        starts in the event loop's next turn when no job runs (`ClickQueue.press`); `add_click` at the release confirms it."""
        patch = self.session.current
        if patch is not None and patch.contains(row, col):
            self.clicks.press(patch, row, col, positive)

    def _next_queued(self) -> None:
        """The next queued click (on whichever patch it was made), else the jobs of the patch
        that was opened while a job ran."""
        if self.clicks.start_next():
            return
        self.patch_jobs.run_waiting()

    def undo(self) -> None:
        """Undo the last click or brush edit (a queued click first)."""
        patch = self.session.current
        if patch is not None and self.clicks.drop_last(patch):
            self._message("Queued click removed.")
            return
        patch = self._ready("undo")
        if patch is None:
            return
        self.brush.sync()
        if self.session.undo(patch):
            self._show_mask(patch)
        else:
            self._message("Nothing to undo.")

    def redo(self) -> None:
        """Redo the last click, brush edit or reset that undo took back."""
        patch = self._ready("redo")
        if patch is None:
            return
        self.brush.sync()
        if self.session.redo(patch):
            self._show_mask(patch)
        else:
            self._message("Nothing to redo.")

    def reset(self) -> None:
        patch = self._ready("reset")
        if patch is not None and confirm_drop(self, patch, "Reset"):
            self.session.reset(patch)
            self._show_mask(patch)

    # -- starting from a mask made elsewhere ------------------------------------------------------

    def start_from_mask(self, mask: np.ndarray, source: str) -> bool:
        """Make ``mask`` (``(H, W)``, non-zero = tumour) the current patch's mask, as an undoable
        edit made outside the widget (like a brush edit: clicks then change only the region under
        them, from the first one). ``False`` (and a message) when it cannot be used."""
        patch = self._ready(f"starting from {source}")
        if patch is None:
            return False
        mask = np.asarray(mask)
        if mask.shape != patch.shape:
            show_error(f"{source} is {mask.shape[0]}x{mask.shape[1]} (rows x cols) but {patch.name} is "
                       f"{patch.shape[0]}x{patch.shape[1]}; a starting mask must have the image's size.")
            return False
        self.brush.sync()
        self.session.sync_mask(patch, mask > 0, whole=True)
        self._show_mask(patch)
        self._message(f"{patch.name}: mask from {source}; encoding the image for clicks…")
        self.patch_jobs.after(patch, "mask set")
        return True

    def start_from_layer(self, layer: Any = None) -> bool:
        """`start_from_mask` with a labels layer (default: the selected one, not the widget's)."""
        layer = layer if layer is not None else self.viewer.layers.selection.active
        if layer is None or layer.__class__.__name__ != "Labels" or layer is self.mask_layer:
            self._message("Select the labels layer to start from (not the widget's tumour mask) first.")
            return False
        return self.start_from_mask(np.asarray(layer.data), f"layer {layer.name!r}")

    def start_from_file(self, path: str | Path) -> bool:
        """`start_from_mask` with a mask file or a QuPath GeoJSON export (`mask_import`)."""
        patch = self.session.current
        if patch is None:
            self._message("Open a patch first.")
            return False
        try:
            mask = load_start_mask(path, patch.shape)
        except (OSError, ValueError) as exc:
            show_error(str(exc))
            return False
        return self.start_from_mask(mask, Path(path).name)

    # -- export -----------------------------------------------------------------------------

    def output_dir(self) -> Path | None:
        """The export folder of the line edit (``~`` expanded), ``None`` when empty."""
        text = self.out_edit.text().strip()
        return Path(text).expanduser() if text else None

    def export(self, then: Callable[[], None] | None = None) -> bool:
        """Export the current patch to the output folder in a worker; ``then()`` runs after a
        successful export. ``False`` (and a message) when it cannot start."""
        patch = self._ready("export")
        if patch is None:
            return False
        out = self.output_dir()
        if out is None:
            show_error("Choose an output folder before exporting.")
            return False
        self.brush.sync()
        self._message(f"Exporting {patch.name}…")

        succeeded = []

        def exported(result: Any) -> None:
            succeeded.append(result)
            show_info(f"Exported {result.mask.name}, {result.sidecar.name}, {result.geojson.name} to {out}")
            self._message(f"Exported {patch.name} to {out}.")
            self._refresh()

        after = (lambda: then() if succeeded else None) if then is not None else None
        self.jobs.start(self.session.export, patch, out, on_done=exported, then=after)
        return True

    def accept_and_next(self) -> None:
        self.export(then=self.next_patch)

    # -- closing --------------------------------------------------------------------------------

    def shutdown(self, timeout_s: float = 60.0) -> None:
        """Stop taking work and wait for the running job (a segmentation stops at its next window),
        so that no worker thread outlives the viewer."""
        self.clicks.stop()
        self.jobs.shutdown(timeout_s)

    # -- status ----------------------------------------------------------------------------------

    def _set_busy(self, busy: bool) -> None:
        """While a job runs the actions wait; navigation stays usable."""
        for widget in self.action_buttons:
            widget.setEnabled(not busy)

    def _message(self, text: str) -> None:
        self.message_label.setText(text)
        self.viewer.status = text

    def _refresh(self) -> None:
        """Patch list with states and the live numbers."""
        show_patch_list(self.patch_list, self.session)
        self.stats_label.setText(click_stats(self.session))
