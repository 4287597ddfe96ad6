"""Export folders: how an export is written so that none is lost, and how a reader tells a
complete export from an incomplete one.

Layout under an output folder: ``masks/<stem>.png`` (or ``.tif``), ``geojson/<stem>.geojson``
and ``sidecars/<stem>.json``, where ``<stem>`` is the patch name made safe as a file name
(:func:`safe_stem`), or ``<stem>_v2``, ``<stem>_v3``, ... when earlier exports hold that name.

Writing (:func:`write_export`):

1. the stem is claimed by creating its sidecar as an empty file with ``O_EXCL``
   (:func:`versioned_stem`): of two processes exporting the same patch at once, one gets
   ``x`` and the other ``x_v2``, and neither overwrites the other;
2. the mask and the GeoJSON are written atomically, never over an existing file;
3. the sidecar, the export's manifest, replaces the empty claim last. It records the SHA-256 of
   the mask and the GeoJSON files.

What an export of a patch records (:func:`sidecar_record`, the sidecar's schema; format
:data:`SIDECAR_FORMAT`, read back by :func:`load_sidecar`) and when an unchanged patch reuses
its earlier export (:func:`content_sha256`, :func:`reusable_export`) are decided here too; the
session (:meth:`napari_cosas.interaction.session.AnnotationSession.export`) encodes the files and calls
them.

Reading (:func:`export_problem`, :func:`latest_exports`): an export is complete when its
sidecar is a readable napari-cosas sidecar and the files it names exist with the recorded
hashes. A process killed midway leaves an empty sidecar (the claim), perhaps a mask or GeoJSON,
perhaps a ``.tmp`` file: none of it is taken for an export, and the stem stays claimed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import unicodedata
from dataclasses import dataclass, field
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .files import atomic_write, claim, is_temporary

if TYPE_CHECKING:
    from ..interaction.patch import Patch

log = logging.getLogger(__name__)

SIDECAR_FORMAT = "napari-cosas-sidecar/1"
#: Export sub-folders: ``<out>/masks``, ``<out>/sidecars``, ``<out>/geojson``.
MASKS_DIR, SIDECARS_DIR, GEOJSON_DIR = "masks", "sidecars", "geojson"
MASK_SUFFIXES = (".png", ".tif")
#: Longest stem written (file systems allow 255 bytes per name; room for ``_vN`` and suffixes).
MAX_STEM_BYTES = 200
#: Masks with a side longer than this are exported as (zlib-compressed) TIFF instead of PNG.
LARGE_SIDE = 2048


@dataclass(frozen=True)
class ExportResult:
    """Paths written by one export, and a digest of what was exported (mask and clicks)."""

    mask: Path
    sidecar: Path
    geojson: Path
    content_sha256: str = field(default="", compare=False)


def safe_stem(name: str) -> str:
    """``name`` as a file stem that stays inside its folder and is not hidden.

    Path separators, control characters and characters Windows forbids become ``_``; leading
    dots and spaces are dropped (``../../x`` -> ``_.._x``); an empty result is ``patch``.
    """
    text = unicodedata.normalize("NFC", str(name))
    text = re.sub(r'[\x00-\x1f\x7f/\\:*?"<>|]', "_", text).strip()
    text = text.lstrip(". ")
    while len(text.encode()) > MAX_STEM_BYTES:
        text = text[:-1]
    return text or "patch"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _paths(out_dir: Path, stem: str, suffix: str) -> ExportResult:
    return ExportResult(
        out_dir / MASKS_DIR / f"{stem}{suffix}",
        out_dir / SIDECARS_DIR / f"{stem}.json",
        out_dir / GEOJSON_DIR / f"{stem}.geojson",
    )


def _taken(out_dir: Path, stem: str) -> bool:
    candidates = [out_dir / MASKS_DIR / f"{stem}{s}" for s in MASK_SUFFIXES]
    candidates += [out_dir / SIDECARS_DIR / f"{stem}.json", out_dir / GEOJSON_DIR / f"{stem}.geojson"]
    return any(os.path.lexists(p) for p in candidates)


def versioned_stem(out_dir: str | os.PathLike, name: str) -> str:
    """Claim and return the first free stem of ``safe_stem(name)``, ``_v2``, ``_v3``, ...

    A stem is free when no mask, sidecar or GeoJSON of that stem exists; it is claimed by
    creating ``sidecars/<stem>.json`` empty with ``O_EXCL``, so two processes never get the same
    stem. The caller owns the claim: it must write the export, or remove the claim.
    """
    out_dir = Path(out_dir)
    base = safe_stem(name)
    stem, version = base, 1
    while _taken(out_dir, stem) or not claim(out_dir / SIDECARS_DIR / f"{stem}.json"):
        version += 1
        stem = f"{base}_v{version}"
    return stem


def write_export(
    out_dir: str | os.PathLike,
    name: str,
    *,
    mask: bytes,
    suffix: str,
    geojson: bytes,
    sidecar: dict[str, Any],
    content_sha256: str = "",
) -> ExportResult:
    """Write one export of patch ``name``: mask file bytes (``suffix`` ``.png`` / ``.tif``),
    GeoJSON bytes, then ``sidecar`` completed with the stem, the version, and each file's path
    (relative to the sidecar) and SHA-256. If a write fails, what this export wrote is removed."""
    if suffix not in MASK_SUFFIXES:
        raise ValueError(f"mask suffix {suffix!r}; expected one of {MASK_SUFFIXES}")
    out_dir = Path(out_dir)
    stem = versioned_stem(out_dir, name)
    result = _paths(out_dir, stem, suffix)
    result = ExportResult(result.mask, result.sidecar, result.geojson, content_sha256)
    written: list[Path] = []
    try:
        for path, data in ((result.mask, mask), (result.geojson, geojson)):
            atomic_write(path, data, overwrite=False)
            written.append(path)
        manifest = {
            **sidecar,
            "stem": stem,
            "version": _version_of(stem, safe_stem(name)),
            "mask_file": os.path.relpath(result.mask, result.sidecar.parent),
            "mask_sha256": _sha256(mask),
            "geojson_file": os.path.relpath(result.geojson, result.sidecar.parent),
            "geojson_sha256": _sha256(geojson),
        }
        atomic_write(result.sidecar, json.dumps(manifest, indent=2).encode())
    except BaseException:
        for path in (*written, result.sidecar):
            path.unlink(missing_ok=True)
        raise
    return result


def mask_suffix(shape: tuple[int, int]) -> str:
    """The exported mask's suffix for a patch of ``shape`` ``(H, W)``: ``.tif`` when a side
    exceeds :data:`LARGE_SIDE`, else ``.png``."""
    return ".tif" if max(shape) > LARGE_SIDE else ".png"


def now_iso() -> str:
    """The current UTC time as an ISO 8601 string with milliseconds (the sidecar's ``created``)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def sidecar_record(patch: Patch, *, segmenter_id: str, click_id: str, created: str) -> dict[str, Any]:
    """The sidecar's record of ``patch`` (:func:`write_export` adds the stem, version and files).

    Clicks are ``(row, col)`` image pixels; ``image.shape_rc`` is ``(H, W)``; ``started_from`` is
    ``"automatic"`` (the segmenter's mask) or ``"empty"``.
    """
    return {
        "format": SIDECAR_FORMAT,
        "created": created,
        "image": {
            "name": patch.name,
            "path": str(patch.path.resolve()) if patch.path is not None else None,
            "sha256": patch.sha256,
            "shape_rc": list(patch.shape),
        },
        "models": {"segmenter": segmenter_id, "click": click_id},
        "started_from": "automatic" if patch.auto_prob is not None else "empty",
        "brush_edited": patch.brush_edited,
        "coordinates": "clicks are (row, col) image pixels; positive true = tumour",
        "clicks": [
            {"row": c.row, "col": c.col, "positive": c.positive, "timestamp": c.timestamp,
             "latency_s": round(c.latency_s, 6), "effect": c.effect}
            for c in patch.clicks
        ],
    }


def content_sha256(mask: bytes, record: dict[str, Any]) -> str:
    """Digest of what an export records: the mask file's bytes and the sidecar record (clicks,
    start, brush edits, models), its ``created`` time left out."""
    digest = hashlib.sha256(mask)
    digest.update(json.dumps({k: v for k, v in record.items() if k != "created"}, sort_keys=True).encode())
    return digest.hexdigest()


def reusable_export(earlier: Sequence[ExportResult], content: str, out_dir: str | os.PathLike) -> ExportResult | None:
    """The latest of a patch's ``earlier`` exports that holds ``content`` (:func:`content_sha256`),
    lies in ``out_dir`` and is still complete on disk, or ``None`` (a new export is needed)."""
    out = Path(out_dir).resolve()
    for result in reversed(earlier):
        if (result.content_sha256 == content and result.sidecar.parent.parent.resolve() == out
                and export_problem(result.sidecar) is None):
            return result
    return None


def _version_of(stem: str, base: str) -> int:
    if stem == base:
        return 1
    match = re.fullmatch(re.escape(base) + r"_v([0-9]+)", stem)
    return int(match[1]) if match else 1


def load_sidecar(path: str | os.PathLike) -> dict[str, Any]:
    """Read a sidecar written by an export; ``ValueError`` naming the file otherwise (an empty
    sidecar is an export in progress or one that was interrupted)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path.name} is not a readable sidecar ({exc})") from exc
    if not text:
        raise ValueError(f"{path.name} is empty: its export is in progress or was interrupted")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path.name} is not a readable JSON file ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT:
        raise ValueError(f"{path.name} is not a napari-cosas sidecar (format {SIDECAR_FORMAT!r})")
    return data


def export_problem(sidecar_path: str | os.PathLike) -> str | None:
    """Why the export of this sidecar is incomplete or damaged, or ``None`` when it is complete."""
    sidecar_path = Path(sidecar_path)
    try:
        data = load_sidecar(sidecar_path)
    except ValueError as exc:
        return str(exc)
    for key in ("mask", "geojson"):
        relative = data.get(f"{key}_file")
        if not isinstance(relative, str):
            return f"{sidecar_path.name} names no {key} file"
        target = (sidecar_path.parent / relative).resolve()
        if not target.is_file():
            return f"{sidecar_path.name}: its {key} file {relative} is missing"
        expected = data.get(f"{key}_sha256")
        if expected is not None and _file_sha256(target) != expected:
            return f"{sidecar_path.name}: its {key} file {relative} was changed or damaged (SHA-256 differs)"
    return None


@dataclass(frozen=True)
class ExportedMask:
    """A complete export's mask: the patch ``name`` it belongs to and its ``version`` (1, 2, ...)."""

    name: str
    version: int
    mask: Path
    sidecar: Path


def is_export_folder(masks_dir: str | os.PathLike) -> bool:
    """Whether ``masks_dir`` is the ``masks`` folder of an export (it has ``../sidecars``)."""
    masks_dir = Path(masks_dir)
    return masks_dir.name == MASKS_DIR and (masks_dir.parent / SIDECARS_DIR).is_dir()


def latest_exports(masks_dir: str | os.PathLike) -> dict[str, ExportedMask]:
    """Each patch's latest complete export in an export folder's ``masks`` folder, by patch name.

    Versions are those the sidecars record (a patch named ``slide_v2`` is its own patch, not a
    version of ``slide``). Incomplete or damaged exports, and mask files that no complete
    sidecar names, are skipped with a warning naming them.
    """
    masks_dir = Path(masks_dir)
    sidecars = masks_dir.parent / SIDECARS_DIR
    best: dict[str, ExportedMask] = {}
    named: set[Path] = set()
    for path in sorted(sidecars.glob("*.json")):
        if is_temporary(path):
            continue
        problem = export_problem(path)
        if problem is not None:
            log.warning("skipping an incomplete export: %s", problem)
            continue
        data = load_sidecar(path)
        mask = (path.parent / data["mask_file"]).resolve()
        named.add(mask)
        name = str(data.get("image", {}).get("name") or data.get("stem") or path.stem)
        version = int(data.get("version") or _version_of(path.stem, safe_stem(name)))
        if name not in best or version > best[name].version:
            best[name] = ExportedMask(name, version, mask, path)
    orphans = sorted(
        p.name for p in masks_dir.iterdir()
        if p.is_file() and not is_temporary(p) and p.suffix.lower() in MASK_SUFFIXES and p.resolve() not in named
    )
    if orphans:
        shown = ", ".join(orphans[:10]) + (f" and {len(orphans) - 10} more" if len(orphans) > 10 else "")
        log.warning("ignoring mask files in %s that no complete sidecar names (interrupted exports?): %s",
                    masks_dir, shown)
    return best
