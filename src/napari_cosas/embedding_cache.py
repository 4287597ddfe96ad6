"""On-disk cache of image embeddings, so a patch is encoded once per model.

Each entry is a zarr group ``<root>/<key>.zarr`` holding the array ``embedding`` (float32,
``(1, C, h, w)``, e.g. ``(1, 256, 64, 64)`` for SAM) and attributes naming what it was computed
from: image SHA-256, model id, preprocessing version, input size, and the embedding's own SHA-256.
A read checks all of them; an entry that does not match or cannot be read is treated as a miss
(and removed), so a stale or corrupted cache never returns a wrong embedding.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

log = logging.getLogger(__name__)

CACHE_FORMAT = "napari-cosas-embedding/1"


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


def _array_sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def default_cache_dir() -> Path:
    """``$NAPARI_COSAS_CACHE/embeddings`` when set, else the user cache folder."""
    from .registry import cache_dir

    return Path(cache_dir()) / "embeddings"


class EmbeddingCache:
    """A folder of zarr groups, one per (image, model, preprocessing) key."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()

    def path(self, key: CacheKey) -> Path:
        return self.root / f"{key.digest}.zarr"

    def get(self, key: CacheKey) -> CachedEmbedding | None:
        """The cached embedding for ``key``, or ``None`` on a miss, a stale or a corrupted entry."""
        path = self.path(key)
        if not path.exists():
            return None
        try:
            group = zarr.open_group(str(path), mode="r")
            attrs = dict(group.attrs)
            if any(attrs.get(k) != v for k, v in key.attrs().items()):
                raise ValueError("entry was written for another image, model or preprocessing")
            embedding = np.asarray(group["embedding"][...], dtype=np.float32)
            if _array_sha256(embedding) != attrs.get("embedding_sha256"):
                raise ValueError("embedding checksum mismatch")
            input_size = tuple(int(v) for v in attrs["input_size"])
        except Exception as exc:  # any unreadable entry is a miss; zarr raises many types
            log.warning("Discarding cache entry %s: %s", path, exc)
            shutil.rmtree(path, ignore_errors=True)
            return None
        return CachedEmbedding(embedding, (input_size[0], input_size[1]))

    def put(self, key: CacheKey, entry: CachedEmbedding) -> Path:
        """Store an entry atomically (written to a temporary folder, then renamed)."""
        self.root.mkdir(parents=True, exist_ok=True)
        embedding = np.ascontiguousarray(entry.embedding, dtype=np.float32)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.root))
        try:
            group = zarr.open_group(str(tmp / "entry.zarr"), mode="w")
            group.create_array("embedding", data=embedding, chunks=embedding.shape)
            group.attrs.update(
                {
                    **key.attrs(),
                    "input_size": list(entry.input_size),
                    "embedding_sha256": _array_sha256(embedding),
                }
            )
            target = self.path(key)
            shutil.rmtree(target, ignore_errors=True)
            os.replace(tmp / "entry.zarr", target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return self.path(key)
