"""Named model configurations and their weights files.

Each `ModelSpec` names a model (``kind``: ``"click"`` for SAM-style click models,
``"backbone"`` for frozen backbones of the Rein segmenter, ``"segmenter"`` for trained Rein
segmenters), how to build it (``config``) and where its weights come from: a URL with a
checksum (downloaded with pooch into `cache_dir`), or the project's ``weights/`` folder
(``bundled=True``). An explicit local path always skips any download. Nothing is downloaded at
import time. Everything is loaded with ``map_location="cpu"``, ``weights_only=True`` and strict
keys.

Environment variables: ``NAPARI_COSAS_CACHE`` (download cache folder), ``NAPARI_COSAS_WEIGHTS``
(folder holding the bundled default weights, searched first).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from .devices import resolve_device

if TYPE_CHECKING:
    from segment_anything.modeling import Sam

    from .models.segmenter import ReinSegmenter

logger = logging.getLogger(__name__)

Kind = Literal["click", "backbone", "segmenter"]


class WeightsError(RuntimeError):
    """A weights file is missing, cannot be downloaded or fails its checksum."""


class ChecksumMismatchError(WeightsError, ValueError):
    """A weights file's hash differs from the registered one."""


@dataclass(frozen=True)
class ModelSpec:
    """A named model and its weights.

    ``known_hash`` is in pooch format (``"sha256:<hex>"`` or ``"md5:<hex>"``). Where no full
    checksum is published, ``sha256_prefix`` holds the leading hex digits of the SHA-256 that
    timm / torch.hub encode in the file name (``name-<prefix>.pth``) and is checked instead.
    ``config`` describes the architecture (see `load_click_model`, `load_backbone_state`).
    """

    name: str
    kind: Kind
    description: str
    licence: str
    filename: str
    url: str | None = None
    known_hash: str | None = None
    sha256_prefix: str | None = None
    bundled: bool = False
    config: Mapping[str, Any] = field(default_factory=dict)


_SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
_DINOV2_URL = "https://dl.fbaipublicfiles.com/dinov2/"
_TIMM_URL = "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-rsb-weights/"

_BUILTIN: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="sam_vit_b",
        kind="click",
        description="Segment Anything ViT-B (official, Meta AI), 91M-parameter encoder",
        licence="Apache-2.0",
        filename="sam_vit_b_01ec64.pth",
        url=_SAM_URL + "sam_vit_b_01ec64.pth",
        known_hash="sha256:ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
        config={"format": "sam_official", "arch": "sam_vit", "variant": "vit_b", "backbone": "sam_vit_b"},
    ),
    ModelSpec(
        name="sam_vit_l",
        kind="click",
        description="Segment Anything ViT-L (official, Meta AI), 308M-parameter encoder",
        licence="Apache-2.0",
        filename="sam_vit_l_0b3195.pth",
        url=_SAM_URL + "sam_vit_l_0b3195.pth",
        known_hash="sha256:3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
        config={"format": "sam_official", "arch": "sam_vit", "variant": "vit_l", "backbone": "sam_vit_l"},
    ),
    ModelSpec(
        name="sam_vit_h",
        kind="click",
        description="Segment Anything ViT-H (official, Meta AI), 636M-parameter encoder",
        licence="Apache-2.0",
        filename="sam_vit_h_4b8939.pth",
        url=_SAM_URL + "sam_vit_h_4b8939.pth",
        known_hash="sha256:a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
        config={"format": "sam_official", "arch": "sam_vit", "variant": "vit_h", "backbone": "sam_vit_h"},
    ),
    ModelSpec(
        name="dinov2_vits14",
        kind="backbone",
        description="DINOv2 ViT-S/14 (official, Meta AI; dinov2 repository key names)",
        licence="Apache-2.0",
        filename="dinov2_vits14_pretrain.pth",
        url=_DINOV2_URL + "dinov2_vits14/dinov2_vits14_pretrain.pth",
        known_hash="sha256:b938bf1bc15cd2ec0feacfe3a1bb553fe8ea9ca46a7e1d8d00217f29aef60cd9",
        config={"timm_name": "vit_small_patch14_dinov2", "state_format": "dinov2_official"},
    ),
    ModelSpec(
        name="dinov2_vitb14",
        kind="backbone",
        description="DINOv2 ViT-B/14 (official, Meta AI; dinov2 repository key names)",
        licence="Apache-2.0",
        filename="dinov2_vitb14_pretrain.pth",
        url=_DINOV2_URL + "dinov2_vitb14/dinov2_vitb14_pretrain.pth",
        known_hash="sha256:0b8b82f85de91b424aded121c7e1dcc2b7bc6d0adeea651bf73a13307fad8c73",
        config={"timm_name": "vit_base_patch14_dinov2", "state_format": "dinov2_official"},
    ),
    ModelSpec(
        name="dinov2_vitl14",
        kind="backbone",
        description="DINOv2 ViT-L/14 (official, Meta AI; dinov2 repository key names)",
        licence="Apache-2.0",
        filename="dinov2_vitl14_pretrain.pth",
        url=_DINOV2_URL + "dinov2_vitl14/dinov2_vitl14_pretrain.pth",
        known_hash="sha256:d5383ea8f4877b2472eb973e0fd72d557c7da5d3611bd527ceeb1d7162cbf428",
        config={"timm_name": "vit_large_patch14_dinov2", "state_format": "dinov2_official"},
    ),
    ModelSpec(
        name="convnext_atto",
        kind="backbone",
        description="ConvNeXt-Atto ImageNet-1k (timm, Ross Wightman; timm key names)",
        licence="Apache-2.0",
        filename="convnext_atto_d2-01bb0f51.pth",
        url=_TIMM_URL + "convnext_atto_d2-01bb0f51.pth",
        sha256_prefix="01bb0f51",
        config={"timm_name": "convnext_atto", "state_format": "timm"},
    ),
    ModelSpec(
        name="cosas-default-segmenter",
        kind="segmenter",
        description="napari-cosas default Rein segmenter, trained by the project (see weights/)",
        licence="BSD-3-Clause",
        filename="segmenter_default.pt",
        bundled=True,
    ),
    ModelSpec(
        name="cosas-default-click",
        kind="click",
        description="napari-cosas default click model (ConvNeXt encoder + enhanced decoder)",
        licence="BSD-3-Clause",
        filename="click_default.pt",
        bundled=True,
        config={"format": "napari-cosas-click"},
    ),
)

_REGISTRY: dict[str, ModelSpec] = {spec.name: spec for spec in _BUILTIN}


def register(spec: ModelSpec, *, overwrite: bool = False) -> None:
    """Add ``spec`` to the registry (``overwrite=True`` to replace an entry of that name)."""
    if spec.name in _REGISTRY and not overwrite:
        raise ValueError(f"model {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec


def list_models(kind: Kind | None = None) -> list[ModelSpec]:
    """Registered specs, sorted by name, optionally only those of one ``kind``."""
    return [s for _, s in sorted(_REGISTRY.items()) if kind is None or s.kind == kind]


def get_spec(name: str) -> ModelSpec:
    """The spec called ``name``; ``KeyError`` listing the available names otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(
            f"unknown model {name!r}; available: {', '.join(sorted(_REGISTRY))}"
        ) from None


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
    package = Path(__file__).resolve().parent
    dirs = [package / "weights", package.parents[1] / "weights"]
    env = os.environ.get("NAPARI_COSAS_WEIGHTS")
    return ([Path(env).expanduser()] if env else []) + dirs


def _bundled_file(spec: ModelSpec) -> Path:
    for folder in weights_dirs():
        candidate = folder / spec.filename
        if candidate.is_file():
            return candidate
    searched = "\n  ".join(str(d / spec.filename) for d in weights_dirs())
    raise WeightsError(
        f"Weights of {spec.name!r} not found. Searched:\n  {searched}\n"
        f"Train them with the project's training command, set NAPARI_COSAS_WEIGHTS to the folder "
        f"holding {spec.filename}, or pass an explicit path."
    )


def _file_hash(path: Path, alg: str) -> str:
    digest = hashlib.new(alg)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(spec: ModelSpec, path: Path) -> None:
    """Raise `ChecksumMismatchError` if ``path`` does not match the spec's checksum."""
    if spec.known_hash:
        alg, _, expected = spec.known_hash.partition(":")
        actual = _file_hash(path, alg)
        ok = actual == expected.lower()
    elif spec.sha256_prefix:
        alg, expected = "sha256", spec.sha256_prefix + "..."
        actual = _file_hash(path, alg)
        ok = actual.startswith(spec.sha256_prefix.lower())
    else:
        return
    if not ok:
        raise ChecksumMismatchError(
            f"Checksum mismatch for {spec.name!r}: {path} has {alg} {actual}, expected "
            f"{expected}. The file is corrupted or incomplete: delete it and call again to "
            f"re-download from {spec.url}, or pass an explicit path to a good copy."
        )


def fetch_weights(
    name: str,
    path: str | os.PathLike | None = None,
    *,
    download: bool = True,
    progress: bool = False,
) -> Path:
    """Local path of model ``name``'s weights.

    * ``path`` given: it must be a readable file; nothing is downloaded or hashed.
    * bundled specs: searched in `weights_dirs`.
    * otherwise the file in `cache_dir` is used if its checksum matches; if absent it is
      downloaded (``download=True``) with pooch and checked. A checksum mismatch raises
      `ChecksumMismatchError` naming the file and the fix; ``download=False`` with no cached
      file raises `WeightsError` naming the URL and where to place the file.
    """
    spec = get_spec(name)
    if path is not None:
        local = Path(path).expanduser()
        if not local.is_file() or not os.access(local, os.R_OK):
            raise WeightsError(f"Weights file for {name!r} not found or unreadable: {local}")
        return local
    if spec.bundled:
        return _bundled_file(spec)
    if spec.url is None:
        raise WeightsError(f"{name!r} has no download URL; pass an explicit path")
    folder = cache_dir()
    target = folder / spec.filename
    if target.is_file():
        _verify(spec, target)
        return target
    if not download:
        raise WeightsError(
            f"Weights of {name!r} are not in the cache and download=False. Download "
            f"{spec.url} and place it at {target} (or pass an explicit path)."
        )
    return _download(spec, folder, progress)


def _download(spec: ModelSpec, folder: Path, progress: bool) -> Path:
    import pooch

    folder.mkdir(parents=True, exist_ok=True)
    logger.info("downloading %s from %s to %s", spec.name, spec.url, folder)
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
            f"Checksum mismatch for {spec.name!r}: the file downloaded from {spec.url} does not "
            f"have {spec.known_hash}; it was discarded (not written to {folder / spec.filename}). "
            f"Try again later, or download it yourself and pass an explicit path. ({err})"
        ) from err
    except Exception as err:  # network errors of requests / urllib
        raise WeightsError(
            f"Could not download {spec.name!r} from {spec.url}: {err}. Download it yourself and "
            f"place it at {folder / spec.filename}, or pass an explicit path."
        ) from err
    if not spec.known_hash:
        try:
            _verify(spec, fetched)
        except ChecksumMismatchError:
            fetched.unlink()
            raise
    return fetched


def _file_id(spec_name: str | None, path: Path, spec: ModelSpec | None) -> str:
    """Model id for embedding caches: a label plus 16 hex digits of the weights' hash."""
    if spec is not None and spec.known_hash and spec.known_hash.startswith("sha256:"):
        digest = spec.known_hash.split(":", 1)[1]
    else:
        digest = _file_hash(path, "sha256")
    return f"{spec_name or path.stem}-{digest[:16]}"


def load_click_model(
    name_or_path: str | os.PathLike,
    *,
    weights: str | os.PathLike | None = None,
    decoder: Literal["plain", "enhanced"] | None = None,
    device: str | torch.device = "cpu",
) -> tuple[Sam, str]:
    """Load a click model by registry name or from a checkpoint file.

    Official SAM checkpoints get the ``decoder`` asked for (default ``"plain"``; an
    ``"enhanced"`` one starts identical to it). Project checkpoints (``napari-cosas-click/1``)
    are rebuilt from their stored config; asking for another ``decoder`` raises ``ValueError``.
    ``weights`` overrides the registered file. Returns ``(model in eval mode on device,
    model_id)``; ``model_id`` changes whenever the weights do (use it to key embedding caches).
    """
    from .models.sam_models import (
        CLICK_FORMAT,
        build_sam_vit,
        infer_sam_variant,
        load_click_checkpoint,
        load_sam_checkpoint,
    )

    spec: ModelSpec | None = None
    if isinstance(name_or_path, str) and name_or_path in _REGISTRY:
        spec = get_spec(name_or_path)
        if spec.kind != "click":
            raise ValueError(f"{spec.name!r} is a {spec.kind} model, not a click model")
        path = fetch_weights(spec.name, weights)
    else:
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            names = ", ".join(s.name for s in list_models("click"))
            raise WeightsError(
                f"{str(name_or_path)!r} is neither a registered click model ({names}) nor a file"
            )
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(payload, Mapping) and payload.get("format") == CLICK_FORMAT:
        model, config = load_click_checkpoint(path)
        if decoder is not None and decoder != config.get("decoder", "enhanced"):
            raise ValueError(
                f"{path} holds a trained {config.get('decoder')!r} decoder; cannot load it as "
                f"{decoder!r}"
            )
    else:
        model = build_sam_vit(infer_sam_variant(payload), decoder=decoder or "plain")
        load_sam_checkpoint(model, path)
    del payload
    return model.to(resolve_device(device)).eval(), _file_id(spec.name if spec else None, path, spec)


def backbone_architecture(name: str) -> str:
    """The Rein backbone (``models.backbones.build_backbone`` name) that registered weights
    ``name`` fit: a ``"backbone"`` spec's ``timm_name``, or the image encoder of an official SAM
    checkpoint (``config["backbone"]``). ``ValueError`` naming the usable weights otherwise."""
    spec = get_spec(name)
    architecture = _backbone_of(spec)
    if architecture is None:
        usable = ", ".join(s.name for s in list_models() if _backbone_of(s))
        raise ValueError(f"{name!r} is a {spec.kind} model with no backbone for the segmenter; use one of: {usable}")
    return architecture


def _backbone_of(spec: ModelSpec) -> str | None:
    return spec.config.get("timm_name") or spec.config.get("backbone")


def load_backbone_state(
    name: str, path: str | os.PathLike | None = None, *, download: bool = True
) -> dict[str, torch.Tensor]:
    """Pretrained state dict of the backbone weights ``name`` as stored in their file (key names
    per the spec's ``config["state_format"]``; an official SAM checkpoint whole), for
    ``build_segmenter(config, backbone_state=...)``; see `backbone_architecture`."""
    backbone_architecture(name)
    state = torch.load(fetch_weights(name, path, download=download), map_location="cpu",
                       weights_only=True)
    if not isinstance(state, Mapping):
        raise ValueError(f"weights of {name!r} are not a state dict")
    return dict(state)


def segmenter_file(name_or_path: str | os.PathLike, weights: str | os.PathLike | None = None) -> Path:
    """The weights file of a registered segmenter (``weights``, if given, instead), or the
    existing file ``name_or_path``; `WeightsError` listing the registered segmenters otherwise."""
    if isinstance(name_or_path, str) and name_or_path in _REGISTRY:
        spec = get_spec(name_or_path)
        if spec.kind != "segmenter":
            raise ValueError(f"{spec.name!r} is a {spec.kind} model, not a segmenter")
        return fetch_weights(spec.name, weights)
    path = Path(name_or_path).expanduser()
    if not path.is_file():
        names = ", ".join(s.name for s in list_models("segmenter"))
        raise WeightsError(f"{str(name_or_path)!r} is neither a registered segmenter ({names}) nor a file")
    return path


def load_segmenter(
    name_or_path: str | os.PathLike,
    *,
    weights: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
) -> ReinSegmenter:
    """Load a trained `ReinSegmenter` by registry name or path (saved with
    `ReinSegmenter.save`; a backbone frozen at official weights is fetched by its name)."""
    from .models.segmenter import ReinSegmenter

    model = ReinSegmenter.load(segmenter_file(name_or_path, weights), map_location="cpu")
    return model.to(resolve_device(device)).eval()
