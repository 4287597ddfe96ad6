"""AnnotationSession without napari: clicks, undo / reset, brush edits, switching, export."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from napari_cosas.io import exports as exports_mod
from napari_cosas.io.exports import SIDECAR_FORMAT
from napari_cosas.inference.focus import Focus
from napari_cosas.io.geojson import mask_to_geojson, ring_signed_area
from napari_cosas.io.image_io import image_sha256, load_mask
from napari_cosas.inference.model_bundle import ModelBundle
from napari_cosas.models.sam_models import build_tiny_sam
from napari_cosas.models.segmenter import SegmenterConfig, build_segmenter
from napari_cosas.inference.predictor import ClickPredictor
from napari_cosas.models.registry import available_models
from napari_cosas.interaction.session import AnnotationSession, ClickOutsideError


@pytest.fixture(scope="module")
def models() -> ModelBundle:
    torch.manual_seed(0)
    segmenter = build_segmenter(SegmenterConfig(backbone="test_convnext", crop=64, stride=48)).eval()
    predictor = ClickPredictor(build_tiny_sam(decoder="enhanced"), "tiny", device="cpu")
    return ModelBundle(segmenter=segmenter, predictor=predictor, segmenter_id="tiny-segmenter")


def _write_images(folder: Path, n: int = 2, shape: tuple[int, int] = (48, 64)) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = folder / f"patch{i}.png"
        folder.mkdir(parents=True, exist_ok=True)
        iio.imwrite(path, rng.integers(0, 256, (*shape, 3), dtype=np.uint8))
        paths.append(path)
    return paths


@pytest.fixture
def session(tmp_path: Path, models: ModelBundle) -> AnnotationSession:
    s = AnnotationSession(models)
    _write_images(tmp_path / "images")
    s.add_folder(tmp_path / "images")
    s.select(0)
    return s


def _segment(s: AnnotationSession) -> None:
    patch = s.current
    s.apply_segmentation(patch, s.compute_segmentation(patch))


def test_states_clicks_undo_reset(session: AnnotationSession) -> None:
    patch = session.current
    assert patch.state == "new" and patch.mask is None
    _segment(session)
    assert patch.state == "segmented"
    auto = patch.mask.copy()
    assert auto.shape == (48, 64) and auto.dtype == bool
    session.click(patch, 10, 20, True)
    first_mask = patch.mask.copy()
    session.click(patch, 30, 5, False)
    assert patch.state == "corrected" and len(patch.clicker) == 2
    assert [(c.row, c.col, c.positive) for c in patch.clicks] == [(10, 20, True), (30, 5, False)]
    assert session.total_clicks == 2 and session.seconds_per_click > 0
    assert session.undo(patch)
    assert len(patch.clicks) == 1 and np.array_equal(patch.mask, first_mask)
    assert session.undo(patch)
    assert np.array_equal(patch.mask, auto) and patch.state == "segmented"
    assert not session.undo(patch)
    session.click(patch, 10, 20, True)
    session.reset(patch)
    assert np.array_equal(patch.mask, auto) and not patch.clicks and patch.state == "segmented"


def test_click_outside_is_rejected(session: AnnotationSession) -> None:
    with pytest.raises(ClickOutsideError):
        session.compute_click(session.current, 48, 0, True)
    with pytest.raises(ClickOutsideError):
        session.compute_click(session.current, 0, -1, True)


def test_first_click_prompts_with_auto_probabilities(session: AnnotationSession, monkeypatch) -> None:
    _segment(session)
    patch = session.current
    predictor = session.models.predictor()
    seen = []
    original = predictor.mask_to_prompt
    monkeypatch.setattr(predictor, "mask_to_prompt", lambda m: seen.append(np.array(m)) or original(m))
    session.click(patch, 5, 5, True)
    assert len(seen) == 1 and np.array_equal(seen[0], patch.auto_prob)
    after_first = patch.mask.copy()
    session.click(patch, 6, 6, True)  # a local click's mask is the next prompt
    assert len(seen) == 2 and np.array_equal(seen[1] > 0.5, after_first)


def test_global_clicks_prompt_with_the_mask_and_keep_brush_edits(session: AnnotationSession, monkeypatch) -> None:
    """A global click's mask prompt is made from the mask (not the previous click's logits), and
    its changes beyond the click leave the pixels set by hand alone."""
    _segment(session)
    session.click_effect = "global"
    patch = session.current
    session.click(patch, 5, 5, True)
    edited = patch.mask.copy()
    edited[30:48, 44:64] = ~edited[30:48, 44:64]  # a brush edit in the bottom-right corner
    session.sync_mask(patch, edited)
    predictor = session.models.predictor()
    seen = []
    original = predictor.mask_to_prompt
    monkeypatch.setattr(predictor, "mask_to_prompt", lambda m: seen.append(np.array(m)) or original(m))
    for row, col, positive in [(8, 12, False), (3, 20, True)]:
        before = patch.mask.copy()
        session.click(patch, row, col, positive)
        assert np.array_equal(seen[-1] > 0.5, before) and patch.mask[row, col] == positive
    assert len(seen) == 2
    np.testing.assert_array_equal(patch.mask[30:48, 44:64], edited[30:48, 44:64])


@pytest.mark.parametrize("refined", [False, True])
def test_local_click_keeps_annotations_away_from_it(session: AnnotationSession, refined: bool) -> None:
    """A local click changes only pixels in its window: the plain local click's (11 pixels here),
    or with the focus refiner (the session's default) its focus window or that one."""
    if not refined:
        session.models = ModelBundle(segmenter=session.models.segmenter(), predictor=session.models.predictor(),
                                     focus_name=None)
    assert (session.models.refiner() is not None) == refined
    _segment(session)
    patch = session.current
    session.click(patch, 40, 55, True)
    edited = patch.mask.copy()
    edited[30:48, 44:64] = ~edited[30:48, 44:64]  # a brush edit in the bottom-right corner
    session.sync_mask(patch, edited)
    for row, col, positive in [(5, 5, True), (8, 12, False), (3, 20, True)]:
        before = patch.mask.copy()
        session.click(patch, row, col, positive)
        assert patch.mask[row, col] == positive  # the click always changes its own pixel
        outside = np.ones(before.shape, bool)
        outside[max(0, row - 5):row + 6, max(0, col - 5):col + 6] = False  # the 11-pixel window
        if refined:
            outside[Focus(session.models.refiner(), patch.load()).window_of(row, col)] = False
        np.testing.assert_array_equal(patch.mask[outside], before[outside])
    np.testing.assert_array_equal(patch.mask[30:48, 44:64], edited[30:48, 44:64])


def test_brush_edit_is_kept_and_prompts_next_click(session: AnnotationSession, monkeypatch) -> None:
    _segment(session)
    patch = session.current
    session.click(patch, 5, 5, True)
    edited = patch.mask.copy()
    edited[:10, :10] = ~edited[:10, :10]
    assert session.sync_mask(patch, edited.astype(np.uint8))
    assert not session.sync_mask(patch, edited)
    assert patch.brush_edited and patch.state == "corrected"
    predictor = session.models.predictor()
    seen = []
    original = predictor.mask_to_prompt
    monkeypatch.setattr(predictor, "mask_to_prompt", lambda m: seen.append(np.array(m)) or original(m))
    session.click(patch, 20, 30, False)
    assert len(seen) == 1 and np.array_equal(seen[0] > 0.5, edited)
    session.undo(patch)  # undoes the click: back to the brush-edited mask
    assert np.array_equal(patch.mask, edited)
    session.undo(patch)  # undoes the brush edit
    assert not np.array_equal(patch.mask, edited)


def test_switching_patches_keeps_unsaved_corrections(session: AnnotationSession) -> None:
    _segment(session)
    first = session.current
    session.click(first, 10, 10, True)
    mask, clicks = first.mask.copy(), list(first.clicks)
    second = session.step(1)
    assert second is not first and session.index == 1
    _segment(session)
    session.click(second, 3, 3, False)
    assert session.step(1) is None and session.index == 1
    back = session.step(-1)
    assert back is first and first.unsaved
    assert np.array_equal(first.mask, mask) and first.clicks == clicks
    session.click(first, 40, 60, False)  # the embedding follows the patch
    assert len(first.clicks) == 2


def test_export_files_and_versioning(session: AnnotationSession, tmp_path: Path) -> None:
    _segment(session)
    patch = session.current
    session.click(patch, 10, 20, True)
    session.click(patch, 30, 5, False)
    out = tmp_path / "out"
    first = session.export(patch, out)
    assert first.mask == out / "masks" / "patch0.png"
    assert first.sidecar == out / "sidecars" / "patch0.json"
    assert first.geojson == out / "geojson" / "patch0.geojson"
    assert patch.state == "exported"
    assert np.array_equal(load_mask(first.mask) > 0, patch.mask)
    sidecar = json.loads(first.sidecar.read_text())
    assert sidecar["format"] == SIDECAR_FORMAT
    assert sidecar["image"]["sha256"] == image_sha256(patch.image)
    assert sidecar["image"]["path"] == str(patch.path.resolve())
    assert sidecar["models"] == {"segmenter": "tiny-segmenter", "click": "tiny"}
    assert [(c["row"], c["col"], c["positive"]) for c in sidecar["clicks"]] == [(10, 20, True), (30, 5, False)]
    assert all(c["latency_s"] >= 0 and c["timestamp"] and c["effect"] == "local" for c in sidecar["clicks"])
    assert (first.sidecar.parent / sidecar["mask_file"]).resolve() == first.mask.resolve()
    json.loads(first.geojson.read_text())
    before = first.mask.read_bytes()
    assert session.export(patch, out) == first  # unchanged since its export: not written again
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["patch0.png"]
    session.click(patch, 40, 60, True)
    second = session.export(patch, out)
    assert second.mask.name == "patch0_v2.png" and second.sidecar.name == "patch0_v2.json"
    assert second.geojson.name == "patch0_v2.geojson"
    assert first.mask.read_bytes() == before
    session.undo(patch)  # back to what the first export holds
    assert session.export(patch, out) == first
    session.click(patch, 5, 5, True)
    assert session.export(patch, out).mask.name == "patch0_v3.png"


def test_export_large_patch_is_tiff(tmp_path: Path, models: ModelBundle, monkeypatch) -> None:
    monkeypatch.setattr(exports_mod, "LARGE_SIDE", 40)
    s = AnnotationSession(models)
    patch = s.add_array("big", np.zeros((30, 50, 3), np.uint8))
    s.select(0)
    s.sync_mask(patch, np.eye(30, 50, dtype=bool))
    result = s.export(patch, tmp_path)
    assert result.mask.suffix == ".tif" and np.array_equal(load_mask(result.mask) > 0, np.eye(30, 50, dtype=bool))
    assert json.loads(result.sidecar.read_text())["image"]["path"] is None


def test_export_needs_a_mask(session: AnnotationSession, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no mask"):
        session.export(session.current, tmp_path)


def test_export_is_all_or_nothing(session: AnnotationSession, tmp_path: Path, monkeypatch) -> None:
    _segment(session)
    patch = session.current
    real = exports_mod.atomic_write
    calls = []

    def failing(path, data, **kwargs):
        calls.append(path)
        if len(calls) == 3:
            raise OSError("disk full")
        real(path, data, **kwargs)

    monkeypatch.setattr(exports_mod, "atomic_write", failing)
    with pytest.raises(OSError, match="disk full"):
        session.export(patch, tmp_path / "out")
    assert len(calls) == 3
    assert [p for p in (tmp_path / "out").rglob("*") if p.is_file()] == []
    assert patch.state == "segmented"


def test_atomic_write_leaves_no_partial_file(session: AnnotationSession, tmp_path: Path, monkeypatch) -> None:
    _segment(session)

    def broken_replace(src, dst):
        raise OSError("rename failed")

    monkeypatch.setattr("os.replace", broken_replace)
    with pytest.raises(OSError):
        session.export(session.current, tmp_path / "out")
    assert [p for p in (tmp_path / "out").rglob("*") if p.is_file()] == []


def _rings(geojson: dict) -> list[list[np.ndarray]]:
    (feature,) = geojson["features"]
    assert feature["properties"]["objectType"] == "annotation"
    assert feature["properties"]["classification"]["name"] == "Tumor"
    geometry = feature["geometry"]
    polygons = [geometry["coordinates"]] if geometry["type"] == "Polygon" else geometry["coordinates"]
    return [[np.array(ring) for ring in polygon] for polygon in polygons]


def test_geojson_coordinates_orientation_and_holes() -> None:
    mask = np.zeros((40, 100), bool)
    mask[5:25, 50:90] = True  # rows 5..24, cols 50..89
    mask[10:15, 60:70] = False  # a hole
    polygons = _rings(mask_to_geojson(mask))
    assert len(polygons) == 1 and len(polygons[0]) == 2
    outer, hole = polygons[0]
    assert np.allclose(outer[0], outer[-1]) and np.allclose(hole[0], hole[-1])
    # x = col, y = row, pixel-corner units: the rectangle spans x 50..90, y 5..25
    assert outer[:, 0].min() == 50 and outer[:, 0].max() == 90
    assert outer[:, 1].min() == 5 and outer[:, 1].max() == 25
    assert hole[:, 0].min() == 60 and hole[:, 0].max() == 70 and hole[:, 1].min() == 10
    assert ring_signed_area(outer) > 0 > ring_signed_area(hole)
    assert ring_signed_area(outer) + ring_signed_area(hole) == pytest.approx(mask.sum(), rel=0.02)


def test_geojson_multipolygon_and_empty() -> None:
    mask = np.zeros((20, 20), bool)
    mask[2:6, 2:6] = True
    mask[10:18, 12:15] = True
    geometry = mask_to_geojson(mask)["features"][0]["geometry"]
    assert geometry["type"] == "MultiPolygon" and len(geometry["coordinates"]) == 2
    assert mask_to_geojson(np.zeros((5, 5), bool)) == {"type": "FeatureCollection", "features": []}


def test_available_models_lists_defaults_and_present_checkpoints(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("NAPARI_COSAS_CACHE", str(tmp_path))
    assert available_models("click")[0] == "cosas-default-click"
    assert "sam_vit_b" not in available_models("click")
    (tmp_path / "sam_vit_b_01ec64.pth").write_bytes(b"")
    assert "sam_vit_b" in available_models("click")
    assert available_models("segmenter")[0] == "cosas-default-segmenter"


def test_add_files_skips_duplicates_and_bad_files_fail_on_select(tmp_path: Path, models: ModelBundle) -> None:
    s = AnnotationSession(models)
    paths = _write_images(tmp_path, n=1)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    s.add_files([paths[0], paths[0], bad])
    assert len(s.patches) == 2
    s.select(0)
    with pytest.raises(ValueError):
        s.select(1)
    assert s.index == 0


def test_sync_rejects_wrong_size_mask(session: AnnotationSession) -> None:
    with pytest.raises(ValueError, match="rows, cols"):
        session.sync_mask(session.current, np.zeros((5, 5), bool))
