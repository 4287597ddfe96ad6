"""The npe2 manifest validates, its commands import, and the reader / writer / samples work."""

from __future__ import annotations

import json
from fnmatch import fnmatch
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from npe2 import PluginManifest

import napari_cosas
from napari_cosas._reader import get_reader
from napari_cosas._sample_data import sample_1, sample_2, sample_3
from napari_cosas._writer import write_labels
from napari_cosas.io.image_io import load_mask
from napari_cosas.inference.model_bundle import ModelBundle
from napari_cosas.interaction.session import AnnotationSession

MANIFEST = Path(napari_cosas.__file__).parent / "napari.yaml"


def test_manifest_validates_and_commands_import() -> None:
    manifest = PluginManifest.from_file(MANIFEST)
    manifest.validate_imports()  # imports every python_name
    assert manifest.name == "napari-cosas"
    contributions = manifest.contributions
    assert [w.command for w in contributions.widgets] == ["napari-cosas.widget"]
    assert contributions.readers and contributions.writers and len(contributions.sample_data) == 3


def test_manifest_is_the_installed_entry_point() -> None:
    manifest = PluginManifest.from_distribution("napari-cosas")
    assert manifest.name == "napari-cosas"


def test_sample_data_images_and_ground_truth() -> None:
    for sample in (sample_1, sample_2, sample_3):
        (image, image_meta, image_kind), (truth, _, truth_kind) = sample()
        assert image_kind == "image" and truth_kind == "labels"
        assert image.shape == (224, 224, 3) and image.dtype == np.uint8
        assert truth.shape == (224, 224) and set(np.unique(truth)) <= {0, 1}
        assert "EBHI-Seg" in image_meta["metadata"]["attribution"]


def test_writer_writes_masks(tmp_path: Path) -> None:
    labels = np.zeros((20, 30), np.uint8)
    labels[3:9, 4:20] = 2
    (png,) = write_labels(str(tmp_path / "masks" / "a"), labels, {})
    assert png.endswith("a.png")
    (tif,) = write_labels(str(tmp_path / "masks" / "b.tif"), labels, {})
    for path in (png, tif):
        assert np.array_equal(load_mask(path) > 0, labels > 0)


def test_reader_claims_only_sidecars(tmp_path: Path) -> None:
    """Images (and masks) are napari's: with the plugin installed, opening a PNG or TIFF offers
    no choice of reader; JSON files are read only when they are the plugin's sidecars."""
    reader = PluginManifest.from_file(MANIFEST).contributions.readers[0]
    assert reader.filename_patterns == ["*.json"]
    for name in ("photo.png", "scan.tif", "masks/a.png", "b_mask.tiff"):
        assert not any(fnmatch(str(tmp_path / name), pattern) for pattern in reader.filename_patterns)
        assert get_reader(str(tmp_path / name)) is None
    other = tmp_path / "notes.json"
    other.write_text(json.dumps({"format": "something else"}))
    assert get_reader(str(other)) is None


def test_sidecar_opens_image_mask_and_clicks(tmp_path: Path) -> None:
    image = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    image_path = tmp_path / "patch.png"
    iio.imwrite(image_path, image)
    session = AnnotationSession(ModelBundle())
    (patch,) = session.add_files([image_path])
    session.select(0)
    mask = np.zeros((20, 30), bool)
    mask[2:9, 5:12] = True
    session.sync_mask(patch, mask)
    result = session.export(patch, tmp_path / "out")
    layers = get_reader(str(result.sidecar))(str(result.sidecar))
    (pixels, _, image_kind), (labels, _, labels_kind), (_points, _, points_kind) = layers
    assert (image_kind, labels_kind, points_kind) == ("image", "labels", "points")
    assert np.array_equal(pixels, image) and np.array_equal(labels > 0, patch.mask)
