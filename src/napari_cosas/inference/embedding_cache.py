"""On-disk cache of image embeddings, so a patch is encoded once per model.

Each entry is a zarr group ``<root>/<key>.zarr`` holding the array ``embedding`` (float32,
``(1, C, h, w)``, e.g. ``(1, 256, 64, 64)`` for SAM) and attributes naming what it was computed
from: image SHA-256, model id, preprocessing version, input size, and a SHA-256 over the
embedding and the input size. A read checks all of them; an entry that does not match or cannot
be read is treated as a miss (and removed), so a stale or corrupted cache never returns a wrong
embedding.

The cache is an optimisation and never breaks a run: a cache folder that cannot be created,
read or written (read-only, ``NAPARI_COSAS_CACHE`` pointing at a file, a full disk), a stray
file at an entry's path, or another process writing the same entry at the same moment, each
give a warning at most, and the embedding is computed (and kept in memory) instead.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from ..io.files import make_temporary_dir

log = logging.getLogger(__name__)

CACHE_FORMAT = "napari-cosas-embedding/2"


@dataclass(frozen=True)
class CacheKey:
    """What an embedding depends on."""

    image_sha256: str
    model_id: str
    preprocess_version: str

    @property
    def digest(self) -> str:
        text = f"{self.image_sha256}|{self.model_id}|{self.preprocess_version}"
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def attrs(self) -> dict[str, str]:
        return {
            "format": CACHE_FORMAT,
            "image_sha256": self.image_sha256,
            "model_id": self.model_id,
            "preprocess_version": self.preprocess_version,
        }


@dataclass(frozen=True)
class CachedEmbedding:
    """An embedding ``(1, C, h, w)`` float32 and the resized input size ``(rows, cols)``."""

    embedding: np.ndarray
    input_size: tuple[int, int]


def _entry_sha256(embedding: np.ndarray, input_size: tuple[int, int]) -> str:
    digest = hashlib.sha256(f"{embedding.shape}|{tuple(int(v) for v in input_size)}|".encode())
    digest.update(np.ascontiguousarray(embedding, dtype=np.float32).tobytes())
    return digest.hexdigest()


def default_cache_dir() -> Path:
    """``$NAPARI_COSAS_CACHE/embeddings`` when set, else the user cache folder."""
    from ..models.checkpoints import cache_dir

    return Path(cache_dir()) / "embeddings"


def _remove(path: Path) -> None:
    """Remove an entry folder, or a stray file in its place; errors are logged, not raised."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif os.path.lexists(path):
            path.unlink()
    except OSError as exc:
        log.warning("Could not remove the embedding-cache entry %s (%s)", path, exc.strerror or exc)


def _holds(path: Path, digest: str) -> bool:
    """Whether ``path`` is a whole entry with the content whose ``entry_sha256`` is ``digest``
    (entries are renamed into place complete, so their attributes say what they hold)."""
    try:
        return os.path.isdir(path) and zarr.open_group(str(path), mode="r").attrs.get("entry_sha256") == digest
    except Exception:  # an unreadable folder holds nothing; zarr raises many types
        return False


class EmbeddingCache:
    """A folder of zarr groups, one per (image, model, preprocessing) key."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()
        self._disabled_because: str | None = None

    def path(self, key: CacheKey) -> Path:
        return self.root / f"{key.digest}.zarr"

    def _unusable(self, why: str) -> None:
        if self._disabled_because is None:
            hint = ""
            if os.environ.get("NAPARI_COSAS_CACHE"):
                hint = f" (NAPARI_COSAS_CACHE={os.environ['NAPARI_COSAS_CACHE']})"
            log.warning(
                "The embedding cache %s%s cannot be used: %s. Embeddings are computed without it; "
                "point NAPARI_COSAS_CACHE (or --cache-dir) at a writable folder to keep them.",
                self.root, hint, why,
            )
        self._disabled_because = why

    def get(self, key: CacheKey) -> CachedEmbedding | None:
        """The cached embedding for ``key``, or ``None`` on a miss, a stale or a corrupted entry."""
        if self._disabled_because is not None:
            return None
        path = self.path(key)
        try:
            if not os.path.lexists(path):
                return None
        except OSError:
            return None
        try:
            group = zarr.open_group(str(path), mode="r")
            attrs = dict(group.attrs)
            if any(attrs.get(k) != v for k, v in key.attrs().items()):
                raise ValueError("entry was written for another image, model, preprocessing or cache format")
            embedding = np.asarray(group["embedding"][...], dtype=np.float32)
            input_size = (int(attrs["input_size"][0]), int(attrs["input_size"][1]))
            if _entry_sha256(embedding, input_size) != attrs.get("entry_sha256"):
                raise ValueError("checksum mismatch")
        except Exception as exc:  # any unreadable entry is a miss; zarr raises many types
            log.warning("Discarding cache entry %s: %s", path, exc)
            _remove(path)
            return None
        return CachedEmbedding(embedding, input_size)

    def put(self, key: CacheKey, entry: CachedEmbedding) -> Path | None:
        """Store an entry atomically (written to a temporary folder, then renamed); the entry's
        path, or ``None`` when the cache cannot be written (a warning says why)."""
        if self._disabled_because is not None:
            return None
        try:
            return self._put(key, entry)
        except OSError as exc:
            self._unusable(f"{exc.strerror or exc} ({exc.filename or self.root})")
            return None

    def _put(self, key: CacheKey, entry: CachedEmbedding) -> Path:
        if self.root.exists() and not self.root.is_dir():
            raise NotADirectoryError(20, "it is a file, not a folder", str(self.root))
        embedding = np.ascontiguousarray(entry.embedding, dtype=np.float32)
        digest = _entry_sha256(embedding, entry.input_size)
        target = self.path(key)
        if _holds(target, digest):
            return target  # stored already, by another writer: entries are keyed by content
        tmp = make_temporary_dir(self.root, key.digest)
        try:
            group = zarr.open_group(str(tmp / "entry.zarr"), mode="w")
            group.create_array("embedding", data=embedding, chunks=embedding.shape)
            group.attrs.update(
                {**key.attrs(), "input_size": [int(v) for v in entry.input_size], "entry_sha256": digest}
            )
            if os.path.lexists(target) and not _holds(target, digest):
                _remove(target)  # a stale entry (get() refused it) or a stray file, never a good one
            try:
                os.rename(tmp / "entry.zarr", target)
            except OSError:
                if not _holds(target, digest):
                    raise
                # another writer stored this entry meanwhile; keep theirs
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return target
