"""Reading, converting, pairing and writing images and masks."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest

from napari_cosas.io.image_io import (
    ImageFormatError,
    as_rgb_uint8,
    load_image,
    load_mask,
    pair_images_and_masks,
    save_mask,
)


def test_conversions_and_refusals():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert as_rgb_uint8(gray).shape == (3, 4, 3)
    rgba = np.zeros((3, 4, 4), np.uint8)
    assert as_rgb_uint8(rgba).shape == (3, 4, 3)
    assert as_rgb_uint8(np.ones((3, 4, 3), np.float32)).max() == 255
    with pytest.raises(ImageFormatError, match=r"\(H, W, 3\)"):
        as_rgb_uint8(np.zeros((2, 3, 4, 5), np.uint8))
    with pytest.raises(ImageFormatError, match=r"\[0, 1\]"):
        as_rgb_uint8(np.full((3, 4, 3), 2.0))


def test_wrong_file_type_and_truncated_file(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ImageFormatError, match="unsupported file type"):
        load_image(tmp_path / "notes.txt")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(ImageFormatError, match="could not be read"):
        load_image(tmp_path / "broken.png")


def test_mask_size_mismatch_names_both_sizes(tmp_path):
    save_mask(tmp_path / "m.png", np.ones((5, 6), bool))
    with pytest.raises(ImageFormatError, match="5x6.*7x6"):
        load_mask(tmp_path / "m.png", shape=(7, 6))


def test_pairing_is_by_exact_stem_outside_export_folders(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for name in ("a", "b", "c_v2"):
        iio.imwrite(images / f"{name}.png", np.zeros((4, 4, 3), np.uint8))
    for name in ("a", "a_v2", "b", "c_v2"):
        save_mask(masks / f"{name}.png", np.zeros((4, 4), bool))
    pairs = {p.name: p.mask.stem for p in pair_images_and_masks(images, masks)}
    assert pairs == {"a": "a", "b": "b", "c_v2": "c_v2"}
    (masks / "b.png").unlink()
    with pytest.raises(FileNotFoundError, match="b.png"):
        pair_images_and_masks(images, masks)
