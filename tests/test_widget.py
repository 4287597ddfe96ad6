"""The dock widget in a real viewer (run under xvfb-run), with tiny random models."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from napari_cosas._sample_data import sample_path
from napari_cosas.image_io import load_mask
from napari_cosas.models.sam_models import build_tiny_sam
from napari_cosas.models.segmenter import SegmenterConfig, build_segmenter
from napari_cosas.predictor import ClickPredictor
from napari_cosas.session import ModelBundle

pytestmark = pytest.mark.gui
TIMEOUT_MS = 120_000


@pytest.fixture
def widget(make_napari_viewer, qtbot):
    from napari_cosas._widget import CosasWidget

    torch.manual_seed(0)
    segmenter = build_segmenter(SegmenterConfig(backbone="test_convnext", crop=128, stride=85)).eval()
    predictor = ClickPredictor(build_tiny_sam(decoder="enhanced"), "tiny", device="cpu")
    viewer = make_napari_viewer()
    w = CosasWidget(viewer, models=ModelBundle(segmenter=segmenter, predictor=predictor, segmenter_id="tiny-seg"))
    viewer.window.add_dock_widget(w)
    w.auto_segment_box.setChecked(False)  # the tests below drive segmentation themselves
    return w


def _wait(qtbot, w) -> None:
    qtbot.waitUntil(lambda: not w.busy, timeout=TIMEOUT_MS)


def _mouse_click(w, row: float, col: float, button: int = 1, modifiers: tuple[str, ...] = ()) -> None:
    """Drive the viewer's mouse callback with a press and a release at world ``(row, col)``."""
    event = SimpleNamespace(type="mouse_press", position=(row, col), button=button, modifiers=modifiers)
    callback = w.on_mouse_drag(w.viewer, event)
    next(callback)
    event.type = "mouse_release"
    with pytest.raises(StopIteration):
        next(callback)


def _segment(qtbot, w) -> None:
    w.segment()
    qtbot.waitUntil(lambda: not w.busy and w.message_label.text() == "Ready for clicks.", timeout=TIMEOUT_MS)


def test_segment_click_undo_export(widget, qtbot, tmp_path: Path) -> None:
    w = widget
    w.add_paths([sample_path(0), sample_path(1)])
    patch = w.session.current
    assert w.session.index == 0 and w.mask_layer is not None
    assert w.patch_list.count() == 2 and "[new]" in w.patch_list.item(0).text()

    _segment(qtbot, w)
    assert w.progress_bar.value() == w.progress_bar.maximum() > 0
    assert patch.state == "segmented"
    assert np.array_equal(w.mask_layer.data > 0, patch.auto_mask)

    assert w.session.click_effect == "local"
    w.effect_combo.setCurrentText("global")
    assert w.session.click_effect == "global"
    w.effect_combo.setCurrentText("local")
    _mouse_click(w, 50, 60)  # left: positive
    _wait(qtbot, w)
    assert patch.mask[50, 60]  # a local click always takes its own pixel
    _mouse_click(w, 100, 120, button=2)  # right: negative
    _wait(qtbot, w)
    _mouse_click(w, 150, 30, modifiers=("Control",))  # Ctrl + left: negative
    _wait(qtbot, w)
    assert [(c.row, c.col, c.positive) for c in patch.clicks] == [
        (50, 60, True), (100, 120, False), (150, 30, False)
    ]
    assert len(w.clicks_layer.data) == 3
    assert "Clicks on this patch: 3" in w.stats_label.text() and "ms" in w.stats_label.text()
    assert np.array_equal(w.mask_layer.data > 0, patch.mask)

    w.undo()
    assert len(patch.clicks) == 2 and len(w.clicks_layer.data) == 2
    assert np.array_equal(w.mask_layer.data > 0, patch.mask)

    _mouse_click(w, -5, 10)  # outside: ignored with a message
    assert "outside" in w.message_label.text() and not w.busy and len(patch.clicks) == 2

    w.mask_layer.data[:8, :8] = 1  # a brush edit, picked up at export
    out = tmp_path / "out"
    w.out_edit.setText(str(out))
    assert w.export()
    mask_file = out / "masks" / f"{patch.name}.png"
    assert np.array_equal(load_mask(mask_file) > 0, w.mask_layer.data > 0)
    sidecar = json.loads((out / "sidecars" / f"{patch.name}.json").read_text())
    assert [(c["row"], c["col"], c["positive"]) for c in sidecar["clicks"]] == [(50, 60, True), (100, 120, False)]
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
    assert not (out / "masks" / f"{patch.name}_v2.png").exists()
    w.mask_layer.data[8:12, :8] = 1  # another brush edit: a new version
    assert w.export()
    assert (out / "masks" / f"{patch.name}_v2.png").is_file()
    assert (out / "sidecars" / f"{patch.name}_v2.json").is_file()

    w.accept_and_next()
    assert w.session.index == 1 and not (out / "masks" / f"{patch.name}_v3.png").exists()


def test_switching_keeps_corrections_and_reset(widget, qtbot) -> None:
    w = widget
    w.add_paths([sample_path(0), sample_path(1)])
    first = w.session.current
    _segment(qtbot, w)
    _mouse_click(w, 20, 20)
    _wait(qtbot, w)
    corrected = first.mask.copy()
    w.next_patch()
    assert w.session.index == 1 and w.mask_layer.data.max() == 0 and len(w.clicks_layer.data) == 0
    w.previous_patch()
    assert w.session.current is first and "[corrected]" in w.patch_list.item(0).text()
    assert np.array_equal(w.mask_layer.data > 0, corrected) and len(w.clicks_layer.data) == 1
    w.reset()
    assert np.array_equal(w.mask_layer.data > 0, first.auto_mask) and not first.clicks


def test_viewer_images_and_sidecar_reader(widget, qtbot, tmp_path: Path) -> None:
    w = widget
    rng = np.random.default_rng(1)
    w.viewer.add_image(rng.integers(0, 256, (64, 80, 3), dtype=np.uint8), name="layer patch", rgb=True)
    w.add_viewer_images()
    assert w.session.current.name == "layer patch"
    _segment(qtbot, w)
    _mouse_click(w, 10, 70)
    _wait(qtbot, w)
    w.out_edit.setText(str(tmp_path))
    assert w.export()
    layers = w.viewer.open(str(tmp_path / "sidecars" / "layer patch.json"), plugin="napari-cosas")
    kinds = {layer.__class__.__name__: layer for layer in layers}
    assert set(kinds) == {"Labels", "Points"}  # no image file behind a viewer layer
    assert np.array_equal(kinds["Labels"].data > 0, w.session.current.mask)
    assert np.array_equal(kinds["Points"].data, [[10, 70]])


def test_busy_ignores_clicks_and_open_errors_do_not_crash(widget, qtbot, tmp_path: Path) -> None:
    w = widget
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    w.add_paths([bad])
    assert w.session.current is None
    w.add_folder(tmp_path / "missing")
    w.add_paths([sample_path(2)])
    w.segment()
    assert w.busy and not w.segment_button.isEnabled()
    w.add_click(5, 5, True)
    assert "Busy" in w.message_label.text()
    qtbot.waitUntil(lambda: not w.busy and w.message_label.text() == "Ready for clicks.", timeout=TIMEOUT_MS)
    assert w.segment_button.isEnabled()


def test_write_labels_shows_each_new_mask() -> None:
    """A click's mask replaces what the layer showed, changed pixels only when the shape is the
    same; a patch of another shape replaces the layer's data."""
    from napari.layers import Labels

    from napari_cosas._widget import write_labels

    layer = Labels(np.zeros((40, 30), np.uint8))
    new = np.zeros((40, 30), np.uint8)
    new[5:15, 10:20] = 1
    write_labels(layer, new)
    np.testing.assert_array_equal(layer.data, new)
    assert layer.data is not new  # the session's mask is never the layer's buffer
    new[5:15, 10:20] = 0
    new[30:35, 0:5] = 1
    write_labels(layer, new)
    np.testing.assert_array_equal(layer.data, new)
    other = np.ones((20, 25), np.uint8)
    write_labels(layer, other)
    assert layer.data.shape == (20, 25) and layer.data.all()


def test_new_patches_are_segmented_when_they_open(widget, qtbot) -> None:
    """With the box ticked (the default) a new patch gets its automatic mask and click embedding
    without pressing Segment; a patch already worked on is not segmented again."""
    w = widget
    w.auto_segment_box.setChecked(True)
    w.add_paths([sample_path(0), sample_path(1)])
    first = w.session.current
    qtbot.waitUntil(lambda: not w.busy and w.message_label.text() == "Ready for clicks.", timeout=TIMEOUT_MS)
    assert first.state == "segmented" and np.array_equal(w.mask_layer.data > 0, first.auto_mask)
    _mouse_click(w, 20, 20)
    _wait(qtbot, w)
    corrected = first.mask.copy()
    w.next_patch()
    qtbot.waitUntil(lambda: not w.busy and w.message_label.text() == "Ready for clicks.", timeout=TIMEOUT_MS)
    assert w.session.current.state == "segmented"
    w.previous_patch()
    assert not w.busy and first.state == "corrected"  # nothing recomputed, the click kept
    assert np.array_equal(w.mask_layer.data > 0, corrected)
