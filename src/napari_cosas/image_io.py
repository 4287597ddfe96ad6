"""Reading, validating and writing patches and masks.

Images are RGB ``uint8`` arrays of shape ``(H, W, 3)``; masks are ``bool`` arrays of shape
``(H, W)`` (foreground is ``mask > 0`` in files). Every error names the file and the fix.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import tifffile

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
TIFF_SUFFIXES = (".tif", ".tiff")


class ImageFormatError(ValueError):
    """An image or mask that cannot be used as it is; the message says why and what to do."""


def as_rgb_uint8(image: np.ndarray, *, name: str = "image") -> np.ndarray:
    """Convert an array to an RGB ``uint8`` image of shape ``(H, W, 3)``.

    Accepted: ``(H, W)`` or ``(H, W, 1)`` grayscale (replicated to 3 channels), ``(H, W, 3)`` RGB,
    ``(H, W, 4)`` RGBA (alpha dropped; H&E scans have no meaningful transparency), in ``uint8``,
    ``uint16`` (scaled by 1/257), ``bool``, or float in ``[0, 1]``.
    """
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    elif arr.ndim == 3 and arr.shape[-1] == 4:
        arr = arr[..., :3]
    elif not (arr.ndim == 3 and arr.shape[-1] == 3):
        raise ImageFormatError(
            f"{name} has shape {arr.shape}; expected an RGB patch of shape (H, W, 3) "
            "(grayscale (H, W) and RGBA (H, W, 4) are converted). For a stack or a multi-page "
            "file, open one page at a time."
        )
    if arr.shape[0] < 2 or arr.shape[1] < 2:
        raise ImageFormatError(f"{name} is {arr.shape[0]}x{arr.shape[1]} pixels; too small to segment.")
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if arr.dtype == np.uint16:
        return (arr // 257).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all() or arr.min() < 0.0 or arr.max() > 1.0:
            raise ImageFormatError(
                f"{name} is floating point with values outside [0, 1]; rescale it to [0, 1] "
                "or convert it to uint8 first."
            )
        return np.round(arr * 255.0).astype(np.uint8)
    raise ImageFormatError(f"{name} has dtype {arr.dtype}; expected uint8 (or uint16 / float in [0, 1]).")


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as RGB ``uint8`` ``(H, W, 3)``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No image file at {path}.")
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise ImageFormatError(
            f"{path.name}: unsupported file type {path.suffix!r}; use one of {', '.join(IMAGE_SUFFIXES)}."
        )
    try:
        data = tifffile.imread(path) if path.suffix.lower() in TIFF_SUFFIXES else iio.imread(path)
    except Exception as exc:  # imageio / tifffile raise many types for unreadable files
        raise ImageFormatError(f"{path.name} could not be read as an image ({exc}); is the file complete?") from exc
    return as_rgb_uint8(data, name=path.name)


def load_mask(path: str | os.PathLike, *, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a mask file as an integer label array ``(H, W)`` (0 = background).

    A 3-channel mask is accepted when its channels are equal. ``shape`` ``(H, W)``, when given,
    must match, else the error names both sizes.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No mask file at {path}.")
    data = tifffile.imread(path) if path.suffix.lower() in TIFF_SUFFIXES else iio.imread(path)
    if data.ndim == 3:
        if data.shape[-1] == 4:
            data = data[..., :3]
        if not (data == data[..., :1]).all():
            raise ImageFormatError(f"{path.name} is a colour image, not a mask; masks are single-channel labels.")
        data = data[..., 0]
    if data.ndim != 2:
        raise ImageFormatError(f"{path.name} has shape {data.shape}; a mask must be 2-D.")
    if shape is not None and tuple(data.shape) != tuple(shape):
        raise ImageFormatError(
            f"{path.name} is {data.shape[0]}x{data.shape[1]} (rows x cols) but its image is "
            f"{shape[0]}x{shape[1]}; masks must have the image's size."
        )
    return data


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def encode_image(array: np.ndarray, suffix: str) -> bytes:
    """Encode an array as PNG or TIFF bytes (``suffix`` ``.png`` / ``.tif`` / ``.tiff``)."""
    if suffix.lower() in TIFF_SUFFIXES:
        import io

        buf = io.BytesIO()
        tifffile.imwrite(buf, array, compression="zlib")
        return buf.getvalue()
    return iio.imwrite("<bytes>", array, extension=suffix)


def save_mask(path: str | os.PathLike, mask: np.ndarray) -> Path:
    """Write a boolean mask ``(H, W)`` as a 0/255 ``uint8`` PNG or TIFF, atomically."""
    path = Path(path)
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ImageFormatError(f"mask has shape {mask.shape}; expected (H, W).")
    atomic_write_bytes(path, encode_image((mask > 0).astype(np.uint8) * 255, path.suffix))
    return path


def image_sha256(image: np.ndarray) -> str:
    """Hex SHA-256 of an image's shape, dtype and pixels (independent of the file format)."""
    arr = np.ascontiguousarray(image)
    h = hashlib.sha256()
    h.update(f"{arr.shape}|{arr.dtype.str}|".encode())
    h.update(arr.tobytes())
    return h.hexdigest()


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly in ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is not a folder of images.")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"No images ({', '.join(IMAGE_SUFFIXES)}) in {folder}.")
    return files


@dataclass(frozen=True)
class Pair:
    """An image file and the mask file with the same stem."""

    name: str
    image: Path
    mask: Path


_VERSIONED = re.compile(r"^(?P<stem>.+)_v(?P<version>[2-9]|[1-9][0-9]+)$")


def _latest_masks(mask_files: list[Path]) -> dict[str, Path]:
    """Map each stem to its mask, the highest export version winning (``x`` < ``x_v2`` < ``x_v3``)."""
    best: dict[str, tuple[int, Path]] = {}
    for path in mask_files:
        match = _VERSIONED.match(path.stem)
        stem, version = (match["stem"], int(match["version"])) if match else (path.stem, 1)
        if stem not in best or version > best[stem][0]:
            best[stem] = (version, path)
    return {stem: path for stem, (_, path) in best.items()}


def pair_images_and_masks(images_dir: str | os.PathLike, masks_dir: str | os.PathLike) -> list[Pair]:
    """Pair each image in ``images_dir`` with the mask of the same file stem in ``masks_dir``.

    Re-exported masks (``<stem>_v2.png``, ``<stem>_v3.png``, ... as the widget writes them) pair
    with ``<stem>``, the latest version winning; a mask whose stem is exactly an image's stem
    pairs with that image. Raises ``FileNotFoundError`` naming every image without a mask.
    """
    mask_files = list_images(masks_dir)
    exact = {p.stem: p for p in mask_files}
    latest = _latest_masks(mask_files)
    pairs, missing = [], []
    for image in list_images(images_dir):
        mask = latest.get(image.stem) or exact.get(image.stem)
        if mask is not None:
            pairs.append(Pair(image.stem, image, mask))
        else:
            missing.append(image.name)
    if missing:
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise FileNotFoundError(
            f"No mask in {masks_dir} with the same file stem as: {shown}. Masks pair with images by stem."
        )
    return pairs
