"""Reading, validating and writing patches and masks.

Images are RGB ``uint8`` arrays of shape ``(H, W, 3)``; masks are ``bool`` arrays of shape
``(H, W)`` (foreground is ``mask > 0`` in files). Every error names the file and the fix.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import tifffile

from .exports import is_export_folder, latest_exports
from .files import atomic_write, is_temporary

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
TIFF_SUFFIXES = (".tif", ".tiff")
#: Lossy formats: their compression noise would count as foreground in a mask.
LOSSY_SUFFIXES = (".jpg", ".jpeg")


class ImageFormatError(ValueError):
    """An image or mask that cannot be used as it is; the message says why and what to do."""


class DataWarning(UserWarning):
    """Data that can be used but is probably not what the user meant (the message says why)."""


def as_rgb_uint8(image: np.ndarray, *, name: str = "image") -> np.ndarray:
    """Convert an array to an RGB ``uint8`` image of shape ``(H, W, 3)``.

    Accepted: ``(H, W)`` or ``(H, W, 1)`` grayscale (replicated to 3 channels), ``(H, W, 2)``
    grayscale + alpha (alpha dropped), ``(H, W, 3)`` RGB,
    ``(H, W, 4)`` RGBA (alpha dropped; H&E scans have no meaningful transparency), in ``uint8``,
    ``uint16`` (scaled by 1/257), ``bool``, or float in ``[0, 1]``.
    """
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[-1] in (1, 2):  # grayscale, or grayscale + alpha
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
        if 0 < int(arr.max()) < 4096:
            warnings.warn(
                f"{name} is 16-bit with values up to {int(arr.max())}: probably 12-bit (or fewer) data "
                "stored in 16 bits. It is read as full-range 16-bit and will look almost black; "
                "rescale it to the 16-bit range (or convert it to 8-bit) first.",
                DataWarning,
                stacklevel=2,
            )
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
    return as_rgb_uint8(_read_pixels(path, "an image"), name=path.name)


def _read_pixels(path: Path, what: str) -> np.ndarray:
    """The pixels of an image file; ``ImageFormatError`` naming the file and what is wrong."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ImageFormatError(f"{path} cannot be read ({exc.strerror or exc}).") from exc
    if size == 0:
        raise ImageFormatError(f"{path.name} is an empty file (0 bytes); copy it again from its source.")
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            return _read_tiff(path)
        return iio.imread(path)
    except PermissionError as exc:
        raise ImageFormatError(f"{path} cannot be read: permission denied.") from exc
    except Exception as exc:  # imageio / tifffile raise many types for unreadable files
        raise ImageFormatError(
            f"{path.name} could not be read as {what}: it is damaged, truncated or not a "
            f"{path.suffix.lstrip('.').upper()} file. Copy it again from its source, or convert it."
        ) from exc


def _read_tiff(path: Path) -> np.ndarray:
    """A TIFF's first series; planar RGB ``(3, H, W)`` is returned as ``(H, W, 3)``."""
    with tifffile.TiffFile(path) as tif:
        data = tif.asarray()
        planar = tif.pages[0].planarconfig == tifffile.PLANARCONFIG.SEPARATE
    if planar and data.ndim == 3 and data.shape[0] in (3, 4):
        data = np.moveaxis(data, 0, -1)
    return data


def load_mask(path: str | os.PathLike, *, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a mask file as an integer label array ``(H, W)`` (0 = background).

    A 3-channel mask is accepted when its channels are equal. ``shape`` ``(H, W)``, when given,
    must match, else the error names both sizes. A JPEG mask (which pairing refuses unless asked,
    see :func:`pair_images_and_masks`) is thresholded at 128 to 0 / 1, so that its compression
    noise is not read as foreground.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No mask file at {path}.")
    data = _read_pixels(path, "a mask")
    lossy = path.suffix.lower() in LOSSY_SUFFIXES
    if lossy:
        data = (data >= 128).astype(np.uint8)
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


def encode_image(array: np.ndarray, suffix: str) -> bytes:
    """Encode an array as PNG or TIFF bytes (``suffix`` ``.png`` / ``.tif`` / ``.tiff``)."""
    if suffix.lower() in TIFF_SUFFIXES:
        import io

        buf = io.BytesIO()
        tifffile.imwrite(buf, array, compression="zlib")
        return buf.getvalue()
    return iio.imwrite("<bytes>", array, extension=suffix)


def save_mask(path: str | os.PathLike, mask: np.ndarray, *, overwrite: bool = True) -> Path:
    """Write a boolean mask ``(H, W)`` as a 0/255 ``uint8`` PNG or TIFF, atomically.

    ``overwrite=False`` raises ``FileExistsError`` instead of replacing an existing file.
    """
    path = Path(path)
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ImageFormatError(f"mask has shape {mask.shape}; expected (H, W).")
    return atomic_write(path, encode_image((mask > 0).astype(np.uint8) * 255, path.suffix), overwrite=overwrite)


def image_sha256(image: np.ndarray) -> str:
    """Hex SHA-256 of an image's shape, dtype and pixels (independent of the file format)."""
    arr = np.ascontiguousarray(image)
    h = hashlib.sha256()
    h.update(f"{arr.shape}|{arr.dtype.str}|".encode())
    h.update(arr.tobytes())
    return h.hexdigest()


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly in ``folder``, sorted by name (hidden and temporary files skipped)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is not a folder of images.")
    files = sorted(
        p for p in folder.iterdir()
        if p.is_file() and not is_temporary(p) and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not files:
        raise FileNotFoundError(f"No images ({', '.join(IMAGE_SUFFIXES)}) in {folder}.")
    return files


def _shown(names: list[str]) -> str:
    return ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")


def files_by_stem(folder: str | os.PathLike) -> dict[str, Path]:
    """The images of ``folder`` by file stem; ``ImageFormatError`` when two share a stem
    (``a.png`` and ``a.jpg``), since everything pairs and names outputs by stem."""
    by_stem: dict[str, list[Path]] = {}
    for path in list_images(folder):
        by_stem.setdefault(path.stem, []).append(path)
    clashes = [" and ".join(p.name for p in paths) for paths in by_stem.values() if len(paths) > 1]
    if clashes:
        raise ImageFormatError(
            f"{folder} holds files that share a stem: {_shown(clashes)}. Files pair with each other "
            "and name their outputs by stem; rename or move one of each."
        )
    return {stem: paths[0] for stem, paths in by_stem.items()}


def masks_by_name(masks_dir: str | os.PathLike) -> dict[str, Path]:
    """The masks of ``masks_dir`` by the name of the image they belong to.

    In an export folder (``masks/`` beside ``sidecars/``, as the widget and ``demo`` write
    them) each patch's latest complete export, by the patch name its sidecar records
    (``exports.latest_exports``); elsewhere every mask by its file stem.
    """
    if is_export_folder(masks_dir):
        exported = latest_exports(masks_dir)
        if not exported:
            raise FileNotFoundError(f"No complete export in {masks_dir} (see the warnings above).")
        return {name: record.mask for name, record in exported.items()}
    return files_by_stem(masks_dir)


@dataclass(frozen=True)
class Pair:
    """An image file and the mask file with the same stem."""

    name: str
    image: Path
    mask: Path


def pair_images_and_masks(
    images_dir: str | os.PathLike, masks_dir: str | os.PathLike, *, allow_lossy_masks: bool = False
) -> list[Pair]:
    """Pair each image in ``images_dir`` with its mask in ``masks_dir`` (see :func:`masks_by_name`).

    Raises ``FileNotFoundError`` naming every image without a mask, ``ImageFormatError`` for
    files sharing a stem, and for JPEG masks unless ``allow_lossy_masks`` (JPEG noise around
    edges and in the background would count as tumour; allowed, they are thresholded at 128).
    """
    images = masks_by_name(images_dir) if is_export_folder(images_dir) else files_by_stem(images_dir)
    masks = masks_by_name(masks_dir)
    pairs = [Pair(name, image, masks[name]) for name, image in images.items() if name in masks]
    missing = [image.name for name, image in images.items() if name not in masks]
    if missing:
        raise FileNotFoundError(
            f"No mask in {masks_dir} with the same file stem as: {_shown(missing)}. Masks pair with images by stem."
        )
    lossy = [p.mask.name for p in pairs if p.mask.suffix.lower() in LOSSY_SUFFIXES]
    if lossy and not allow_lossy_masks:
        raise ImageFormatError(
            f"masks saved as JPEG in {masks_dir}: {_shown(lossy)}. JPEG compression adds noise around "
            "edges and in the background that would count as tumour. Save the masks as PNG or TIFF, or "
            "pass --allow-jpeg-masks to read them thresholded at 128."
        )
    return sorted(pairs, key=lambda p: p.image.name)
