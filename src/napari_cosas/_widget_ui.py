"""The dock widget's controls and their layout (the Qt Designer ``setupUi`` pattern): no state,
no behaviour beyond connecting each control (and its file dialog) to the widget's method.

:func:`setup_ui` creates the controls as attributes of the widget (``patch_list``,
``segment_button``, ``out_edit``, ...); :func:`show_patch_list` and :func:`click_stats` write
what the session holds into them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    QMessageBox,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ._widget_layers import MASK_DISPLAYS
from .interaction.patch import Patch
from .interaction.session import AnnotationSession
from .models.registry import available_models

if TYPE_CHECKING:
    from ._widget import CosasWidget

#: Default export folder's name (`default_export_dir`).
EXPORT_DIR_NAME = "cosas_export"

HELP = """<b>Mouse</b> (in pan/zoom mode, key <i>z</i>): left click = positive (tumour); right
click or Ctrl+click (Cmd+click on macOS) = negative (background). Shift and Alt clicks are left
to napari. The model starts at the press, the release confirms the click. A drag pans; a click
that moves a few pixels still counts. Clicks made while the
model works are queued and applied in order (shown at once, paler); next / previous work
meanwhile. To paint, pick the labels
layer's brush (<i>p</i>) or eraser (<i>e</i>); edits are kept and the next click starts from
them. <i>Start from layer / file</i> takes an existing mask (labels layer, mask file, QuPath
GeoJSON) to correct.<br><b>Keys</b> (on the canvas or in this panel): <i>s</i> segment,
<i>u</i> or Ctrl+Z undo the last click, edit or reset, <i>Shift+U</i> or Ctrl+Shift+Z redo,
<i>r</i> reset to the automatic mask (undoable; <i>s</i> and <i>r</i> ask before dropping corrections), <i>Shift+S</i> export, <i>a</i> accept (export) and next,
<i>n</i> next patch, <i>Shift+N</i> previous patch."""


def _button(text: str, slot: Callable[[], Any], tip: str = "") -> QPushButton:
    button = QPushButton(text)
    button.clicked.connect(lambda _checked=False: slot())
    button.setToolTip(tip)
    return button


def setup_ui(w: CosasWidget) -> None:
    """Create the panel's controls on ``w`` and lay them out, top to bottom: opening, the patch
    list, navigation, model choices, actions, progress, export, statistics and help."""
    layout = QVBoxLayout(w)
    opener = QHBoxLayout()
    opener.addWidget(_button("Open image…", lambda: _open_images(w)))
    opener.addWidget(_button("Open folder…", lambda: _open_folder(w)))
    opener.addWidget(_button("Add viewer images", w.add_viewer_images))
    layout.addLayout(opener)

    w.patch_list = QListWidget()
    w.patch_list.currentRowChanged.connect(w.on_row_changed)
    layout.addWidget(w.patch_list)
    nav = QHBoxLayout()
    w.prev_button = _button("◀ Previous", w.previous_patch, "Shift+N")
    w.next_button = _button("Next ▶", w.next_patch, "n")
    nav.addWidget(w.prev_button)
    nav.addWidget(w.next_button)
    layout.addLayout(nav)

    form = QFormLayout()
    w.segmenter_combo = QComboBox()
    w.segmenter_combo.addItems(available_models("segmenter"))
    w.click_combo = QComboBox()
    w.click_combo.addItems(available_models("click"))
    w.device_combo = QComboBox()
    w.device_combo.addItems(devices())
    for combo in (w.segmenter_combo, w.click_combo, w.device_combo):
        combo.currentTextChanged.connect(lambda _text: w.on_models_changed())
    form.addRow("Segmenter", w.segmenter_combo)
    form.addRow("Click model", w.click_combo)
    form.addRow("Device", w.device_combo)
    w.effect_combo = QComboBox()
    w.effect_combo.addItems(["local", "global"])
    w.effect_combo.setToolTip(
        "local: a click changes only the region under it (the rest of the mask, brush edits "
        "included, is kept); global: the same, and beyond the click's window the pixels the "
        "model is sure of (probability above 0.95 or below 0.05) take its prediction, brush "
        "edits excepted"
    )
    w.effect_combo.currentTextChanged.connect(w.on_effect_changed)
    form.addRow("Click effect", w.effect_combo)
    w.display_combo = QComboBox()
    w.display_combo.addItems(list(MASK_DISPLAYS))
    w.display_combo.setToolTip("outline: the mask's contour over the tissue; filled: a half-transparent fill")
    w.display_combo.currentTextChanged.connect(w.on_display_changed)
    form.addRow("Mask display", w.display_combo)
    w.auto_segment_box = QCheckBox("Segment each new patch when it opens")
    w.auto_segment_box.setChecked(True)
    w.auto_segment_box.setToolTip(
        "Compute the automatic mask and the click embedding as soon as a patch nobody has worked "
        "on is shown (clicks refine that mask; clicks on an empty mask find much less)"
    )
    form.addRow(w.auto_segment_box)
    layout.addLayout(form)

    actions = QGridLayout()
    w.segment_button = _button("Segment", w.segment, "s: automatic mask")
    w.undo_button = _button("Undo", w.undo, "u: undo the last click, brush edit or reset")
    w.redo_button = _button("Redo", w.redo, "Shift+U: redo what undo took back")
    w.reset_button = _button("Reset", w.reset, "r: back to the automatic mask (undoable)")
    w.from_layer_button = _button(
        "Start from layer", w.start_from_layer,
        "Use the selected labels layer (non-zero = tumour) as this patch's mask; clicks then correct it",
    )
    w.from_file_button = _button(
        "Start from file…", lambda: _open_start_mask(w),
        "Use a mask file (PNG / TIFF) or a QuPath GeoJSON export as this patch's mask; clicks then correct it",
    )
    actions.addWidget(w.segment_button, 0, 0)
    actions.addWidget(w.undo_button, 0, 1)
    actions.addWidget(w.redo_button, 0, 2)
    actions.addWidget(w.reset_button, 0, 3)
    actions.addWidget(w.from_layer_button, 1, 0, 1, 2)
    actions.addWidget(w.from_file_button, 1, 2, 1, 2)
    layout.addLayout(actions)
    w.progress_bar = QProgressBar()
    layout.addWidget(w.progress_bar)

    out = QHBoxLayout()
    w.out_edit = QLineEdit()
    w.out_edit.setPlaceholderText("output folder")
    out.addWidget(w.out_edit)
    out.addWidget(_button("…", lambda: _choose_out_dir(w)))
    layout.addLayout(out)
    export_row = QHBoxLayout()
    w.export_button = _button("Export", w.export, "Shift+S")
    w.accept_button = _button("Accept && next", w.accept_and_next, "a")
    export_row.addWidget(w.export_button)
    export_row.addWidget(w.accept_button)
    layout.addLayout(export_row)

    w.stats_label = QLabel()
    w.message_label = QLabel()
    help_label = QLabel(HELP)
    for label in (w.stats_label, w.message_label, help_label):
        label.setWordWrap(True)  # a longer line wraps instead of widening the dock (and resizing the canvas)
        layout.addWidget(label)
    w.action_buttons = (
        w.segment_button, w.undo_button, w.redo_button, w.reset_button, w.export_button,
        w.accept_button, w.from_layer_button, w.from_file_button,
    )


def _open_images(w: CosasWidget) -> None:
    paths, _ = QFileDialog.getOpenFileNames(w, "Open patches", "", "Images (*.png *.jpg *.jpeg *.tif *.tiff *.bmp)")
    if paths:
        w.add_paths(paths)


def _open_folder(w: CosasWidget) -> None:
    folder = QFileDialog.getExistingDirectory(w, "Open a folder of patches")
    if folder:
        w.add_folder(folder)


def _choose_out_dir(w: CosasWidget) -> None:
    folder = QFileDialog.getExistingDirectory(w, "Export folder", str(w.output_dir() or ""))
    if folder:
        w.out_edit.setText(folder)


def _open_start_mask(w: CosasWidget) -> None:
    path, _ = QFileDialog.getOpenFileName(
        w, "Starting mask", "", "Masks and GeoJSON (*.png *.tif *.tiff *.geojson *.json)"
    )
    if path:
        w.start_from_file(path)


def confirm_drop(parent: QWidget, patch: Patch, what: str) -> bool:
    """Ask before ``what`` drops the unsaved corrections of ``patch``; ``True`` when there are
    none (exported corrections are on disk)."""
    if not patch.unsaved or (not patch.clicks and not patch.brush_edited):
        return True
    answer = QMessageBox.question(
        parent, "Drop corrections?",
        f"{what} drops the {len(patch.clicks)} click(s) and brush edits of {patch.name}. Continue?",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No,
    )
    return answer == QMessageBox.StandardButton.Yes


def show_patch_list(patch_list: QListWidget, session: AnnotationSession) -> None:
    """The patches with their states, the current one selected (only the items whose text
    changed are rewritten: this runs after every click; no ``currentRowChanged`` is emitted)."""
    patch_list.blockSignals(True)
    texts = [f"{patch.name}  [{patch.state}]" for patch in session.patches]
    if patch_list.count() != len(texts):
        patch_list.clear()
        patch_list.addItems(texts)
    for row, text in enumerate(texts):
        item = patch_list.item(row)
        if item.text() != text:
            item.setText(text)
    if patch_list.currentRow() != session.index:
        patch_list.setCurrentRow(session.index)
    patch_list.blockSignals(False)


def click_stats(session: AnnotationSession) -> str:
    """The live numbers: the current patch's clicks, the last click's time, the session's s/click."""
    patch = session.current
    n = len(patch.clicks) if patch is not None else 0
    last = f"{patch.clicks[-1].latency_s * 1000:.0f} ms" if patch is not None and patch.clicks else "–"
    spc = session.seconds_per_click
    spc_text = f"{spc:.3f} s" if spc is not None else "–"
    return f"Clicks on this patch: {n}   last click: {last}   s/click (session): {spc_text}"


def default_export_dir(patches: list[Patch]) -> Path:
    """``cosas_export`` next to the first patch opened from a file, when that folder is writable
    and not inside this package (its sample data); else in the home folder."""
    package = Path(__file__).resolve().parent
    folder = next((p.path.resolve().parent for p in patches if p.path is not None), None)
    if folder is None or folder.is_relative_to(package) or not os.access(folder, os.W_OK):
        folder = Path.home()
    return folder / EXPORT_DIR_NAME


def devices() -> list[str]:
    """The device choices: ``auto``, ``cpu``, and ``cuda`` where a CUDA GPU is usable."""
    import torch

    return ["auto", "cpu"] + (["cuda"] if torch.cuda.is_available() else [])
