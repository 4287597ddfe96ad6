"""The napari-cosas dock widget: a thin Qt front end over :mod:`napari_cosas.session`.

It reads and writes three layers (the patch image, the ``tumour mask`` labels, the ``clicks``
points), runs every model call and every export in a worker thread, one job at a time, and
shows errors as notifications. Clicks made while a job runs are queued and applied in order.
"""

from __future__ import annotations

import os
import sys
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.qt.threading import create_worker
from napari.utils.colormaps import DirectLabelColormap
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QEvent, QObject, Qt, Signal
from qtpy.QtGui import QKeySequence, QShortcut
from qtpy.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from .heap import keep_freed_heap_memory
from .mask_import import load_start_mask
from .registry import available_models
from .session import AnnotationSession, ClickResult, ModelBundle, Patch, PatchEvent

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
#: Default export folder's name (`default_export_dir`).
EXPORT_DIR_NAME = "cosas_export"

HELP = """<b>Mouse</b> (in pan/zoom mode, key <i>z</i>): left click = positive (tumour); right
click or Ctrl+click (Cmd+click on macOS) = negative (background). Shift and Alt clicks are left
to napari. A drag pans; a click that moves a few pixels still counts. Clicks made while the
model works are queued and applied in order (shown at once, paler); next / previous work
meanwhile. To paint, pick the labels
layer's brush (<i>p</i>) or eraser (<i>e</i>); edits are kept and the next click starts from
them. <i>Start from layer / file</i> takes an existing mask (labels layer, mask file, QuPath
GeoJSON) to correct.<br><b>Keys</b> (on the canvas or in this panel): <i>s</i> segment,
<i>u</i> undo the last click, edit or reset, <i>Shift+U</i> redo, <i>r</i> reset to the automatic
mask (undoable; <i>s</i> and <i>r</i> ask before dropping corrections), <i>Shift+S</i> export, <i>a</i> accept (export) and next,
<i>n</i> next patch, <i>Shift+N</i> previous patch."""


def write_labels(layer: Any, labels: np.ndarray) -> None:
    """Show ``labels`` (``(H, W)`` uint8) in a napari Labels ``layer``.

    A click changes only a window of the mask: when the shape and dtype are unchanged only the
    changed pixels are written, with ``Labels.data_setitem``, which recolours and uploads to
    the GPU only their bounding box (a whole-layer refresh recolours, re-contours and uploads
    all 1500x1500 pixels: ``benchmarks/viewer_click.md``). Like a brush stroke, the write is
    one step of napari's own labels undo (Ctrl+Z), and emits the layer's ``paint`` event.
    """
    data = layer.data
    if not isinstance(data, np.ndarray) or data.shape != labels.shape or data.dtype != labels.dtype:
        layer.data = labels
        return
    changed = np.nonzero(data != labels)
    if changed[0].size:
        layer.data_setitem(changed, labels[changed])


def click_label(button: int, modifiers: Any) -> bool | None:
    """Whether a mouse click is a positive (``True``) or negative (``False``) click, or ``None``
    when it is not the widget's (Shift, Alt, middle button...: napari's).

    Args:
        button: vispy's button number (1 left, 2 right, 3 middle).
        modifiers: vispy ``Key`` objects held (their ``name`` is ``"Control"``, ``"Meta"``, ...).
            Qt reports macOS's Cmd as Control, so Cmd+click is negative there too.
    """
    names = {getattr(m, "name", str(m)) for m in modifiers}
    if not names:
        return {1: True, 2: False}.get(button)
    if button == 1 and names in ({"Control"}, {"Meta"}):
        return False
    return None


@dataclass(frozen=True)
class _QueuedClick:
    """A click taken while a job ran: applied after it, in order."""

    patch: Patch
    row: int
    col: int
    positive: bool


class _Cancelled(Exception):
    """Raised in a worker when the viewer closes (its progress callback stops the job)."""


class _Progress(QObject):
    """Carries ``(done, total)`` from a worker thread to the GUI thread (queued signal)."""

    changed = Signal(int, int)


class CosasWidget(QWidget):
    """Open patches, segment them, refine with clicks, export.

    Args:
        napari_viewer: the viewer (injected by napari).
        models: models to use instead of the registry's (tests, scripts).
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer, models: ModelBundle | None = None) -> None:
        super().__init__()
        _import_model_stack()
        keep_freed_heap_memory()  # clicks reuse freed tensor memory instead of faulting in new pages
        self.viewer = napari_viewer
        self.session = AnnotationSession(models if models is not None else ModelBundle())
        self.busy = False
        self._queued: deque[_QueuedClick] = deque()
        self._jobs_done: list[threading.Event] = []
        self._closing = False
        self._image_layer: Any = None  # the layer showing the current patch
        self._own_image_layer: Any = None  # the widget's image layer (patches opened from files)
        self._source_layers: dict[int, Any] = {}  # id(patch) -> the viewer layer it came from
        self._writing_mask = False
        self._strokes_waiting = False  # brush strokes made while a job ran, not yet in the session
        self._running: _QueuedClick | None = None  # the click whose model runs now
        self._opened_while_busy: Patch | None = None  # a patch opened while a job ran: its jobs wait
        self._progress = _Progress()
        self._build_ui()
        self._progress.changed.connect(self._on_progress)
        self.viewer.mouse_drag_callbacks.append(self.on_mouse_drag)
        self._bind_keys()
        # napari has no public close hook. Closing the window (its button, Ctrl+W, Quit) sends
        # the main window a Close event first; `viewer.close()` closes the canvas's QtViewer
        # first, then the window, past the point where closing could be cancelled.
        # (Both are looked up when needed: holding them would keep napari's QtViewer alive.)
        for watched in self._close_watched():
            if watched is not None:
                watched.installEventFilter(self)
        self._refresh()

    # -- UI construction ----------------------------------------------------------------

    def _button(self, text: str, slot: Callable[[], Any], tip: str = "") -> QPushButton:
        button = QPushButton(text)
        button.clicked.connect(lambda _checked=False: slot())
        button.setToolTip(tip)
        return button

    def _build_ui(self) -> None:
        layout = QVBoxLayout(self)
        opener = QHBoxLayout()
        opener.addWidget(self._button("Open image…", self._open_file_dialog))
        opener.addWidget(self._button("Open folder…", self._open_folder_dialog))
        opener.addWidget(self._button("Add viewer images", self.add_viewer_images))
        layout.addLayout(opener)

        self.patch_list = QListWidget()
        self.patch_list.currentRowChanged.connect(self._on_row_changed)
        layout.addWidget(self.patch_list)
        nav = QHBoxLayout()
        self.prev_button = self._button("◀ Previous", self.previous_patch, "Shift+N")
        self.next_button = self._button("Next ▶", self.next_patch, "n")
        nav.addWidget(self.prev_button)
        nav.addWidget(self.next_button)
        layout.addLayout(nav)

        form = QFormLayout()
        self.segmenter_combo = QComboBox()
        self.segmenter_combo.addItems(available_models("segmenter"))
        self.click_combo = QComboBox()
        self.click_combo.addItems(available_models("click"))
        self.device_combo = QComboBox()
        self.device_combo.addItems(_devices())
        for combo in (self.segmenter_combo, self.click_combo, self.device_combo):
            combo.currentTextChanged.connect(lambda _text: self._on_models_changed())
        form.addRow("Segmenter", self.segmenter_combo)
        form.addRow("Click model", self.click_combo)
        form.addRow("Device", self.device_combo)
        self.effect_combo = QComboBox()
        self.effect_combo.addItems(["local", "global"])
        self.effect_combo.setToolTip(
            "local: a click changes only the region under it (the rest of the mask, brush edits "
            "included, is kept); global: the mask becomes the click model's whole prediction"
        )
        self.effect_combo.currentTextChanged.connect(self._on_effect_changed)
        form.addRow("Click effect", self.effect_combo)
        self.display_combo = QComboBox()
        self.display_combo.addItems(list(MASK_DISPLAYS))
        self.display_combo.setToolTip("outline: the mask's contour over the tissue; filled: a half-transparent fill")
        self.display_combo.currentTextChanged.connect(lambda _text: self._style_mask_layer())
        form.addRow("Mask display", self.display_combo)
        self.auto_segment_box = QCheckBox("Segment each new patch when it opens")
        self.auto_segment_box.setChecked(True)
        self.auto_segment_box.setToolTip(
            "Compute the automatic mask and the click embedding as soon as a patch nobody has worked "
            "on is shown (clicks refine that mask; clicks on an empty mask find much less)"
        )
        form.addRow(self.auto_segment_box)
        layout.addLayout(form)

        actions = QGridLayout()
        self.segment_button = self._button("Segment", self.segment, "s: automatic mask")
        self.undo_button = self._button("Undo", self.undo, "u: undo the last click, brush edit or reset")
        self.redo_button = self._button("Redo", self.redo, "Shift+U: redo what undo took back")
        self.reset_button = self._button("Reset", self.reset, "r: back to the automatic mask (undoable)")
        self.from_layer_button = self._button(
            "Start from layer", self.start_from_layer,
            "Use the selected labels layer (non-zero = tumour) as this patch's mask; clicks then correct it",
        )
        self.from_file_button = self._button(
            "Start from file…", self._start_from_file_dialog,
            "Use a mask file (PNG / TIFF) or a QuPath GeoJSON export as this patch's mask; clicks then correct it",
        )
        actions.addWidget(self.segment_button, 0, 0)
        actions.addWidget(self.undo_button, 0, 1)
        actions.addWidget(self.redo_button, 0, 2)
        actions.addWidget(self.reset_button, 0, 3)
        actions.addWidget(self.from_layer_button, 1, 0, 1, 2)
        actions.addWidget(self.from_file_button, 1, 2, 1, 2)
        layout.addLayout(actions)
        self.progress_bar = QProgressBar()
        layout.addWidget(self.progress_bar)

        out = QHBoxLayout()
        self.out_edit = QLineEdit()
        self.out_edit.setPlaceholderText("output folder")
        out.addWidget(self.out_edit)
        out.addWidget(self._button("…", self._out_dir_dialog))
        layout.addLayout(out)
        export_row = QHBoxLayout()
        self.export_button = self._button("Export", self.export, "Shift+S")
        self.accept_button = self._button("Accept && next", self.accept_and_next, "a")
        export_row.addWidget(self.export_button)
        export_row.addWidget(self.accept_button)
        layout.addLayout(export_row)

        self.stats_label = QLabel()
        self.message_label = QLabel()
        self.message_label.setWordWrap(True)
        help_label = QLabel(HELP)
        help_label.setWordWrap(True)
        for label in (self.stats_label, self.message_label, help_label):
            layout.addWidget(label)
        self._action_buttons = (
            self.segment_button, self.undo_button, self.redo_button, self.reset_button, self.export_button,
            self.accept_button, self.from_layer_button, self.from_file_button,
        )

    def _key_actions(self) -> dict[str, Callable[[], Any]]:
        """napari key names and what they do."""
        return {
            "n": self.next_patch, "Shift-N": self.previous_patch, "s": self.segment,
            "u": self.undo, "Shift-U": self.redo, "r": self.reset, "Shift-S": self.export,
            "a": self.accept_and_next,
        }

    def _bind_keys(self) -> None:
        """The widget's keys on the canvas (viewer keymap) and in this panel (Qt shortcuts scoped
        to the widget, so that the patch list does not swallow them; text fields still get their
        letters). The widget's own layers bind them too (see `_bind_layer_keys`)."""
        for key, action in self._key_actions().items():
            self.viewer.bind_key(key, _key_handler(action), overwrite=True)
            shortcut = QShortcut(QKeySequence(key.replace("-", "+")), self)
            shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            shortcut.activated.connect(action)

    def _bind_layer_keys(self, layer: Any) -> None:
        """Bind the widget's keys on one of its layers (instance keymap): napari asks the selected
        layer's keymap before the viewer's, and the Points class binds ``a`` and ``s``."""
        for key, action in self._key_actions().items():
            layer.bind_key(key, _key_handler(action), overwrite=True)

    # -- patches ----------------------------------------------------------------------------

    def _open_file_dialog(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Open patches", "", "Images (*.png *.jpg *.jpeg *.tif *.tiff *.bmp)")
        if paths:
            self.add_paths(paths)

    def _open_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a folder of patches")
        if folder:
            self.add_folder(folder)

    def _out_dir_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export folder", str(self.output_dir() or ""))
        if folder:
            self.out_edit.setText(folder)

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
        known = {id(layer) for layer in self._source_layers.values()}
        added = []
        for layer in list(self.viewer.layers):
            if layer.__class__.__name__ != "Image" or layer is self._own_image_layer or id(layer) in known:
                continue
            try:
                patch = self.session.add_array(layer.name, np.asarray(layer.data), layer.source.path)
            except ValueError as exc:
                show_error(f"{layer.name}: {exc}")
                continue
            self._source_layers[id(patch)] = layer
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
        """Show patch ``index`` (its unsaved corrections are kept in the session)."""
        if index == self.session.index:
            return
        if self._strokes_waiting:
            self._refuse("switching patches (brush strokes wait for it)")
            self._refresh()
            return
        self._sync_from_layer()
        try:
            patch = self.session.select(index)
        except (OSError, ValueError) as exc:
            show_error(str(exc))
            self._refresh()
            return
        self._show_patch(patch)
        self._message(f"{patch.name}: {patch.state}")
        if self.busy:
            self._opened_while_busy = patch
        else:
            self._run_jobs(patch, "opened")

    def next_patch(self) -> None:
        self.select_patch(min(self.session.index + 1, len(self.session.patches) - 1))

    def previous_patch(self) -> None:
        self.select_patch(max(self.session.index - 1, 0))

    def _on_row_changed(self, row: int) -> None:
        if row >= 0:
            self.select_patch(row)

    # -- models ------------------------------------------------------------------------------

    def _on_effect_changed(self, effect: str) -> None:
        self.session.click_effect = "global" if effect == "global" else "local"

    def _on_models_changed(self) -> None:
        self.session.set_models(
            ModelBundle(
                self.segmenter_combo.currentText(),
                self.click_combo.currentText(),
                self.device_combo.currentText(),
            )
        )

    # -- layers -------------------------------------------------------------------------------

    def _layer(self, name: str) -> Any:
        return self.viewer.layers[name] if name in self.viewer.layers else None

    @property
    def mask_layer(self) -> Any:
        return self._layer(MASK_LAYER)

    @property
    def clicks_layer(self) -> Any:
        return self._layer(CLICKS_LAYER)

    def _show_patch(self, patch: Patch) -> None:
        source = self._source_layers.get(id(patch))
        if source is not None and source not in self.viewer.layers:
            source = None
        for other in (self._own_image_layer, *self._source_layers.values()):
            if other is not None and other is not source and other in self.viewer.layers:
                other.visible = False
        if source is not None:
            layer = source
        elif self._own_image_layer is None or self._own_image_layer not in self.viewer.layers:
            layer = self._own_image_layer = self.viewer.add_image(patch.load(), name=patch.name, rgb=True)
        else:
            layer = self._own_image_layer
            layer.data = patch.load()
            layer.name = patch.name
        layer.visible = True
        self._image_layer = layer
        self.viewer.reset_view()
        self._show_mask(patch)

    def _style_mask_layer(self) -> None:
        layer = self.mask_layer
        if layer is not None:
            layer.contour, layer.opacity = MASK_DISPLAYS[self.display_combo.currentText()]

    def _show_mask(self, patch: Patch, select: bool = True) -> None:
        """Write the patch's mask and clicks into the layers (creating them when needed); with
        ``select``, make the mask layer the selected one (not after a click: the user's choice
        of layer stays)."""
        mask = patch.mask if patch.mask is not None else np.zeros(patch.shape, dtype=bool)
        labels = mask.astype(np.uint8)
        layer = self.mask_layer
        if layer is None:
            layer = self.viewer.add_labels(
                labels, name=MASK_LAYER,
                colormap=DirectLabelColormap(color_dict={None: (0, 0, 0, 0), 0: (0, 0, 0, 0), 1: MASK_RGBA}),
            )
            layer.selected_label = 1
            layer.events.paint.connect(lambda _event: self._on_paint())
            self._bind_layer_keys(layer)
            self._style_mask_layer()
        else:
            self._write_mask(layer, labels)
        self._show_clicks(patch)
        if select:
            self.viewer.layers.selection.active = layer
        self._refresh()

    def _write_mask(self, layer: Any, labels: np.ndarray) -> None:
        self._writing_mask = True
        try:
            write_labels(layer, labels)
        finally:
            self._writing_mask = False

    def _show_clicks(self, patch: Patch) -> None:
        """The patch's clicks, then the running and queued ones (paler), in the clicks layer.

        A click's point is shown when it is taken; when its mask arrives only the point's
        colour changes (new coordinates change the layer's extent, which makes napari
        recompute the viewer's dimensions: the dearer update is done while the model runs).
        """
        pending = [self._running] if self._running is not None else []
        queued = [q for q in (*pending, *self._queued) if q.patch is patch]
        points = np.array(
            [*patch.clicker.points_rc().tolist(), *([q.row, q.col] for q in queued)], dtype=float
        ).reshape(-1, 2)
        colors = [POSITIVE_RGBA if c.is_positive else NEGATIVE_RGBA for c in patch.clicker.clicks]
        colors += [_paler(POSITIVE_RGBA if q.positive else NEGATIVE_RGBA) for q in queued]
        clicks = self.clicks_layer
        if clicks is None:
            clicks = self.viewer.add_points(points, name=CLICKS_LAYER, size=max(4, max(patch.shape) // 60))
            clicks.editable = False  # display only: stays in pan/zoom, the canvas clicks stay ours
            self._bind_layer_keys(clicks)
        elif clicks.data.shape != points.shape or not np.array_equal(clicks.data, points):
            clicks.data = points
        if len(points) and not np.array_equal(clicks.face_color, colors):
            clicks.face_color = np.array(colors)

    def _on_paint(self) -> None:
        """A brush stroke (or napari's labels undo) on the mask layer."""
        if self._writing_mask:
            return
        if self.busy:
            self._strokes_waiting = True  # taken once the job's result is shown
            return
        self._sync_from_layer()

    def _painted_since(self, patch: Patch) -> np.ndarray | None:
        """``(H, W)`` bool: the pixels brushed since the layer last showed ``patch.mask``, or
        ``None`` (no stroke while a job ran, or another patch shown)."""
        layer = self.mask_layer
        if not self._strokes_waiting or patch is not self.session.current or layer is None:
            return None
        self._strokes_waiting = False
        shown = patch.mask if patch.mask is not None else np.zeros(patch.shape, dtype=bool)
        changed = (layer.data > 0) != shown
        return changed if changed.any() else None

    def _keep_strokes(self, patch: Patch, painted: np.ndarray | None) -> None:
        """Put brush strokes made while a job ran back on top of the job's new mask (an undoable
        brush edit), so that the new mask does not overwrite them."""
        if painted is None:
            return
        layer_mask = self.mask_layer.data > 0
        merged = patch.mask.copy() if patch.mask is not None else np.zeros(patch.shape, dtype=bool)
        merged[painted] = layer_mask[painted]
        self.session.sync_mask(patch, merged)

    def _sync_from_layer(self) -> None:
        """Hand brush edits of the mask layer to the session."""
        patch, layer = self.session.current, self.mask_layer
        if (
            patch is None or layer is None or self.busy or self._writing_mask
            or layer.data.shape != patch.shape
        ):
            return
        if self.session.sync_mask(patch, layer.data):
            self._refresh()

    # -- jobs -----------------------------------------------------------------------------------

    def _start(
        self,
        func: Callable[..., Any],
        *args: Any,
        on_done: Callable[[Any], None],
        then: Callable[[], None] | None = None,
    ) -> None:
        """Run ``func(*args)`` in a worker thread; ``on_done(result)`` runs on the GUI thread,
        then ``then()`` once the worker has finished (successfully or not), then the next queued
        click."""
        self._set_busy(True)
        done = threading.Event()

        def job() -> Any:
            try:
                return func(*args)
            except _Cancelled:
                return _Cancelled
            finally:
                done.set()

        def returned(result: Any) -> None:
            if not self._closing and result is not _Cancelled:
                on_done(result)

        worker = create_worker(job, _start_thread=False)
        worker.returned.connect(returned)
        worker.errored.connect(self._on_error)
        worker.finished.connect(lambda: self._finished(done, then))
        self._jobs_done.append(done)
        worker.start()

    def _finished(self, done: threading.Event, then: Callable[[], None] | None) -> None:
        self._jobs_done.remove(done)
        if self._closing:  # the panel's Qt objects may be gone
            return
        self._set_busy(False)
        if self._running is not None:  # the click failed: its point goes
            failed, self._running = self._running, None
            if failed.patch is self.session.current:
                self._show_clicks(failed.patch)
        if self._strokes_waiting:  # strokes made during a job that showed no new mask
            self._strokes_waiting = False
            self._sync_from_layer()
        if then is not None:
            then()
        if not self.busy:
            self._next_queued()

    def _on_error(self, exc: Exception) -> None:
        if not self._closing:
            show_error(str(exc))

    def _check_cancel(self, done: int, total: int) -> None:
        """Progress callback of a segmentation (worker thread)."""
        if self._closing:
            raise _Cancelled
        self._progress.changed.emit(done, total)

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

    def _confirm_drop(self, patch: Patch, what: str) -> bool:
        """Ask before ``what`` drops the unsaved corrections of ``patch``; ``True`` when there are
        none (exported corrections are on disk)."""
        if not patch.unsaved or (not patch.clicks and not patch.brush_edited):
            return True
        answer = QMessageBox.question(
            self, "Drop corrections?",
            f"{what} drops the {len(patch.clicks)} click(s) and brush edits of {patch.name}. Continue?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No,
        )
        return answer == QMessageBox.StandardButton.Yes

    # -- segment, click, undo, reset ------------------------------------------------------------

    def segment(self) -> None:
        """Automatic mask in a worker, then the click embedding in a second worker."""
        patch = self._ready("segmenting")
        if patch is None or not self._confirm_drop(patch, "Segmenting again"):
            return
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self._message("Segmenting…")
        self._start(self.session.compute_segmentation, patch, self._check_cancel,
                    on_done=lambda prob: self._segmented(patch, prob),
                    then=lambda: self._run_jobs(patch, "segmented"))

    def _run_jobs(self, patch: Patch, event: PatchEvent) -> None:
        """Start the first background job the session says ``patch`` needs after ``event``
        (`AnnotationSession.jobs_after`); each job asks again when it is done."""
        jobs = self.session.jobs_after(patch, event, segment_new=self.auto_segment_box.isChecked())
        if not jobs:
            return
        if jobs[0] == "segment":
            self.segment()
        else:
            self._encode(patch)

    def _segmented(self, patch: Patch, prob: np.ndarray) -> None:
        painted = self._painted_since(patch)
        self.session.apply_segmentation(patch, prob)
        self._keep_strokes(patch, painted)
        if patch is self.session.current:
            self._show_mask(patch)
        self._message("Automatic mask ready; encoding the image for clicks…")

    def _encode(self, patch: Patch) -> None:
        """The click embedding of ``patch``, in the background (the bar shows work of unknown length)."""
        self.progress_bar.setRange(0, 0)
        self._start(self.session.prepare_embedding, patch, on_done=lambda _r: self._encoded())

    def _encoded(self) -> None:
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(1)
        self._message("Ready for clicks.")

    def _on_progress(self, done: int, total: int) -> None:
        self.progress_bar.setRange(0, total)
        self.progress_bar.setValue(done)

    def on_mouse_drag(self, _viewer: Any, event: Any) -> Generator[None, None, None]:
        """Mouse callback: a press and release that moved at most the platform's drag distance
        (a few screen pixels) is a click (`click_label`: positive or negative) at the press
        position; a longer drag is left to napari (pan). Ignored while a layer tool other than
        pan/zoom (brush, eraser, ...) is active."""
        active = self.viewer.layers.selection.active
        positive = click_label(event.button, event.modifiers)
        if self._image_layer is None or positive is None or getattr(active, "mode", "pan_zoom") != "pan_zoom":
            return
        position, start = tuple(event.position), np.asarray(event.pos, dtype=float)
        slop = QApplication.startDragDistance()
        moved = 0.0
        yield
        while event.type == "mouse_move":
            moved = max(moved, float(np.abs(np.asarray(event.pos, dtype=float) - start).max()))
            yield
        if moved > slop:
            return
        row, col = np.round(self._image_layer.world_to_data(position)[-2:]).astype(int)
        self.add_click(int(row), int(col), positive)

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
        kind = "Positive" if positive else "Negative"
        if self.busy:
            self._queued.append(_QueuedClick(patch, row, col, positive))
            self._show_clicks(patch)
            self._message(f"{kind} click at (row {row}, col {col}) queued ({len(self._queued)} waiting).")
            return
        self._sync_from_layer()
        self._start_click(_QueuedClick(patch, row, col, positive))

    def _start_click(self, click: _QueuedClick) -> None:
        kind = "Positive" if click.positive else "Negative"
        where = "" if click.patch is self.session.current else f" on {click.patch.name}"
        self._message(f"{kind} click at (row {click.row}, col {click.col}){where}…")
        self._running = click
        if click.patch is self.session.current:
            self._show_clicks(click.patch)
        self._start(self._compute_click, click.patch, click.row, click.col, click.positive, _gui_torch_threads(),
                    on_done=self._clicked)

    def _compute_click(self, patch: Patch, row: int, col: int, positive: bool, restore: int) -> ClickResult:
        """`AnnotationSession.compute_click` with `click_threads` torch threads (worker thread),
        then torch's count back to ``restore``, the GUI thread's."""
        with torch_threads(click_threads(), restore):
            return self.session.compute_click(patch, row, col, positive)

    def _next_queued(self) -> None:
        """The next queued click (on whichever patch it was made), else the jobs of the patch
        that was opened while a job ran."""
        if self._queued:
            self._start_click(self._queued.popleft())
            return
        patch, self._opened_while_busy = self._opened_while_busy, None
        if patch is not None and patch is self.session.current:
            self._run_jobs(patch, "opened")

    def _clicked(self, result: ClickResult) -> None:
        painted = self._painted_since(result.patch)
        self._running = None
        self.session.apply_click(result)
        self._keep_strokes(result.patch, painted)
        if result.patch is self.session.current:
            self._show_mask(result.patch, select=False)
        waiting = f" ({len(self._queued)} waiting)" if self._queued else ""
        self._message(f"Click done in {result.latency_s * 1000:.0f} ms{waiting}.")

    def undo(self) -> None:
        """Undo the last click or brush edit (a queued click first)."""
        patch = self.session.current
        if patch is not None and self._queued and self._queued[-1].patch is patch:
            self._queued.pop()
            self._show_clicks(patch)
            self._message("Queued click removed.")
            return
        patch = self._ready("undo")
        if patch is None:
            return
        self._sync_from_layer()
        if self.session.undo(patch):
            self._show_mask(patch)
        else:
            self._message("Nothing to undo.")

    def redo(self) -> None:
        """Redo the last click, brush edit or reset that undo took back."""
        patch = self._ready("redo")
        if patch is None:
            return
        self._sync_from_layer()
        if self.session.redo(patch):
            self._show_mask(patch)
        else:
            self._message("Nothing to redo.")

    def reset(self) -> None:
        patch = self._ready("reset")
        if patch is not None and self._confirm_drop(patch, "Reset"):
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
        self._sync_from_layer()
        self.session.sync_mask(patch, mask > 0)
        self._show_mask(patch)
        self._message(f"{patch.name}: mask from {source}; encoding the image for clicks…")
        self._run_jobs(patch, "mask set")
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

    def _start_from_file_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Starting mask", "", "Masks and GeoJSON (*.png *.tif *.tiff *.geojson *.json)"
        )
        if path:
            self.start_from_file(path)

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
        self._sync_from_layer()
        self._message(f"Exporting {patch.name}…")

        succeeded = []

        def exported(result: Any) -> None:
            succeeded.append(result)
            show_info(f"Exported {result.mask.name}, {result.sidecar.name}, {result.geojson.name} to {out}")
            self._message(f"Exported {patch.name} to {out}.")
            self._refresh()

        after = (lambda: then() if succeeded else None) if then is not None else None
        self._start(self.session.export, patch, out, on_done=exported, then=after)
        return True

    def accept_and_next(self) -> None:
        self.export(then=self.next_patch)

    # -- closing --------------------------------------------------------------------------------

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
        """Before the viewer window closes: ask about unsaved corrections, then wait for the job."""
        if event.type() == QEvent.Type.Close and not self._closing:
            main_window, qt_viewer = self._close_watched()
            if obj is main_window and not self._confirm_close():
                event.ignore()
                return True
            if obj is main_window or obj is qt_viewer:
                self.shutdown()
        return super().eventFilter(obj, event)

    def _close_watched(self) -> tuple[QObject | None, QObject | None]:
        """napari's main window and its QtViewer (private attributes: napari has no close hook)."""
        window = self.viewer.window
        return getattr(window, "_qt_window", None), getattr(window, "_qt_viewer", None)

    def _confirm_close(self) -> bool:
        unsaved = [p.name for p in self.session.patches if p.unsaved]
        if not unsaved:
            return True
        names = ", ".join(unsaved[:5]) + (" …" if len(unsaved) > 5 else "")
        answer = QMessageBox.question(
            self, "Unsaved corrections",
            f"{len(unsaved)} patch(es) have corrections that are not exported ({names}). Close anyway?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No,
        )
        return answer == QMessageBox.StandardButton.Yes

    def shutdown(self, timeout_s: float = 60.0) -> None:
        """Stop taking work and wait for the running job (a segmentation stops at its next window),
        so that no worker thread outlives the viewer."""
        self._closing = True
        self._queued.clear()
        for done in list(self._jobs_done):
            done.wait(timeout_s)

    # -- status ----------------------------------------------------------------------------------

    def _set_busy(self, busy: bool) -> None:
        """While a job runs the actions wait; navigation stays usable."""
        self.busy = busy
        for widget in self._action_buttons:
            widget.setEnabled(not busy)

    def _message(self, text: str) -> None:
        self.message_label.setText(text)
        self.viewer.status = text

    def _refresh(self) -> None:
        """Patch list with states and the live numbers (only the items whose text changed are
        rewritten: this runs after every click)."""
        self.patch_list.blockSignals(True)
        texts = [f"{patch.name}  [{patch.state}]" for patch in self.session.patches]
        if self.patch_list.count() != len(texts):
            self.patch_list.clear()
            self.patch_list.addItems(texts)
        for row, text in enumerate(texts):
            item = self.patch_list.item(row)
            if item.text() != text:
                item.setText(text)
        if self.patch_list.currentRow() != self.session.index:
            self.patch_list.setCurrentRow(self.session.index)
        self.patch_list.blockSignals(False)
        patch = self.session.current
        n = len(patch.clicks) if patch is not None else 0
        last = f"{patch.clicks[-1].latency_s * 1000:.0f} ms" if patch is not None and patch.clicks else "–"
        spc = self.session.seconds_per_click
        spc_text = f"{spc:.3f} s" if spc is not None else "–"
        self.stats_label.setText(f"Clicks on this patch: {n}   last click: {last}   s/click (session): {spc_text}")


def click_threads() -> int:
    """Torch threads for a click: one core is left to napari's GUI thread, which paints the
    mask. On a busy 2-core machine two threads made the click model 3-4x slower than one
    (threads waiting for each other on a shared core; ``benchmarks/viewer_click.md``)."""
    import torch

    return max(1, min(torch.get_num_threads(), (os.cpu_count() or 1) - 1))


def _gui_torch_threads() -> int:
    import torch

    return torch.get_num_threads()


@contextmanager
def torch_threads(n: int, restore: int) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads, then set ``restore`` again.

    torch keeps the count per calling thread (OpenMP and MKL thread-local settings) plus a
    default for threads started later, which ``set_num_threads`` also sets. ``restore`` is the
    count the GUI thread had (read there when the job was made), so afterwards every thread
    started later gets it again; the GUI thread and other running threads keep theirs throughout
    (only a thread started during the block would inherit ``n``).
    """
    import torch

    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(restore)


def _paler(rgba: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    return (*rgba[:3], 0.45)


def _import_model_stack() -> None:
    """Import torch, timm and segment-anything on the GUI thread, without triton.

    Their first import pulls in torch._dynamo, which imports triton (through torchvision).
    Once napari has an OpenGL context on Mesa, loading triton's bundled LLVM next to Mesa's
    crashes the process (segmentation fault, seen with napari 0.9 under xvfb). napari-cosas
    never compiles kernels, so when triton is not loaded yet, it is marked unavailable for
    this process (torch then runs without it) before the import.
    """
    if "triton" not in sys.modules:
        sys.modules["triton"] = None  # makes `import triton` raise ImportError
    from . import predictor  # noqa: F401
    from .models import segmenter  # noqa: F401


def default_export_dir(patches: list[Patch]) -> Path:
    """``cosas_export`` next to the first patch opened from a file, when that folder is writable
    and not inside this package (its sample data); else in the home folder."""
    package = Path(__file__).resolve().parent
    folder = next((p.path.resolve().parent for p in patches if p.path is not None), None)
    if folder is None or folder.is_relative_to(package) or not os.access(folder, os.W_OK):
        folder = Path.home()
    return folder / EXPORT_DIR_NAME


def _devices() -> list[str]:
    import torch

    return ["auto", "cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _key_handler(action: Callable[[], Any]) -> Callable[[Any], None]:
    def handler(_viewer_or_layer: Any) -> None:
        action()

    return handler