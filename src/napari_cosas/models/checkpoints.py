"""Weights files: where they come from and how they are read.

Where (`fetch_file`): an explicit local path (the user's own file, not hashed), the bundled
weights folders (`weights_dirs`, checked against the registered SHA-256 except for a file in
``$NAPARI_COSAS_WEIGHTS``), or the download cache (`cache_dir`, ``$NAPARI_COSAS_CACHE``; a
missing file is downloaded with pooch and checked). Nothing is downloaded unless asked.

How (`read_weights_file`): ``torch.load(weights_only=True)`` with errors that name the file and
what is wrong with it; `check_finite` refuses NaN or infinite parameters; `file_id` names the
bytes loaded (the embedding cache's key).

No torch at import (it is imported where a file is read), so that the registry's names and the
CLI's defaults are read without it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from .model_entries import ModelSpec

__all__ = [
    "ChecksumMismatchError", "WeightsError", "cache_dir", "check_finite", "fetch_file", "file_id", "read_weights_file",
    "weights_dirs",
]

logger = logging.getLogger(__name__)


class WeightsError(RuntimeError):
    """A weights file is missing, cannot be downloaded or fails its checksum."""


class ChecksumMismatchError(WeightsError, ValueError):
    """A weights file's hash differs from the registered one."""


def cache_dir() -> Path:
    """Download cache: ``$NAPARI_COSAS_CACHE`` or pooch's per-user cache for napari-cosas."""
    env = os.environ.get("NAPARI_COSAS_CACHE")
    if env:
        return Path(env).expanduser()
    import pooch

    return Path(pooch.os_cache("napari-cosas"))


def weights_dirs() -> list[Path]:
    """Folders searched for bundled weights, in order: ``$NAPARI_COSAS_WEIGHTS``,
    ``<package>/weights`` (installed package data), ``<repository>/weights`` (editable)."""
    package = Path(__file__).resolve().parents[1]
    dirs = [package / "weights", package.parents[1] / "weights"]
    env = os.environ.get("NAPARI_COSAS_WEIGHTS")
    return ([Path(env).expanduser()] if env else []) + dirs


def _bundled_file(spec: ModelSpec, name: str) -> tuple[Path, str | None]:
    """The bundled file and its verified SHA-256 (``None`` for a user's file found through
    ``$NAPARI_COSAS_WEIGHTS``, which is not held to the registered hash)."""
    env = os.environ.get("NAPARI_COSAS_WEIGHTS")
    for folder in weights_dirs():
        candidate = folder / spec.filename
        if candidate.is_file():
            if env and folder == Path(env).expanduser():
                return candidate, None
            return candidate, _verify(spec, name, candidate)
    searched = "\n  ".join(str(d / spec.filename) for d in weights_dirs())
    raise WeightsError(
        f"Weights of {name!r} not found. Searched:\n  {searched}\n"
        f"Train them with the project's training command, set NAPARI_COSAS_WEIGHTS to the folder "
        f"holding {spec.filename}, or pass an explicit path."
    )


def _file_hash(path: Path, alg: str) -> str:
    digest = hashlib.new(alg)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(spec: ModelSpec, name: str, path: Path) -> str | None:
    """Raise `ChecksumMismatchError` if ``path`` does not match the spec's checksum; return the
    file's SHA-256 when it was computed."""
    if spec.known_hash:
        alg, _, expected = spec.known_hash.partition(":")
        actual = _file_hash(path, alg)
        ok = actual == expected.lower()
    elif spec.sha256_prefix:
        alg, expected = "sha256", spec.sha256_prefix + "..."
        actual = _file_hash(path, alg)
        ok = actual.startswith(spec.sha256_prefix.lower())
    else:
        return None
    if not ok:
        fix = (f"reinstall napari-cosas (pip install --force-reinstall napari-cosas) or restore {path.name} "
               "from the repository" if spec.bundled
               else f"delete it and call again to re-download from {spec.url}")
        raise ChecksumMismatchError(
            f"Checksum mismatch for {name!r}: {path} has {alg} {actual}, expected "
            f"{expected}. The file is corrupted or incomplete: {fix}, or pass an explicit path to a good copy."
        )
    return actual if alg == "sha256" else None


def fetch_file(
    spec: ModelSpec, name: str, path: str | os.PathLike | None = None, *, download: bool = True,
    progress: bool = False,
) -> tuple[Path, str | None]:
    """The local path of ``spec``'s weights (called ``name`` in messages), and the file's SHA-256
    when it was verified on the way (else ``None``).

    * ``path`` given: it must be a readable file; nothing is downloaded or hashed.
    * bundled specs: searched in `weights_dirs`.
    * otherwise the file in `cache_dir` is used if its checksum matches; if absent it is
      downloaded (``download=True``) with pooch and checked. A checksum mismatch raises
      `ChecksumMismatchError` naming the file and the fix; ``download=False`` with no cached
      file raises `WeightsError` naming the URL and where to place the file.
    """
    if path is not None:
        local = Path(path).expanduser()
        if not local.is_file() or not os.access(local, os.R_OK):
            raise WeightsError(f"Weights file for {name!r} not found or unreadable: {local}")
        return local, None
    if spec.bundled:
        return _bundled_file(spec, name)
    if spec.url is None:
        raise WeightsError(f"{name!r} has no download URL; pass an explicit path")
    folder = cache_dir()
    if folder.exists() and not folder.is_dir():
        raise WeightsError(
            f"The download cache {folder} is a file, not a folder. Point NAPARI_COSAS_CACHE at a folder "
            f"(or unset it), or pass an explicit path to the weights of {name!r}."
        )
    target = folder / spec.filename
    if target.is_file():
        return target, _verify(spec, name, target)
    if not download:
        raise WeightsError(
            f"Weights of {name!r} are not in the cache and download=False. Download "
            f"{spec.url} and place it at {target} (or pass an explicit path)."
        )
    return _download(spec, name, folder, progress), None


def _download(spec: ModelSpec, name: str, folder: Path, progress: bool) -> Path:
    import pooch

    folder.mkdir(parents=True, exist_ok=True)
    logger.info("downloading %s from %s to %s", name, spec.url, folder)
    try:
        fetched = Path(
            pooch.retrieve(
                spec.url,
                known_hash=spec.known_hash,
                fname=spec.filename,
                path=folder,
                progressbar=progress,
            )
        )
    except ValueError as err:
        if "hash" not in str(err).lower():
            raise
        raise ChecksumMismatchError(
            f"Checksum mismatch for {name!r}: the file downloaded from {spec.url} does not "
            f"have {spec.known_hash}; it was discarded (not written to {folder / spec.filename}). "
            f"Try again later, or download it yourself and pass an explicit path. ({err})"
        ) from err
    except Exception as err:  # network errors of requests / urllib
        raise WeightsError(
            f"Could not download {name!r} from {spec.url}: {err}. Download it yourself and "
            f"place it at {folder / spec.filename}, or pass an explicit path."
        ) from err
    if not spec.known_hash:
        try:
            _verify(spec, name, fetched)
        except ChecksumMismatchError:
            fetched.unlink()
            raise
    return fetched


def file_id(label: str, path: Path, verified_sha256: str | None) -> str:
    """Model id for embedding caches: a label plus 16 hex digits of the SHA-256 of the file
    loaded (``verified_sha256`` when the file was just checked, else hashed here)."""
    return f"{label}-{(verified_sha256 or _file_hash(path, 'sha256'))[:16]}"


_TORCH_PICKLE_HINT = "WeightsUnpickler error:"


def read_weights_file(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``, with a `WeightsError` naming the file and what
    is wrong with it (missing, unreadable, empty, truncated, not a PyTorch file, or holding
    Python objects that only an unsafe load would run) instead of PyTorch's exception."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise WeightsError(f"weights file {path} cannot be read ({exc.strerror or exc})") from exc
    if size == 0:
        raise WeightsError(f"weights file {path} is empty (0 bytes): copy or download it again")
    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "weights_only" in text or _TORCH_PICKLE_HINT in text:
            detail = next((line.strip() for line in text.splitlines() if _TORCH_PICKLE_HINT in line),
                          "it holds objects other than tensors and plain containers")
            raise WeightsError(
                f"weights file {path} was refused: {detail}. A file that needs arbitrary Python objects could "
                "run code when loaded, so napari-cosas never loads one. Use a checkpoint saved as a plain "
                "state dict (official checkpoints and napari-cosas's own files are)."
            ) from None
        raise WeightsError(f"{path} is not a PyTorch weights file, or it is damaged ({text})") from None
    except OSError as exc:
        raise WeightsError(f"weights file {path} cannot be read ({exc.strerror or exc})") from exc
    except Exception as exc:  # torch raises EOFError, RuntimeError, IndexError, ... for damaged files
        first_line = (str(exc).splitlines() or [""])[0]
        raise WeightsError(
            f"weights file {path} is truncated, damaged or not a PyTorch file ({type(exc).__name__}: {first_line}); "
            "download or copy it again"
        ) from None


def check_finite(module: torch.nn.Module, path: str | os.PathLike) -> None:
    """`WeightsError` naming ``path`` when a loaded parameter or buffer holds NaN or infinity
    (a damaged file: PyTorch's zip reader does not check CRCs)."""
    import torch

    for name, tensor in module.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise WeightsError(
                f"weights file {path} is damaged: {name} holds NaN or infinite values. Download or copy it "
                "again (or reinstall napari-cosas for the bundled models)."
            )
