"""The dock widget in a real, shown viewer (run under xvfb-run), with tiny random models.

Every click and key is a real Qt event on the canvas or on the widget (QTest), so that what is
tested is what vispy and napari hand the widget.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi
from qtpy.QtCore import QEvent, QPoint, QPointF, Qt
from qtpy.QtGui import QMouseEvent
from qtpy.QtTest import QTest
from qtpy.QtWidgets import QApplication, QMessageBox

from napari_cosas._sample_data import sample_path
from napari_cosas._widget_layers import NEGATIVE_RGBA, POSITIVE_RGBA, paler
from napari_cosas._widget_mask_labels import MaskLabels
from napari_cosas.io.image_io import load_mask
from napari_cosas.inference.model_bundle import ModelBundle
from napari_cosas.models.sam_models import build_tiny_sam
from napari_cosas.models.segmenter import SegmenterConfig, build_segmenter
from napari_cosas.inference.predictor import ClickPredictor

pytestmark = pytest.mark.gui
TIMEOUT_MS = 120_000
LEFT, RIGHT = Qt.MouseButton.LeftButton, Qt.MouseButton.RightButton
NO_MOD = Qt.KeyboardModifier.NoModifier
CTRL, ALT, SHIFT = (
    Qt.KeyboardModifier.ControlModifier, Qt.KeyboardModifier.AltModifier, Qt.KeyboardModifier.ShiftModifier
)


def tiny_models() -> ModelBundle:
    torch.manual_seed(0)
    segmenter = build_segmenter(SegmenterConfig(backbone="test_convnext", crop=128, stride=85)).eval()
    predictor = ClickPredictor(build_tiny_sam(decoder="enhanced"), "tiny", device="cpu")
    return ModelBundle(segmenter=segmenter, predictor=predictor, segmenter_id="tiny-seg")


@pytest.fixture
def widget(make_napari_viewer, qtbot):
    from napari_cosas._widget import CosasWidget

    viewer = make_napari_viewer(show=True)
    w = CosasWidget(viewer, models=tiny_models())
    viewer.window.add_dock_widget(w)
    w.auto_segment_box.setChecked(False)  # the tests below drive segmentation themselves
    qtbot.waitExposed(viewer.window._qt_window)
    return w


def _wait(qtbot, w) -> None:
    """Until no job runs and the clicks layer shows the current patch's clicks (it is updated in
    a later event-loop turn than the mask)."""
    def settled() -> bool:
        patch, layer = w.session.current, w.clicks_layer
        shown = patch is None or layer is None or len(layer.data) == len(patch.clicks)
        return not w.busy and shown
    qtbot.waitUntil(settled, timeout=TIMEOUT_MS)


def _hold(session, name: str) -> threading.Event:
    """Make ``session.<name>`` (``compute_click`` / ``compute_segmentation``) wait in its worker
    until the returned event is set, so that a test can act while the job runs."""
    compute = getattr(session, name)

    def held(*args):
        gate.wait(60)
        return compute(*args)

    gate = threading.Event()
    setattr(session, name, held)
    return gate


def _finished_calls(session, name: str) -> list[tuple]:
    """Record the arguments of each finished call of ``session.<name>`` (``compute_click``), in
    the list returned, when it returns in its worker."""
    compute = getattr(session, name)
    calls: list[tuple] = []

    def recorded(*args):
        result = compute(*args)
        calls.append(args)
        return result

    setattr(session, name, recorded)
    return calls


def _canvas(w):
    return w.viewer.window._qt_viewer.canvas


def _screen_point(w, row: float, col: float) -> QPoint:
    """The canvas pixel showing world ``(row, col)`` (vispy's transform takes ``(x, y)``)."""
    view = _canvas(w).view
    x, y = (view.transform * view.scene.transform).map([col, row])[:2]
    return QPoint(round(x), round(y))


def click(
    w, row: float, col: float, button=LEFT, modifiers=NO_MOD, move: tuple[int, int] = (0, 0),
    held: Callable[[], None] | None = None,
) -> None:
    """Press, optionally call ``held()`` (say, to run the event loop while the button is held) and
    move by ``move`` screen pixels with the button held, and release on the canvas over image
    pixel ``(row, col)``."""
    native = _canvas(w).native
    start = _screen_point(w, row, col)
    QTest.mousePress(native, button, modifiers, start)
    if held is not None:
        held()
    end = start + QPoint(*move)
    if move != (0, 0):
        for step in (0.5, 1.0):
            at = QPointF(start) + (QPointF(end) - QPointF(start)) * step
            QApplication.sendEvent(
                native, QMouseEvent(QEvent.Type.MouseMove, at, native.mapToGlobal(at), Qt.MouseButton.NoButton,
                                    button, modifiers)
            )
    QTest.mouseRelease(native, button, modifiers, end)


def key(widget, k: Qt.Key, modifiers=NO_MOD) -> None:
    QTest.keyClick(widget, k, modifiers)


def _segment(qtbot, w) -> None:
    w.segment()
    qtbot.waitUntil(lambda: not w.busy and w.message_label.text() == "Ready for clicks.", timeout=TIMEOUT_MS)


def _answer(monkeypatch, button: QMessageBox.StandardButton) -> list[str]:
    """Make ``QMessageBox.question`` answer ``button``; returns the questions asked."""
    asked: list[str] = []

    def question(_parent, _title, text, *_args, **_kwargs):
        asked.append(text)
        return button

    monkeypatch.setattr(QMessageBox, "question", question)
    return asked


def test_click_label_reads_vispy_modifiers() -> None:
    from vispy.util import keys

    from napari_cosas._widget_canvas import click_label

    assert click_label(1, ()) is True and click_label(2, ()) is False
    assert click_label(1, (keys.CONTROL,)) is False and click_label(1, (keys.META,)) is False
    assert click_label(1, (keys.ALT,)) is None and click_label(1, (keys.SHIFT,)) is None
    assert click_label(3, ()) is None and click_label(2, (keys.CONTROL,)) is None


def test_segment_click_undo_export(widget, qtbot, tmp_path: Path) -> None:
    w = widget
    w.add_paths([sample_path(0), sample_path(1)])
    patch = w.session.current
    assert w.session.index == 0 and w.mask_layer is not None
    assert w.patch_list.count() == 2 and "[new]" in w.patch_list.item(0).text()
    # a default export folder; never inside the installed package (its sample data)
    assert w.output_dir() == Path.home() / "cosas_export"

    _segment(qtbot, w)
    assert w.progress_bar.value() == w.progress_bar.maximum() > 0
    assert patch.state == "segmented"
    assert np.array_equal(w.mask_layer.data > 0, patch.auto_mask)

    assert w.session.click_effect == "local"
    w.effect_combo.setCurrentText("global")
    assert w.session.click_effect == "global"
    w.effect_combo.setCurrentText("local")
    click(w, 50, 60)  # left: positive
    _wait(qtbot, w)
    assert patch.mask[50, 60]  # a local click always takes its own pixel
    click(w, 100, 120, RIGHT)  # right: negative
    _wait(qtbot, w)
    click(w, 150, 30, LEFT, CTRL)  # Ctrl + left (Cmd on macOS): negative
    _wait(qtbot, w)
    click(w, 160, 40, LEFT, ALT)  # Alt + left: napari's, not a click
    click(w, 170, 50, LEFT, SHIFT)  # Shift + left: napari's, not a click
    assert not w.busy
    click(w, 40, 100, LEFT, NO_MOD, move=(3, -2))  # a few pixels of hand jitter: still a click
    _wait(qtbot, w)
    center = tuple(w.viewer.camera.center)
    click(w, 100, 100, LEFT, NO_MOD, move=(60, 40))  # a drag: pans, no click
    qtbot.waitUntil(lambda: tuple(w.viewer.camera.center) != center, timeout=5_000)
    _wait(qtbot, w)  # the press started the click's model; the drag dropped its result
    assert [(c.row, c.col, c.positive) for c in patch.clicks] == [
        (50, 60, True), (100, 120, False), (150, 30, False), (40, 100, True)
    ]
    assert len(w.clicks_layer.data) == 4
    assert "Clicks on this patch: 4" in w.stats_label.text() and "ms" in w.stats_label.text()
    assert np.array_equal(w.mask_layer.data > 0, patch.mask)

    w.undo()
    assert len(patch.clicks) == 3 and len(w.clicks_layer.data) == 3
    assert np.array_equal(w.mask_layer.data > 0, patch.mask)

    w.viewer.reset_view()
    click(w, -5, 10)  # outside: ignored with a message
    assert "outside" in w.message_label.text() and not w.busy and len(patch.clicks) == 3

    w.mask_layer.data[:8, :8] = 1 - (w.mask_layer.data[:8, :8] > 0)  # a brush edit, picked up at export
    out = tmp_path / "out"
    w.out_edit.setText(str(out))
    assert w.export()
    assert w.busy  # the export runs in a worker
    _wait(qtbot, w)
    mask_file = out / "masks" / f"{patch.name}.png"
    assert np.array_equal(load_mask(mask_file) > 0, w.mask_layer.data > 0)
    sidecar = json.loads((out / "sidecars" / f"{patch.name}.json").read_text())
    assert [(c["row"], c["col"], c["positive"]) for c in sidecar["clicks"]] == [
        (50, 60, True), (100, 120, False), (150, 30, False)
    ]
    assert sidecar["brush_edited"] and sidecar["models"] == {"segmenter": "tiny-seg", "click": "tiny"}
    geojson = json.loads((out / "geojson" / f"{patch.name}.geojson").read_text())
    geometry = geojson["features"][0]["geometry"]
    polygons = [geometry["coordinates"]] if geometry["type"] == "Polygon" else geometry["coordinates"]
    xy = np.concatenate([np.array(p[0]) for p in polygons])
    rows, cols = np.nonzero(w.mask_layer.data)
    assert xy[:, 0].min() == cols.min() and xy[:, 0].max() == cols.max() + 1  # x = col
    assert xy[:, 1].min() == rows.min() and xy[:, 1].max() == rows.max() + 1  # y = row
    assert "[exported]" in w.patch_list.item(0).text()

    assert w.export()  # unchanged since its export: no duplicate
    _wait(qtbot, w)
    assert not (out / "masks" / f"{patch.name}_v2.png").exists()
    w.mask_layer.data[8:12, :8] = 1 - (w.mask_layer.data[8:12, :8] > 0)  # another brush edit: a new version
    assert w.export()
    _wait(qtbot, w)
    assert (out / "masks" / f"{patch.name}_v2.png").is_file()
    assert (out / "sidecars" / f"{patch.name}_v2.json").is_file()

    w.accept_and_next()
    _wait(qtbot, w)
    assert w.session.index == 1 and not (out / "masks" / f"{patch.name}_v3.png").exists()


def test_export_folder_expands_home(widget, qtbot, tmp_path: Path, monkeypatch) -> None:
    w = widget
    monkeypatch.setenv("HOME", str(tmp_path))
    w.add_paths([sample_path(0)])
    _segment(qtbot, w)
    w.out_edit.setText("~/exports")
    assert w.export()
    _wait(qtbot, w)
    assert (tmp_path / "exports" / "masks" / f"{w.session.current.name}.png").is_file()


def test_default_export_folder_is_next_to_the_patches(widget, tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "patches"
    folder.mkdir()
    shutil.copy(sample_path(0), folder)
    widget.add_folder(folder)
    assert widget.output_dir() == folder / "cosas_export"


def test_switching_keeps_corrections_and_reset_asks(widget, qtbot, monkeypatch) -> None:
    w = widget
    w.add_paths([sample_path(0), sample_path(1)])
    first = w.session.current
    _segment(qtbot, w)
    click(w, 20, 20)
    _wait(qtbot, w)
    corrected = first.mask.copy()
    w.next_patch()
    assert w.session.index == 1 and w.mask_layer.data.max() == 0 and len(w.clicks_layer.data) == 0
    w.previous_patch()
    assert w.session.current is first and "[corrected]" in w.patch_list.item(0).text()
    assert np.array_equal(w.mask_layer.data > 0, corrected) and len(w.clicks_layer.data) == 1

    asked = _answer(monkeypatch, QMessageBox.StandardButton.No)
    w.reset()
    w.segment()
    assert len(asked) == 2 and not w.busy  # both asked; "No" keeps the click
    assert len(first.clicks) == 1 and np.array_equal(w.mask_layer.data > 0, corrected)
    _answer(monkeypatch, QMessageBox.StandardButton.Yes)
    w.reset()
    assert np.array_equal(w.mask_layer.data > 0, first.auto_mask) and not first.clicks
    native = _canvas(w).native
    native.setFocus()
    key(native, Qt.Key.Key_U)  # the reset is undone: the click and its mask are back
    assert len(first.clicks) == 1 and np.array_equal(w.mask_layer.data > 0, corrected)
    assert "[corrected]" in w.patch_list.item(0).text()
    key(native, Qt.Key.Key_U, SHIFT)  # redo: reset again
    assert not first.clicks and np.array_equal(w.mask_layer.data > 0, first.auto_mask)
    key(native, Qt.Key.Key_U, SHIFT)
    assert "Nothing to redo" in w.message_label.text()


def test_viewer_images_are_not_duplicated_and_sidecar_reader(widget, qtbot, tmp_path: Path) -> None:
    from napari_cosas._sample_data import sample_1

    w = widget
    for data, meta, kind in sample_1():
        getattr(w.viewer, f"add_{kind}")(data, **meta)
    image_layer = w.viewer.layers[0]
    w.add_viewer_images()
    assert w.output_dir() == Path.home() / "cosas_export"  # no file behind the layer
    images = [layer for layer in w.viewer.layers if layer.__class__.__name__ == "Image"]
    assert images == [image_layer] and image_layer.visible  # shown in its own layer
    assert [layer.name for layer in w.viewer.layers][-2:] == ["tumour mask", "clicks"]
    w.add_viewer_images()  # again: nothing new
    assert len(w.session.patches) == 1
    _segment(qtbot, w)
    click(w, 10, 70)
    _wait(qtbot, w)
    w.out_edit.setText(str(tmp_path))
    assert w.export()
    _wait(qtbot, w)
    layers = w.viewer.open(str(tmp_path / "sidecars" / f"{image_layer.name}.json"), plugin="napari-cosas")
    kinds = {layer.__class__.__name__: layer for layer in layers}
    assert set(kinds) == {"Labels", "Points"}  # no image file behind a viewer layer
    assert np.array_equal(kinds["Labels"].data > 0, w.session.current.mask)
    assert np.array_equal(kinds["Points"].data, [[10, 70]])


def test_ctrl_z_undoes_the_session_step_and_never_crosses_patches(widget, qtbot) -> None:
    """Ctrl+Z on the canvas with the mask layer selected is the widget's undo (the click goes,
    with its point), Ctrl+Shift+Z its redo; after a switch to another patch Ctrl+Z never writes
    the previous patch's pixels into the one shown (napari's own labels undo would)."""
    w = widget
    w.add_paths([sample_path(0), sample_path(1)])
    first = w.session.current
    _segment(qtbot, w)
    auto = first.mask.copy()
    positive = not auto[20:-20, 20:-20].all()  # a local click always takes its own pixel
    rows, cols = np.nonzero(auto[20:-20, 20:-20] != positive)
    click(w, rows[len(rows) // 2] + 20, cols[len(cols) // 2] + 20, LEFT if positive else RIGHT)
    _wait(qtbot, w)
    corrected = first.mask.copy()
    assert not np.array_equal(corrected, auto)
    native = _canvas(w).native
    w.viewer.layers.selection.active = w.mask_layer
    native.setFocus()
    key(native, Qt.Key.Key_Z, CTRL)
    qtbot.waitUntil(lambda: len(first.clicks) == 0 and len(w.clicks_layer.data) == 0)
    assert np.array_equal(first.mask, auto) and np.array_equal(w.mask_layer.data > 0, auto)
    key(native, Qt.Key.Key_Z, CTRL | SHIFT)
    qtbot.waitUntil(lambda: len(first.clicks) == 1)
    assert np.array_equal(first.mask, corrected) and np.array_equal(w.mask_layer.data > 0, corrected)
    w.next_patch()
    second = w.session.current
    _segment(qtbot, w)
    shown = second.mask.copy()
    w.viewer.layers.selection.active = w.mask_layer
    native.setFocus()
    key(native, Qt.Key.Key_Z, CTRL)
    qtbot.wait(200)
    assert np.array_equal(second.mask, shown) and np.array_equal(w.mask_layer.data > 0, shown)
    assert np.array_equal(first.mask, corrected)
    assert "Nothing to undo" in w.message_label.text()


def test_clicks_while_busy_are_queued_in_order(widget, qtbot) -> None:
    """Clicks made while the automatic mask is computed are shown at once and applied after it,
    in order; undo first drops the last queued click."""
    w = widget
    w.add_paths([sample_path(2)])
    gate = _hold(w.session, "compute_segmentation")
    w.segment()
    assert w.busy
    qtbot.waitUntil(lambda: not w.segment_button.isEnabled())  # greyed once the job has run a while
    click(w, 30, 40)
    click(w, 60, 80, RIGHT)
    click(w, 90, 90)
    assert "queued (3 waiting)" in w.message_label.text()
    qtbot.waitUntil(lambda: w.clicks_layer is not None and len(w.clicks_layer.data) == 3)  # before the model ran
    w.undo()
    qtbot.waitUntil(lambda: len(w.clicks_layer.data) == 2)
    w.export()
    assert "Busy" in w.message_label.text()  # not silently dropped
    gate.set()
    patch = w.session.current
    qtbot.waitUntil(lambda: not w.busy and len(patch.clicks) == 2, timeout=TIMEOUT_MS)
    assert [(c.row, c.col, c.positive) for c in patch.clicks] == [(30, 40, True), (60, 80, False)]
    qtbot.waitUntil(lambda: np.array_equal(w.clicks_layer.data, [[30, 40], [60, 80]]))
    assert np.array_equal(w.mask_layer.data > 0, patch.mask)


def test_a_slow_click_shows_its_point_paler_while_its_model_runs(widget, qtbot) -> None:
    """A click whose mask takes longer than ``RUNNING_FEEDBACK_AFTER_MS`` shows its point, paler,
    and its message while its model runs; the point takes its full colour with the mask."""
    w = widget
    w.add_paths([sample_path(0)])
    _segment(qtbot, w)
    patch = w.session.current
    gate = _hold(w.session, "compute_click")
    click(w, 150, 150)
    qtbot.waitUntil(lambda: len(w.clicks_layer.data) == 1)
    assert w.busy and not patch.clicks and "Positive click at (row 150, col 150)" in w.message_label.text()
    np.testing.assert_allclose(w.clicks_layer.face_color[0], paler(POSITIVE_RGBA))
    gate.set()
    qtbot.waitUntil(lambda: len(patch.clicks) == 1 and np.allclose(w.clicks_layer.face_color[0], POSITIVE_RGBA),
                    timeout=TIMEOUT_MS)
    assert np.array_equal(w.clicks_layer.data, [[150, 150]]) and np.array_equal(w.mask_layer.data > 0, patch.mask)


def test_a_click_recolours_the_points_only_when_a_colour_changes(widget, qtbot) -> None:
    """Each point has its click's colour, and the clicks layer's colours are written only when
    one changes: a positive click's new point takes the layer's current colour (positive), a
    negative one is recoloured, and showing the same clicks again writes nothing."""
    w = widget
    w.add_paths([sample_path(0)])
    _segment(qtbot, w)
    patch = w.session.current
    w.clicks._running_timer.setInterval(TIMEOUT_MS)  # no paler point ahead of a slow mask
    # each click waits for the one before to end: a click queued behind a running one is shown
    # paler first, and recoloured when it runs
    click(w, 150, 150)
    qtbot.waitUntil(lambda: len(patch.clicks) == len(w.clicks_layer.data) == 1 and not w.busy
                    and np.allclose(w.clicks_layer.face_color, POSITIVE_RGBA), timeout=TIMEOUT_MS)
    writes: list[object] = []
    w.clicks_layer.events.face_color.connect(writes.append)
    click(w, 100, 200)
    qtbot.waitUntil(lambda: len(patch.clicks) == len(w.clicks_layer.data) == 2 and not w.busy,
                    timeout=TIMEOUT_MS)
    assert not writes
    click(w, 60, 80, RIGHT)
    qtbot.waitUntil(lambda: len(patch.clicks) == len(w.clicks_layer.data) == 3 and not w.busy,
                    timeout=TIMEOUT_MS)
    assert len(writes) == 1
    np.testing.assert_allclose(w.clicks_layer.face_color, [POSITIVE_RGBA, POSITIVE_RGBA, NEGATIVE_RGBA])
    w.layers.show_clicks(patch, [])
    assert len(writes) == 1


def test_a_held_click_computes_at_the_press_and_shows_at_the_release(widget, qtbot) -> None:
    """The model starts in the event-loop turn after the mouse press (napari's repaint for the
    press runs first, without the model beside it); while the button is held nothing is applied
    or drawn, and the release shows the click's mask at once (its model is done)."""
    w = widget
    w.add_paths([sample_path(0)])
    _segment(qtbot, w)
    patch, shown = w.session.current, w.mask_layer.data.copy()
    computed = _finished_calls(w.session, "compute_click")
    native, point = _canvas(w).native, _screen_point(w, 150, 150)
    QTest.mousePress(native, LEFT, NO_MOD, point)
    assert not w.busy  # not during napari's handling of the press
    qtbot.waitUntil(lambda: len(computed) == 1 and not w.busy, timeout=TIMEOUT_MS)  # the button still held
    assert computed[0][1:] == (150, 150, True)
    qtbot.wait(200)  # past the running click's feedback delay: still nothing shown
    assert not patch.clicks and len(w.clicks_layer.data) == 0 and np.array_equal(w.mask_layer.data, shown)
    QTest.mouseRelease(native, LEFT, NO_MOD, point)
    assert [(c.row, c.col, c.positive) for c in patch.clicks] == [(150, 150, True)] and not w.busy
    assert np.array_equal(w.mask_layer.data > 0, patch.mask) and not np.array_equal(w.mask_layer.data, shown)
    _wait(qtbot, w)
    assert np.array_equal(w.clicks_layer.data, [[150, 150]])


def test_a_press_that_becomes_a_drag_changes_nothing(widget, qtbot) -> None:
    """A drag (napari's pan) drops the click its press started, even when the model finishes
    after the release; the next click is taken as usual."""
    w = widget
    w.add_paths([sample_path(0)])
    _segment(qtbot, w)
    patch, shown = w.session.current, w.mask_layer.data.copy()
    gate = _hold(w.session, "compute_click")
    click(w, 100, 100, LEFT, NO_MOD, move=(60, 40), held=lambda: qtbot.waitUntil(lambda: w.busy))
    assert w.busy  # the press's model still runs
    gate.set()
    _wait(qtbot, w)
    assert not patch.clicks and len(w.clicks_layer.data) == 0 and np.array_equal(w.mask_layer.data, shown)
    click(w, 60, 70, RIGHT)
    _wait(qtbot, w)
    assert [(c.row, c.col, c.positive) for c in patch.clicks] == [(60, 70, False)]


def test_a_held_click_is_computed_again_when_the_mask_changed_before_its_release(widget, qtbot) -> None:
    """A press's result stands for the mask it was computed on: when the mask changes while the
    button is held (here the undo key, Ctrl+Z, undoes the click before), the release computes
    the click again, on the new mask."""
    w = widget
    w.add_paths([sample_path(0)])
    _segment(qtbot, w)
    patch = w.session.current
    start = patch.mask.copy()
    rows, cols = np.nonzero(start)
    far = np.hypot(rows - 150, cols - 150) > 100
    click(w, int(rows[far][0]), int(cols[far][0]), RIGHT)  # a negative click on the mask, away from the next
    _wait(qtbot, w)
    assert not np.array_equal(patch.mask, start)
    computed = _finished_calls(w.session, "compute_click")
    native, point = _canvas(w).native, _screen_point(w, 150, 150)
    QTest.mousePress(native, LEFT, NO_MOD, point)
    qtbot.waitUntil(lambda: len(computed) == 1 and not w.busy, timeout=TIMEOUT_MS)  # on the mask after the first click
    key(native, Qt.Key.Key_Z, CTRL)
    assert not patch.clicks and np.array_equal(patch.mask, start)
    QTest.mouseRelease(native, LEFT, NO_MOD, point)
    _wait(qtbot, w)
    assert [(c.row, c.col, c.positive) for c in patch.clicks] == [(150, 150, True)] and len(computed) == 2
    shown = patch.mask.copy()
    assert np.array_equal(w.mask_layer.data > 0, shown)
    w.undo()
    assert not patch.clicks and np.array_equal(patch.mask, start)
    click(w, 150, 150)  # the same click on `start`, made at once
    _wait(qtbot, w)
    assert np.array_equal(patch.mask, shown)


def test_keys_reach_the_widget_whatever_is_selected(widget, qtbot, tmp_path: Path) -> None:
    """With the clicks (points) layer or the mask (labels) layer selected the keys are the widget's,
    and canvas clicks still count; with the patch list focused too."""
    w = widget
    w.add_paths([sample_path(0), sample_path(1)])
    w.out_edit.setText(str(tmp_path))
    native = _canvas(w).native
    w.viewer.layers.selection.active = w.clicks_layer
    native.setFocus()
    key(native, Qt.Key.Key_S)  # Points binds s (select mode): here it segments
    assert w.busy and w.clicks_layer.mode == "pan_zoom"
    qtbot.waitUntil(lambda: not w.busy and w.message_label.text() == "Ready for clicks.", timeout=TIMEOUT_MS)
    w.viewer.layers.selection.active = w.clicks_layer
    key(native, Qt.Key.Key_A)  # Points binds a (add mode): here it accepts (exports) and moves on
    assert w.clicks_layer.mode == "pan_zoom"
    qtbot.waitUntil(lambda: w.session.index == 1, timeout=TIMEOUT_MS)
    assert (tmp_path / "masks" / f"{w.session.patches[0].name}.png").is_file()
    _wait(qtbot, w)
    w.previous_patch()
    w.viewer.layers.selection.active = w.clicks_layer
    click(w, 25, 35)
    _wait(qtbot, w)
    assert len(w.session.current.clicks) == 1
    w.viewer.layers.selection.active = w.mask_layer
    key(native, Qt.Key.Key_U)
    assert not w.session.current.clicks
    key(native, Qt.Key.Key_N)
    assert w.session.index == 1
    key(native, Qt.Key.Key_N, SHIFT)
    assert w.session.index == 0

    window = w.viewer.window._qt_window
    window.activateWindow()  # keys go to the active window, as when a user types
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window, timeout=5_000)
    w.patch_list.setFocus()
    key(w.patch_list, Qt.Key.Key_N)
    assert w.session.index == 1
    key(w.patch_list, Qt.Key.Key_N, SHIFT)
    assert w.session.index == 0
    w.out_edit.setFocus()
    key(w.out_edit, Qt.Key.Key_N)  # a text field keeps its letters
    assert w.session.index == 0 and w.out_edit.text().endswith("n")


def test_update_labels_layer_shows_each_new_mask() -> None:
    """A click's mask replaces what the layer showed, changed pixels only when the shape is the
    same; a patch of another shape replaces the layer's data."""
    from napari.layers import Labels

    from napari_cosas._widget_layers import update_labels_layer

    layer = Labels(np.zeros((40, 30), np.uint8))
    new = np.zeros((40, 30), np.uint8)
    new[5:15, 10:20] = 1
    update_labels_layer(layer, new)
    np.testing.assert_array_equal(layer.data, new)
    assert layer.data is not new  # the session's mask is never the layer's buffer
    new[5:15, 10:20] = 0
    new[30:35, 0:5] = 1
    update_labels_layer(layer, new)
    np.testing.assert_array_equal(layer.data, new)
    other = np.ones((20, 25), np.uint8)
    update_labels_layer(layer, other)
    assert layer.data.shape == (20, 25) and layer.data.all()


def test_update_labels_layer_within_a_box_writes_only_that_box() -> None:
    """Given the click's changed box, the pixels are compared and written there only: the mask
    shows inside it, and what the layer showed outside it is left as it was."""
    from napari.layers import Labels

    from napari_cosas._widget_layers import update_labels_layer

    layer = Labels(np.zeros((40, 30), np.uint8))
    new = np.zeros((40, 30), np.uint8)
    new[5:15, 10:20] = 1
    new[30:35, 0:5] = 1  # outside the box: the caller says the layer shows it already
    update_labels_layer(layer, new, within=(slice(5, 15), slice(10, 20)))
    np.testing.assert_array_equal(layer.data[5:15, 10:20], 1)
    assert layer.data.sum() == 100
    update_labels_layer(layer, new, within=(slice(0, 0), slice(0, 0)))  # a click that changed nothing
    assert layer.data.sum() == 100


@pytest.mark.parametrize("thickness", [1, 2, 3])
def test_the_mask_layer_outline_is_napari_contour(thickness: int) -> None:
    """The mask layer's fast outline of a 0 / 1 mask is exactly napari's contour, for boxes inside
    the image, at its border and for the whole image; any other labels use napari's own."""
    from napari.layers import Labels

    from napari_cosas._widget_mask_labels import MaskLabels

    rng = np.random.default_rng(thickness)
    mask = (ndi.gaussian_filter(rng.random((90, 70)), 3) > 0.5).astype(np.uint8)
    mask[:, :4] = 1  # touching the border
    ours, napari_own = MaskLabels(mask), Labels(mask)
    ours.contour = napari_own.contour = thickness
    assert ours._type_string == "labels" and ours.as_layer_data_tuple()[2] == "labels"
    boxes = [(slice(0, 90), slice(0, 70)), (slice(10, 40), slice(20, 55)), (slice(0, 7), slice(60, 70)),
             (slice(44, 45), slice(3, 4))]
    for box in boxes:
        expected = napari_own._calculate_contour(mask, box)
        np.testing.assert_array_equal(ours._calculate_contour(mask, box), expected)
        assert 0 < expected.sum() < expected.size or box[0].stop - box[0].start == 1
    several = mask * rng.integers(1, 4, mask.shape).astype(np.uint8)  # labels 1-3: napari's contour
    np.testing.assert_array_equal(ours._calculate_contour(several, boxes[0]),
                                  napari_own._calculate_contour(several, boxes[0]))


def test_new_patches_are_segmented_when_they_open(widget, qtbot) -> None:
    """With the box ticked (the default) a new patch gets its automatic mask and click embedding
    without pressing Segment; a patch already worked on is not segmented again."""
    w = widget
    w.auto_segment_box.setChecked(True)
    w.add_paths([sample_path(0), sample_path(1)])
    first = w.session.current
    qtbot.waitUntil(lambda: w.progress_bar.maximum() == 0, timeout=TIMEOUT_MS)  # busy bar while encoding
    qtbot.waitUntil(lambda: not w.busy and w.message_label.text() == "Ready for clicks.", timeout=TIMEOUT_MS)
    assert w.progress_bar.maximum() > 0
    assert first.state == "segmented" and np.array_equal(w.mask_layer.data > 0, first.auto_mask)
    click(w, 20, 20)
    _wait(qtbot, w)
    corrected = first.mask.copy()
    w.next_patch()
    qtbot.waitUntil(lambda: not w.busy and w.message_label.text() == "Ready for clicks.", timeout=TIMEOUT_MS)
    assert w.session.current.state == "segmented"
    w.previous_patch()
    assert not w.busy and first.state == "corrected"  # nothing recomputed, the click kept
    assert np.array_equal(w.mask_layer.data > 0, corrected)


def test_mask_display_outline_or_filled(widget) -> None:
    w = widget
    w.add_paths([sample_path(0)])
    assert w.display_combo.currentText() == "outline" and w.mask_layer.contour > 0
    assert isinstance(w.mask_layer, MaskLabels)  # its outline is napari's, drawn faster
    w.display_combo.setCurrentText("filled")
    assert w.mask_layer.contour == 0 and w.mask_layer.opacity == 0.5


def test_closing_the_window_asks_about_unsaved_corrections(widget, qtbot, monkeypatch) -> None:
    w = widget
    w.add_paths([sample_path(0)])
    _segment(qtbot, w)
    click(w, 20, 20)
    _wait(qtbot, w)
    window = w.viewer.window._qt_window
    asked = _answer(monkeypatch, QMessageBox.StandardButton.No)
    window.close()  # what the close button, Ctrl+W and Quit do
    assert asked and "not exported" in asked[0] and window.isVisible()
    assert w.session.current.clicks


def test_clicks_run_with_their_own_torch_threads_and_restore_them(widget, qtbot, monkeypatch) -> None:
    """A click runs its model with `click_threads()` torch threads in its worker; afterwards the
    GUI thread and newly started threads have torch's count as before (nothing process-wide)."""
    import napari_cosas._widget_clicks as widget_module

    assert widget_module.click_threads() == max(1, min(torch.get_num_threads(), (os.cpu_count() or 1) - 1))
    w = widget
    w.add_paths([sample_path(0)])
    _segment(qtbot, w)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        monkeypatch.setattr(widget_module, "click_threads", lambda: 1)
        seen = []
        compute = w.session.compute_click

        def recording(*args):
            seen.append(torch.get_num_threads())
            return compute(*args)

        w.session.compute_click = recording
        click(w, 30, 30)
        _wait(qtbot, w)
        assert seen == [1] and len(w.session.current.clicks) == 1
        assert torch.get_num_threads() == 2
        fresh = []
        thread = threading.Thread(target=lambda: fresh.append(torch.get_num_threads()))
        thread.start()
        thread.join()
        assert fresh == [2]
    finally:
        torch.set_num_threads(before)


def test_start_from_a_labels_layer_or_a_geojson_then_correct(widget, qtbot, tmp_path: Path) -> None:
    """A sample's ground truth (a labels layer) or a QuPath GeoJSON becomes the patch's mask;
    clicks then correct it locally (the imported mask is set by hand: a click changes only the
    region connected to it, however large its focus window), undo goes back."""
    from scipy import ndimage

    from napari_cosas._sample_data import sample_1
    from napari_cosas.io.geojson import mask_to_geojson

    w = widget
    (image, image_meta, _), (truth, truth_meta, _) = sample_1()
    w.viewer.add_image(image, **image_meta)
    truth_layer = w.viewer.add_labels(truth, **truth_meta)
    w.add_viewer_images()
    patch = w.session.current
    w.viewer.layers.selection.active = truth_layer
    assert w.start_from_layer()
    qtbot.waitUntil(lambda: not w.busy and w.message_label.text() == "Ready for clicks.", timeout=TIMEOUT_MS)
    assert np.array_equal(patch.mask, truth > 0) and np.array_equal(w.mask_layer.data > 0, truth > 0)
    assert patch.interaction.hand_set().all()  # every imported pixel counts as set by hand
    click(w, 100, 100, RIGHT)
    _wait(qtbot, w)
    removed = (truth > 0) & ~patch.mask
    assert not patch.mask[100, 100] and not (patch.mask & ~(truth > 0)).any()  # a negative click adds nothing
    regions, _ = ndimage.label(removed, structure=np.ones((3, 3)))
    assert (regions == regions[100, 100]).sum() >= 0.99 * removed.sum()  # it removes the region it was on
    w.undo()
    assert np.array_equal(patch.mask, truth > 0)

    other = np.zeros(patch.shape, bool)
    other[20:60, 30:90] = True
    geojson = tmp_path / "qupath.geojson"
    geojson.write_text(json.dumps(mask_to_geojson(other)))
    assert w.start_from_file(geojson)
    _wait(qtbot, w)
    assert np.array_equal(w.mask_layer.data > 0, other)
    w.undo()
    assert np.array_equal(w.mask_layer.data > 0, truth > 0)

    wrong = tmp_path / "wrong.geojson"
    wrong.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    assert not w.start_from_file(wrong)
    w.viewer.layers.selection.active = w.viewer.add_labels(np.zeros((10, 10), np.uint8), name="small")
    assert not w.start_from_layer()
    assert np.array_equal(w.mask_layer.data > 0, truth > 0)


def test_brush_strokes_made_while_a_click_runs_are_kept(widget, qtbot) -> None:
    """A stroke painted (real mouse drag, brush mode) while a click computes is not overwritten
    by the click's mask: both end up in the mask, the stroke as an undoable edit."""
    w = widget
    w.add_paths([sample_path(0)])
    _segment(qtbot, w)
    patch = w.session.current
    gate = _hold(w.session, "compute_click")
    click(w, 150, 150)
    assert w.busy
    layer = w.mask_layer
    layer.brush_size = 6
    layer.mode = "erase" if patch.mask[20, 20] else "paint"
    click(w, 20, 20, move=(40, 0))  # a stroke to the right of (20, 20)
    layer.mode = "pan_zoom"
    stroke = (layer.data > 0) != patch.mask
    painted = layer.data > 0
    assert stroke[20, 20:30].all()
    gate.set()
    qtbot.waitUntil(lambda: not w.busy and len(patch.clicks) == 1, timeout=TIMEOUT_MS)
    assert patch.mask[150, 150] and np.array_equal(patch.mask[stroke], painted[stroke])  # click and stroke
    assert np.array_equal(w.mask_layer.data > 0, patch.mask) and patch.brush_edited
    w.undo()  # the stroke first
    assert len(patch.clicks) == 1 and not np.array_equal(patch.mask[stroke], painted[stroke])


def test_navigation_while_a_patch_segments(widget, qtbot) -> None:
    """Next / previous work while a patch segments; the job's mask goes to its own patch, and a
    new patch opened meanwhile is segmented (with the box ticked) once the job is done; a click
    queued on the first patch is applied to it even after moving on."""
    w = widget
    w.auto_segment_box.setChecked(True)
    gate = _hold(w.session, "compute_segmentation")
    w.add_paths([sample_path(0), sample_path(1)])
    first, second = w.session.patches
    assert w.busy and w.next_button.isEnabled()
    click(w, 40, 40)  # queued on the first patch
    QTest.mouseClick(w.next_button, LEFT)
    assert w.session.current is second and len(w.clicks_layer.data) == 0
    gate.set()
    qtbot.waitUntil(lambda: second.state == "segmented" and not w.busy, timeout=TIMEOUT_MS)
    assert first.state == "corrected" and [(c.row, c.col) for c in first.clicks] == [(40, 40)]
    assert np.array_equal(w.mask_layer.data > 0, second.auto_mask)
    w.previous_patch()
    assert np.array_equal(w.mask_layer.data > 0, first.mask) and len(w.clicks_layer.data) == 1
