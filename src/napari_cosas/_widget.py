"""The napari-cosas dock widget: a thin Qt front end over :mod:`napari_cosas.session`.

It reads and writes three layers (the patch image, the ``tumour mask`` labels, the ``clicks``
points), runs every model call in a worker thread and shows errors as notifications.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from .heap import keep_freed_heap_memory
from .session import AnnotationSession, ClickResult, ModelBundle, Patch, available_models

if TYPE_CHECKING:
    import napari

MASK_LAYER = "tumour mask"
CLICKS_LAYER = "clicks"
POSITIVE_RGBA = (0.1, 0.9, 0.1, 1.0)
NEGATIVE_RGBA = (0.95, 0.1, 0.1, 1.0)

HELP = """<b>Mouse</b> (labels layer in pan/zoom mode, key <i>z</i>): left click = positive
(tumour), right click or Ctrl/Alt + click = negative (background). A drag pans. To paint, pick
the labels layer's brush (<i>p</i>) or eraser (<i>e</i>); edits are kept and the next click
starts from them. New patches are segmented as they open (see the box above).<br><b>Keys</b>:
<i>s</i> segment, <i>u</i> undo last click or edit,
<i>r</i> reset to the automatic mask, <i>Shift+S</i> export, <i>a</i> accept (export) and next,
<i>n</i> next patch, <i>Shift+N</i> previous patch."""


def write_labels(layer: Any, labels: np.ndarray) -> None:
    """Show ``labels`` (``(H, W)`` uint8) in a napari Labels ``layer``.

    A click changes only a window of the mask: when the shape and dtype are unchanged only the
    changed pixels are written and the layer refreshed, which shows it about 1.5x as fast as
    replacing the layer's data (``benchmarks/mask_update.md``).
    """
    data = layer.data
    if not isinstance(data, np.ndarray) or data.shape != labels.shape or data.dtype != labels.dtype:
        layer.data = labels
        return
    changed = data != labels
    if changed.any():
        data[changed] = labels[changed]
        layer.refresh()


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
        self._worker: Any = None
        self._image_layer: Any = None
        self._progress = _Progress()
        self._build_ui()
        self._progress.changed.connect(self._on_progress)
        self.viewer.mouse_drag_callbacks.append(self.on_mouse_drag)
        self._bind_keys()
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
        self.undo_button = self._button("Undo", self.undo, "u: undo the last click or brush edit")
        self.reset_button = self._button("Reset", self.reset, "r: back to the automatic mask")
        actions.addWidget(self.segment_button, 0, 0)
        actions.addWidget(self.undo_button, 0, 1)
        actions.addWidget(self.reset_button, 0, 2)
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
            self.segment_button, self.undo_button, self.reset_button, self.export_button,
            self.accept_button, self.prev_button, self.next_button, self.patch_list,
        )

    def _bind_keys(self) -> None:
        keys: dict[str, Callable[[], Any]] = {
            "n": self.next_patch, "Shift-N": self.previous_patch, "s": self.segment,
            "u": self.undo, "r": self.reset, "Shift-S": self.export, "a": self.accept_and_next,
        }
        for key, action in keys.items():
            self.viewer.bind_key(key, _key_handler(action), overwrite=True)

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
        folder = QFileDialog.getExistingDirectory(self, "Export folder")
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
        """List the viewer's image layers (other than the widget's own) as patches."""
        added = []
        for layer in list(self.viewer.layers):
            if layer.__class__.__name__ != "Image" or layer is self._image_layer:
                continue
            try:
                added.append(self.session.add_array(layer.name, np.asarray(layer.data), layer.source.path))
            except ValueError as exc:
                show_error(f"{layer.name}: {exc}")
                continue
            layer.visible = False
        self._added(added)

    def _added(self, added: list[Patch]) -> None:
        if added:
            self.select_patch(self.session.patches.index(added[0]))
        else:
            self._refresh()

    def select_patch(self, index: int) -> None:
        """Show patch ``index`` (its unsaved corrections are kept in the session)."""
        if self.busy or index == self.session.index:
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
        if patch.state == "new" and self.auto_segment_box.isChecked():
            self.segment()

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
        image = patch.load()
        if self._image_layer is None or self._image_layer not in self.viewer.layers:
            self._image_layer = self.viewer.add_image(image, name=patch.name, rgb=True)
        else:
            self._image_layer.data = image
            self._image_layer.name = patch.name
        self.viewer.reset_view()
        self._show_mask(patch)

    def _show_mask(self, patch: Patch) -> None:
        """Write the patch's mask and clicks into the layers (creating them when needed)."""
        mask = patch.mask if patch.mask is not None else np.zeros(patch.shape, dtype=bool)
        labels = mask.astype(np.uint8)
        layer = self.mask_layer
        if layer is None:
            layer = self.viewer.add_labels(labels, name=MASK_LAYER, opacity=0.5)
            layer.selected_label = 1
            layer.events.paint.connect(lambda _event: self._sync_from_layer())
        else:
            write_labels(layer, labels)
        points = patch.clicker.points_rc()
        colors = [POSITIVE_RGBA if c.is_positive else NEGATIVE_RGBA for c in patch.clicker.clicks]
        clicks = self.clicks_layer
        if clicks is None:
            clicks = self.viewer.add_points(points, name=CLICKS_LAYER, size=max(4, max(patch.shape) // 60))
        else:
            clicks.data = points
        if len(points):
            clicks.face_color = np.array(colors)
        self.viewer.layers.selection.active = layer
        self._refresh()

    def _sync_from_layer(self) -> None:
        """Hand brush edits of the mask layer to the session."""
        patch, layer = self.session.current, self.mask_layer
        if patch is None or layer is None or self.busy or layer.data.shape != patch.shape:
            return
        if self.session.sync_mask(patch, layer.data):
            self._refresh()

    # -- segment, click, undo, reset ------------------------------------------------------------

    def _start(
        self,
        func: Callable[..., Any],
        *args: Any,
        on_done: Callable[[Any], None],
        then: Callable[[], None] | None = None,
    ) -> None:
        """Run ``func(*args)`` in a worker thread; ``on_done(result)`` runs on the GUI thread,
        then ``then()`` once the worker has finished (successfully or not)."""
        self._set_busy(True)
        worker = create_worker(func, *args, _start_thread=False)
        worker.returned.connect(on_done)
        worker.errored.connect(lambda exc: show_error(str(exc)))
        worker.finished.connect(lambda: self._set_busy(False))
        if then is not None:
            worker.finished.connect(then)
        self._worker = worker
        worker.start()

    def _ready(self) -> Patch | None:
        """The current patch when no job runs, else ``None`` with a message."""
        if self.busy:
            self._message("Busy: wait for the running job.")
            return None
        if self.session.current is None:
            self._message("Open a patch first.")
            return None
        return self.session.current

    def segment(self) -> None:
        """Automatic mask in a worker, then the click embedding in a second worker."""
        patch = self._ready()
        if patch is None:
            return
        self.progress_bar.setValue(0)
        self._message("Segmenting…")
        self._start(self.session.compute_segmentation, patch, self._progress.changed.emit,
                    on_done=lambda prob: self._segmented(patch, prob),
                    then=lambda: self._encode(patch) if patch.state == "segmented" else None)

    def _segmented(self, patch: Patch, prob: np.ndarray) -> None:
        self.session.apply_segmentation(patch, prob)
        if patch is self.session.current:
            self._show_mask(patch)
        self._message("Automatic mask ready; encoding the image for clicks…")

    def _encode(self, patch: Patch) -> None:
        """The click embedding of ``patch``, in the background."""
        self._start(self.session.prepare_embedding, patch, on_done=lambda _r: self._message("Ready for clicks."))

    def _on_progress(self, done: int, total: int) -> None:
        self.progress_bar.setMaximum(total)
        self.progress_bar.setValue(done)

    def on_mouse_drag(self, _viewer: Any, event: Any) -> Generator[None, None, None]:
        """Mouse callback: a click without drag adds a positive (left) or negative (right,
        Ctrl / Alt + left) click; drags are left to napari (pan). Ignored while a layer tool
        other than pan/zoom (brush, eraser, ...) is active."""
        active = self.viewer.layers.selection.active
        if self._image_layer is None or getattr(active, "mode", "pan_zoom") != "pan_zoom":
            return
        position, button, modifiers = tuple(event.position), event.button, set(event.modifiers)
        dragged = False
        yield
        while event.type == "mouse_move":
            dragged = True
            yield
        if dragged:
            return
        row, col = np.round(self._image_layer.world_to_data(position)[-2:]).astype(int)
        positive = button == 1 and not ({"Control", "Alt"} & {str(m) for m in modifiers})
        self.add_click(int(row), int(col), positive)

    def add_click(self, row: int, col: int, positive: bool) -> None:
        """Refine the mask with a click at ``(row, col)`` (image pixels), in a worker."""
        patch = self._ready()
        if patch is None:
            return
        if not patch.contains(row, col):
            self._message(f"Click at (row {row}, col {col}) is outside the image: ignored.")
            return
        self._sync_from_layer()
        self._message(f"{'Positive' if positive else 'Negative'} click at (row {row}, col {col})…")
        self._start(self.session.compute_click, patch, row, col, positive, on_done=self._clicked)

    def _clicked(self, result: ClickResult) -> None:
        self.session.apply_click(result)
        if result.patch is self.session.current:
            self._show_mask(result.patch)
        self._message(f"Click done in {result.latency_s * 1000:.0f} ms.")

    def undo(self) -> None:
        patch = self._ready()
        if patch is None:
            return
        self._sync_from_layer()
        if self.session.undo(patch):
            self._show_mask(patch)
        else:
            self._message("Nothing to undo.")

    def reset(self) -> None:
        patch = self._ready()
        if patch is not None:
            self.session.reset(patch)
            self._show_mask(patch)

    # -- export -----------------------------------------------------------------------------

    def export(self) -> bool:
        """Export the current patch to the output folder; ``False`` (and a notification) on error."""
        patch = self._ready()
        if patch is None:
            return False
        out = self.out_edit.text().strip()
        if not out:
            show_error("Choose an output folder before exporting.")
            return False
        self._sync_from_layer()
        try:
            result = self.session.export(patch, out)
        except (OSError, ValueError) as exc:
            show_error(str(exc))
            return False
        show_info(f"Exported {result.mask.name}, {result.sidecar.name}, {result.geojson.name} to {out}")
        self._refresh()
        return True

    def accept_and_next(self) -> None:
        if self.export():
            self.next_patch()

    # -- status ----------------------------------------------------------------------------------

    def _set_busy(self, busy: bool) -> None:
        self.busy = busy
        for widget in self._action_buttons:
            widget.setEnabled(not busy)

    def _message(self, text: str) -> None:
        self.message_label.setText(text)
        self.viewer.status = text

    def _refresh(self) -> None:
        """Patch list with states and the live numbers."""
        self.patch_list.blockSignals(True)
        self.patch_list.clear()
        for patch in self.session.patches:
            self.patch_list.addItem(f"{patch.name}  [{patch.state}]")
        self.patch_list.setCurrentRow(self.session.index)
        self.patch_list.blockSignals(False)
        patch = self.session.current
        n = len(patch.clicks) if patch is not None else 0
        last = f"{patch.clicks[-1].latency_s * 1000:.0f} ms" if patch is not None and patch.clicks else "–"
        spc = self.session.seconds_per_click
        spc_text = f"{spc:.3f} s" if spc is not None else "–"
        self.stats_label.setText(f"Clicks on this patch: {n}   last click: {last}   s/click (session): {spc_text}")


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


def _devices() -> list[str]:
    import torch

    return ["auto", "cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _key_handler(action: Callable[[], Any]) -> Callable[[Any], None]:
    def handler(_viewer: Any) -> None:
        action()

    return handler
