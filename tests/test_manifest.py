"""The npe2 manifest validates, its commands import, and the reader / writer / samples work."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from npe2 import PluginManifest

import napari_cosas
from napari_cosas._reader import get_reader
from napari_cosas._sample_data import sample_1, sample_2, sample_3
from napari_cosas._writer import write_labels
from napari_cosas.session import SIDECAR_FORMAT

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


def test_writer_and_reader_round_trip(tmp_path: Path) -> None:
    labels = np.zeros((20, 30), np.uint8)
    labels[3:9, 4:20] = 2
    (png,) = write_labels(str(tmp_path / "masks" / "a"), labels, {})
    assert png.endswith("a.png")
    (tif,) = write_labels(str(tmp_path / "masks" / "b.tif"), labels, {})
    for path in (png, tif):
        reader = get_reader(path)
        (data, meta, kind), = reader(path)
        assert kind == "labels" and np.array_equal(data, (labels > 0).astype(np.uint8))


def test_reader_declines_other_files(tmp_path: Path) -> None:
    other = tmp_path / "notes.json"
    other.write_text(json.dumps({"format": "something else"}))
    assert get_reader(str(other)) is None
    assert get_reader(str(tmp_path / "photo.png")) is None
    sidecar = tmp_path / "s.json"
    sidecar.write_text(json.dumps({"format": SIDECAR_FORMAT}))
    assert get_reader(str(sidecar)) is not None
