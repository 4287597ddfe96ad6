"""The model registry: its entries (`model_entries`: architectures, weights names, aliases,
defaults, re-exported here) and the loaders that read the files they name (timm's shape).

An explicit local path always skips any download. Nothing is downloaded at import time, and
torch is not imported until a file is read. Everything is loaded with ``map_location="cpu"``,
``weights_only=True`` and strict keys (`checkpoints.read_weights_file`), each file is read
once, and loaded parameters must be finite. A model id (the embedding cache's key) is the name
asked for plus the hash of the bytes actually loaded.

Environment variables: ``NAPARI_COSAS_CACHE`` (download cache folder), ``NAPARI_COSAS_WEIGHTS``
(folder holding the bundled default weights, searched first; a file there is the user's own
and is not held to the registered hash).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from .checkpoints import WeightsError, check_finite, fetch_file, file_id, read_weights_file
from .model_entries import (
    ALIASES,
    DEFAULT_CLICK,
    DEFAULT_FOCUS,
    DEFAULT_SEGMENTER,
    Architecture,
    Kind,
    ModelSpec,
    available_models,
    backbone_architecture,
    get_architecture,
    get_spec,
    is_registered,
    list_architectures,
    list_models,
    model_names,
    register,
    register_architecture,
    short_name,
    unregister,
)

if TYPE_CHECKING:  # torch is imported where a file is read: the names here are read without it
    import torch
    from segment_anything.modeling import Sam

    from .focus_refiner import FocusRefiner
    from .segmenter import ReinSegmenter

__all__ = [
    "ALIASES", "DEFAULT_CLICK", "DEFAULT_FOCUS", "DEFAULT_SEGMENTER", "Architecture", "Kind", "ModelSpec",
    "WeightsError", "available_models", "backbone_architecture", "fetch_weights", "get_architecture", "get_spec",
    "is_registered", "list_architectures", "list_models", "load_backbone_state", "load_click_model",
    "load_focus_refiner", "load_segmenter", "model_names", "register", "register_architecture", "segmenter_file",
    "short_name", "unregister",
]


def fetch_weights(
    name: str,
    path: str | os.PathLike | None = None,
    *,
    download: bool = True,
    progress: bool = False,
) -> Path:
    """Local path of model ``name``'s weights (`checkpoints.fetch_file`: an explicit ``path``, the
    bundled folders, or the download cache, checked against the registered hash)."""
    return fetch_file(get_spec(name), name, path, download=download, progress=progress)[0]


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
    from .sam_models import (
        CLICK_FORMAT,
        build_sam_vit,
        click_model_from_payload,
        infer_sam_variant,
        load_sam_state,
    )

    spec: ModelSpec | None = None
    verified: str | None = None
    if is_registered(name_or_path):
        spec = get_spec(name_or_path)
        if spec.kind != "click":
            raise ValueError(f"{short_name(spec)!r} is a {spec.kind} model, not a click model")
        path, verified = fetch_file(spec, name_or_path, weights)
    else:
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            names = ", ".join(short_name(s) for s in list_models("click"))
            raise WeightsError(
                f"{str(name_or_path)!r} is neither a registered click model ({names}) nor a file"
            )
    payload = read_weights_file(path)
    if isinstance(payload, Mapping) and payload.get("format") == CLICK_FORMAT:
        model, config = click_model_from_payload(payload, path)
        if decoder is not None and decoder != config.get("decoder", "enhanced"):
            raise ValueError(
                f"{path} holds a trained {config.get('decoder')!r} decoder; cannot load it as "
                f"{decoder!r}"
            )
    else:
        model = build_sam_vit(infer_sam_variant(payload), decoder=decoder or "plain")
        load_sam_state(model, payload, path)
    del payload
    check_finite(model, path)
    label = short_name(spec) if spec is not None else path.stem
    return model.to(resolve_device(device)).eval(), file_id(label, path, verified)


def load_backbone_state(
    name: str, path: str | os.PathLike | None = None, *, download: bool = True
) -> dict[str, torch.Tensor]:
    """Pretrained state dict of the backbone weights ``name`` as stored in their file (their own
    key names, which ``ReinBackbone.load_backbone_state`` maps; an official SAM checkpoint whole), for
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
    if is_registered(name_or_path):
        spec = get_spec(name_or_path)
        if spec.kind != kind:
            raise ValueError(f"{short_name(spec)!r} is a {spec.kind} model, not a {noun}")
        return fetch_weights(spec.name, weights)
    path = Path(name_or_path).expanduser()
    if not path.is_file():
        names = ", ".join(short_name(s) for s in list_models(kind))
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
    from .segmenter import ReinSegmenter, SegmenterConfig, read_segmenter_file

    path = segmenter_file(name_or_path, weights)
    payload = read_segmenter_file(path)
    config = SegmenterConfig.from_dict(payload["config"])
    official = config.backbone_weights if config.freeze_backbone else None
    model = ReinSegmenter.from_payload(payload, load_backbone_state(official) if official else None, source=path)
    del payload
    check_finite(model, path)
    return model.to(resolve_device(device)).eval()


def load_focus_refiner(name_or_path: str | os.PathLike, *, weights: str | os.PathLike | None = None) -> FocusRefiner:
    """Load a focus refiner (``napari_cosas.inference.focus``) by registry name or from a file written by
    ``napari-cosas train-focus``; on the CPU, in eval mode."""
    from .focus_refiner import refiner_from_payload

    path = _model_file(name_or_path, "focus", "focus refiner", weights)
    try:
        refiner = refiner_from_payload(read_weights_file(path))
    except (ValueError, RuntimeError, KeyError) as exc:
        raise WeightsError(f"{path} is not a usable focus refiner file: {exc}") from None
    check_finite(refiner, path)
    return refiner
