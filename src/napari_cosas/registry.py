"""Named model configurations and their weights files.

Each `ModelSpec` names a model (``kind``: ``"click"`` for SAM-style click models,
``"backbone"`` for frozen backbones of the Rein segmenter, ``"segmenter"`` for trained Rein
segmenters), how to build it (``config``) and where its weights come from: a URL with a
checksum (downloaded with pooch into `cache_dir`), or the project's ``weights/`` folder
(``bundled=True``, also with a SHA-256, checked on load). An explicit local path always skips
any download. Nothing is downloaded at import time. Everything is loaded with
``map_location="cpu"``, ``weights_only=True`` and strict keys (`read_weights_file`), and loaded
parameters must be finite. A model id (the embedding cache's key) names the bytes actually
loaded.

Environment variables: ``NAPARI_COSAS_CACHE`` (download cache folder), ``NAPARI_COSAS_WEIGHTS``
(folder holding the bundled default weights, searched first; a file there is the user's own
and is not held to the registered hash).
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # torch is imported where a file is read: the names here are read without it
    import torch
    from segment_anything.modeling import Sam

    from .models.focus_refiner import FocusRefiner
    from .models.segmenter import ReinSegmenter

logger = logging.getLogger(__name__)

Kind = Literal["click", "backbone", "segmenter", "focus"]

#: The project's default models (the widget's, the CLI's and ``demo``'s).
DEFAULT_SEGMENTER = "cosas-default-segmenter"
DEFAULT_CLICK = "cosas-default-click"
DEFAULT_FOCUS = "cosas-default-focus"


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
        known_hash="sha256:f89fa762d9709ea6bd9b3825c78b3e26613dbdb4671e99b90314078b3dc3a817",
        bundled=True,
    ),
    ModelSpec(
        name="cosas-default-click",
        kind="click",
        description="napari-cosas default click model (ConvNeXt encoder + enhanced decoder)",
        licence="BSD-3-Clause",
        filename="click_default.pt",
        known_hash="sha256:7a2c7b79dae2155ae58580703cf37bb6ca053fa9377ee923a72bb8e78f683c13",
        bundled=True,
        config={"format": "napari-cosas-click"},
    ),
    ModelSpec(
        name="cosas-default-focus",
        kind="focus",
        description="napari-cosas default focus refiner of local clicks (a small U-Net, see weights/)",
        licence="BSD-3-Clause",
        filename="focus_default.pt",
        known_hash="sha256:c2e0e51048fb624773e532f4c411d1148059da9423cd7203d2f765bf4485f32f",
        bundled=True,
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


def available_models(kind: Literal["click", "segmenter"]) -> list[str]:
    """Registry names of ``kind`` whose weights are on this machine, the default first.

    The project's default is always listed (loading it reports missing weights clearly); other
    models are listed only when their file is in the weights folders or the download cache
    (existence only: the checksum is verified when the model is loaded).
    """
    default = DEFAULT_CLICK if kind == "click" else DEFAULT_SEGMENTER
    names = [default]
    for spec in list_models(kind):
        if spec.name == default:
            continue
        folders = weights_dirs() if spec.bundled else [cache_dir()]
        if any((folder / spec.filename).is_file() for folder in folders):
            names.append(spec.name)
    return names


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


def _bundled_file(spec: ModelSpec) -> tuple[Path, str | None]:
    """The bundled file and its verified SHA-256 (``None`` for a user's file found through
    ``$NAPARI_COSAS_WEIGHTS``, which is not held to the registered hash)."""
    env = os.environ.get("NAPARI_COSAS_WEIGHTS")
    for folder in weights_dirs():
        candidate = folder / spec.filename
        if candidate.is_file():
            if env and folder == Path(env).expanduser():
                return candidate, None
            return candidate, _verify(spec, candidate)
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


def _verify(spec: ModelSpec, path: Path) -> str | None:
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
            f"Checksum mismatch for {spec.name!r}: {path} has {alg} {actual}, expected "
            f"{expected}. The file is corrupted or incomplete: {fix}, or pass an explicit path to a good copy."
        )
    return actual if alg == "sha256" else None


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
    return _fetch(name, path, download=download, progress=progress)[0]


def _fetch(
    name: str, path: str | os.PathLike | None, *, download: bool = True, progress: bool = False
) -> tuple[Path, str | None]:
    """`fetch_weights`, and the file's SHA-256 when it was verified on the way (else ``None``)."""
    spec = get_spec(name)
    if path is not None:
        local = Path(path).expanduser()
        if not local.is_file() or not os.access(local, os.R_OK):
            raise WeightsError(f"Weights file for {name!r} not found or unreadable: {local}")
        return local, None
    if spec.bundled:
        return _bundled_file(spec)
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
        return target, _verify(spec, target)
    if not download:
        raise WeightsError(
            f"Weights of {name!r} are not in the cache and download=False. Download "
            f"{spec.url} and place it at {target} (or pass an explicit path)."
        )
    return _download(spec, folder, progress), None


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


def _file_id(label: str, path: Path, verified_sha256: str | None) -> str:
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
    from .devices import resolve_device
    from .models.sam_models import (
        CLICK_FORMAT,
        build_sam_vit,
        infer_sam_variant,
        load_click_checkpoint,
        load_sam_checkpoint,
    )

    spec: ModelSpec | None = None
    verified: str | None = None
    if isinstance(name_or_path, str) and name_or_path in _REGISTRY:
        spec = get_spec(name_or_path)
        if spec.kind != "click":
            raise ValueError(f"{spec.name!r} is a {spec.kind} model, not a click model")
        path, verified = _fetch(spec.name, weights)
    else:
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            names = ", ".join(s.name for s in list_models("click"))
            raise WeightsError(
                f"{str(name_or_path)!r} is neither a registered click model ({names}) nor a file"
            )
    payload = read_weights_file(path)
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
    check_finite(model, path)
    label = spec.name if spec is not None else path.stem
    return model.to(resolve_device(device)).eval(), _file_id(label, path, verified)


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
    state = read_weights_file(fetch_weights(name, path, download=download))
    if not isinstance(state, Mapping):
        raise ValueError(f"weights of {name!r} are not a state dict")
    return dict(state)


def segmenter_file(name_or_path: str | os.PathLike, weights: str | os.PathLike | None = None) -> Path:
    """The weights file of a registered segmenter (``weights``, if given, instead), or the
    existing file ``name_or_path``; `WeightsError` listing the registered segmenters otherwise."""
    return _model_file(name_or_path, "segmenter", "segmenter", weights)


def _model_file(name_or_path: str | os.PathLike, kind: Kind, noun: str, weights: str | os.PathLike | None) -> Path:
    """The weights file of a registered ``kind`` model (``weights``, if given, instead), or the
    existing file ``name_or_path``; `WeightsError` listing the registered ``kind`` models otherwise."""
    if isinstance(name_or_path, str) and name_or_path in _REGISTRY:
        spec = get_spec(name_or_path)
        if spec.kind != kind:
            raise ValueError(f"{spec.name!r} is a {spec.kind} model, not a {noun}")
        return fetch_weights(spec.name, weights)
    path = Path(name_or_path).expanduser()
    if not path.is_file():
        names = ", ".join(s.name for s in list_models(kind))
        raise WeightsError(f"{str(name_or_path)!r} is neither a registered {noun} ({names}) nor a file")
    return path


def load_segmenter(
    name_or_path: str | os.PathLike,
    *,
    weights: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
) -> ReinSegmenter:
    """Load a trained `ReinSegmenter` by registry name or path (saved with
    `ReinSegmenter.save`; a backbone frozen at official weights is fetched by its name)."""
    from .devices import resolve_device
    from .models.segmenter import ReinSegmenter

    path = segmenter_file(name_or_path, weights)
    model = ReinSegmenter.load(path, map_location="cpu")
    check_finite(model, path)
    return model.to(resolve_device(device)).eval()


def load_focus_refiner(name_or_path: str | os.PathLike, *, weights: str | os.PathLike | None = None) -> FocusRefiner:
    """Load a focus refiner (``napari_cosas.focus``) by registry name or from a file written by
    ``napari-cosas train-focus``; on the CPU, in eval mode."""
    from .models.focus_refiner import refiner_from_payload

    path = _model_file(name_or_path, "focus", "focus refiner", weights)
    try:
        refiner = refiner_from_payload(read_weights_file(path))
    except (ValueError, RuntimeError, KeyError) as exc:
        raise WeightsError(f"{path} is not a usable focus refiner file: {exc}") from None
    check_finite(refiner, path)
    return refiner
