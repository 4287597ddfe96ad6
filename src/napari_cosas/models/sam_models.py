"""Builders of SAM-style click models (`segment_anything.modeling.Sam`).

All builders return a `Sam` in eval mode with a ``"plain"`` (`MaskDecoder`) or ``"enhanced"``
(`EnhancedMaskDecoder`) mask decoder. Every image encoder maps a preprocessed
``(B, 3, 1024, 1024)`` float32 image (SAM's pixel normalisation, longest side resized to 1024,
padded bottom-right) to a ``(B, 256, 64, 64)`` float32 embedding and exposes ``img_size = 1024``
(read by `SamPredictor` / `ResizeLongestSide`). Prompts use SAM's ``(x, y)`` pixel coordinates.

* `build_sam_vit`: the official ViT-B / L / H geometry (segment_anything's own builders).
* `build_tiny_sam`: a tiny randomly initialised ViT encoder for tests (< 1 s per image on CPU).
* `build_convnext_sam`: the project's default, a timm ConvNeXt trunk (stem + stages to stride
  16) with SAM's neck.

Checkpoints: `load_sam_checkpoint` / `load_sam_state` (official SAM files), `save_click_model` /
`load_click_checkpoint` / `click_model_from_payload` (the project's ``napari-cosas-click/1``
files, rebuilt from their config); the ``*_state`` / ``*_payload`` forms take a file already read.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any, Literal

import torch
from segment_anything.build_sam import sam_model_registry
from segment_anything.modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)
from segment_anything.modeling.common import LayerNorm2d
from torch import Tensor, nn

from ..io.files import atomic_write
from .checkpoints import read_weights_file
from .compact_state import expand_state_dict
from .enhanced_decoder import NEW_PARAMETER_PREFIXES, EnhancedMaskDecoder

DecoderKind = Literal["plain", "enhanced"]

#: ``format`` value of the project's click checkpoints.
CLICK_FORMAT = "napari-cosas-click/1"

IMG_SIZE = 1024
EMBED_DIM = 256
PATCH = 16
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


def _prompt_encoder() -> PromptEncoder:
    side = IMG_SIZE // PATCH
    return PromptEncoder(
        embed_dim=EMBED_DIM,
        image_embedding_size=(side, side),
        input_image_size=(IMG_SIZE, IMG_SIZE),
        mask_in_chans=16,
    )


def _plain_decoder() -> MaskDecoder:
    """SAM's decoder geometry (the same for ViT-B, L and H)."""
    return MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=2, embedding_dim=EMBED_DIM, mlp_dim=2048, num_heads=8),
        transformer_dim=EMBED_DIM,
        iou_head_depth=3,
        iou_head_hidden_dim=256,
    )


def _with_decoder(sam: Sam, decoder: DecoderKind, decoder_kwargs: Mapping[str, Any]) -> Sam:
    if decoder == "enhanced":
        sam.mask_decoder = EnhancedMaskDecoder.from_sam(sam.mask_decoder, **decoder_kwargs)
    elif decoder != "plain":
        raise ValueError(f"decoder must be 'plain' or 'enhanced', got {decoder!r}")
    elif decoder_kwargs:
        raise ValueError(f"decoder_kwargs {dict(decoder_kwargs)} need decoder='enhanced'")
    return sam.eval()


def build_sam_vit(
    variant: Literal["vit_b", "vit_l", "vit_h"] = "vit_b",
    decoder: DecoderKind = "enhanced",
    **decoder_kwargs: Any,
) -> Sam:
    """Official SAM geometry, randomly initialised (load weights with `load_sam_checkpoint`).

    ``decoder_kwargs`` go to `EnhancedMaskDecoder.from_sam` (e.g. ``num_extra_layers``).
    """
    if variant not in ("vit_b", "vit_l", "vit_h"):
        raise ValueError(f"variant must be 'vit_b', 'vit_l' or 'vit_h', got {variant!r}")
    return _with_decoder(sam_model_registry[variant](checkpoint=None), decoder, decoder_kwargs)


def build_tiny_sam(decoder: DecoderKind = "enhanced", seed: int = 0, **decoder_kwargs: Any) -> Sam:
    """A tiny SAM for tests: ViT encoder (embed 32, depth 2, heads 2, patch 16, windowed
    attention in both blocks) with SAM's neck, prompt encoder and decoder, so the
    embedding is ``(B, 256, 64, 64)``. Deterministic for a given ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = ImageEncoderViT(
            img_size=IMG_SIZE,
            patch_size=PATCH,
            embed_dim=32,
            depth=2,
            num_heads=2,
            mlp_ratio=2.0,
            out_chans=EMBED_DIM,
            qkv_bias=True,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
            use_rel_pos=False,
            window_size=16,
            global_attn_indexes=(),
        )
        sam = Sam(encoder, _prompt_encoder(), _plain_decoder(), list(PIXEL_MEAN), list(PIXEL_STD))
        return _with_decoder(sam, decoder, decoder_kwargs)


class ConvNeXtImageEncoder(nn.Module):
    """timm ConvNeXt trunk (stem + first three stages, stride 16) + SAM's neck.

    ``(B, 3, 1024, 1024)`` -> ``(B, 256, 64, 64)``. The trunk keeps timm's module names
    (``trunk.stem.*``, ``trunk.stages.{0,1,2}.*``), so a timm ConvNeXt state dict (without
    ``stages.3``, ``norm_pre`` and ``head``) loads into ``trunk``.
    """

    img_size: int = IMG_SIZE

    def __init__(self, trunk: str = "convnext_atto", out_chans: int = EMBED_DIM) -> None:
        super().__init__()
        import timm  # local: only this encoder needs timm

        model = timm.create_model(trunk, pretrained=False, num_classes=0)
        info = model.feature_info[2]
        if info["reduction"] != PATCH:
            raise ValueError(f"{trunk}: stage 2 has stride {info['reduction']}, expected {PATCH}")
        self.trunk = nn.Module()
        self.trunk.stem = model.stem
        self.trunk.stages = nn.Sequential(*list(model.stages)[:3])
        self.neck = nn.Sequential(
            nn.Conv2d(info["num_chs"], out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )

    def forward(self, x: Tensor) -> Tensor:
        """``x``: ``(B, 3, 1024, 1024)`` normalised float32 -> ``(B, 256, 64, 64)``."""
        return self.neck(self.trunk.stages(self.trunk.stem(x)))


def build_convnext_sam(
    trunk: str = "convnext_atto", decoder: DecoderKind = "enhanced", **decoder_kwargs: Any
) -> Sam:
    """The project's click model: `ConvNeXtImageEncoder` + SAM's prompt encoder and decoder,
    randomly initialised (``pretrained=False``)."""
    sam = Sam(
        ConvNeXtImageEncoder(trunk),
        _prompt_encoder(),
        _plain_decoder(),
        list(PIXEL_MEAN),
        list(PIXEL_STD),
    )
    return _with_decoder(sam, decoder, decoder_kwargs)


def build_click_model(config: Mapping[str, Any]) -> Sam:
    """Build from a config dict: ``{"arch": "sam_vit" | "tiny" | "convnext", "variant": ...
    (sam_vit), "trunk": ... (convnext), "seed": ... (tiny), "decoder": "plain" | "enhanced",
    "decoder_kwargs": {...}}``."""
    arch = config.get("arch")
    decoder = config.get("decoder", "enhanced")
    kwargs = dict(config.get("decoder_kwargs", {}))
    if arch == "sam_vit":
        return build_sam_vit(config.get("variant", "vit_b"), decoder, **kwargs)
    if arch == "tiny":
        return build_tiny_sam(decoder, seed=config.get("seed", 0), **kwargs)
    if arch == "convnext":
        return build_convnext_sam(config.get("trunk", "convnext_atto"), decoder, **kwargs)
    raise ValueError(f"config['arch'] must be 'sam_vit', 'tiny' or 'convnext', got {arch!r}")


def convert_decoder(model: Sam, config: Mapping[str, Any], decoder: DecoderKind) -> tuple[Sam, dict[str, Any]]:
    """``model`` (built from ``config``) with a ``decoder`` kind mask decoder, every shared weight
    kept: ``"plain"`` drops an enhanced decoder's added parts (what it computes with every gate at
    zero), ``"enhanced"`` adds them to a plain one at zero gates (the same output). The same model
    and config when it already has that decoder. Returns ``(model, config)``; ``model`` may be
    changed in place."""
    config = dict(config)
    if config.get("decoder", "enhanced") == decoder:
        return model, config
    if decoder == "enhanced":
        model.mask_decoder = EnhancedMaskDecoder.from_sam(model.mask_decoder)
        config.pop("decoder_kwargs", None)
        return model, {**config, "decoder": "enhanced"}
    config = {**config, "decoder": "plain"}
    config.pop("decoder_kwargs", None)
    plain = build_click_model(config)
    state = {k: v for k, v in model.state_dict().items()
             if not k.startswith(tuple(f"mask_decoder.{p}" for p in NEW_PARAMETER_PREFIXES))}
    plain.load_state_dict(state, strict=True)
    return plain.train(model.training), config


def _key_report(missing: list[str], unexpected: list[str], limit: int = 10) -> str:
    def show(keys: list[str]) -> str:
        more = f" ... (+{len(keys) - limit} more)" if len(keys) > limit else ""
        return ", ".join(keys[:limit]) + more

    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s): {show(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s): {show(unexpected)}")
    return "; ".join(parts)


def _load_torch_file(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint not found: {path}")
    return read_weights_file(path)


def load_sam_checkpoint(model: Sam, path: str | os.PathLike) -> Sam:
    """Load an official SAM checkpoint file (a flat `Sam` state dict) into ``model``
    (`load_sam_state`)."""
    return load_sam_state(model, _load_torch_file(path), path)


def load_sam_state(model: Sam, state: Any, path: str | os.PathLike) -> Sam:
    """Load an official SAM state dict, read from ``path`` (named in errors), into ``model``.

    Strict, except that an `EnhancedMaskDecoder`'s new parameters may be absent (they keep
    their identity initialisation). Raises ``KeyError`` naming missing / unexpected keys and
    ``RuntimeError`` (from PyTorch) on shape mismatches, e.g. a ViT-L file into a ViT-B model.
    """
    if not isinstance(state, Mapping):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    allowed_missing: set[str] = set()
    if isinstance(model.mask_decoder, EnhancedMaskDecoder):
        allowed_missing = {
            f"mask_decoder.{n}" for n in model.mask_decoder.new_parameter_names()
        }
    model_keys = set(model.state_dict())
    missing = sorted(model_keys - set(state) - allowed_missing)
    unexpected = sorted(set(state) - model_keys)
    if missing or unexpected:
        raise KeyError(
            f"{path} does not match the model ({type(model.image_encoder).__name__} encoder): "
            + _key_report(missing, unexpected)
        )
    model.load_state_dict(state, strict=False)
    return model


def save_click_model(model: Sam, path: str | os.PathLike, config: Mapping[str, Any]) -> Path:
    """Save ``{"format": CLICK_FORMAT, "config": config, "state_dict": ...}`` atomically.

    ``config`` must be JSON-serialisable (it is reloaded with ``weights_only=True``) and must
    rebuild ``model``'s architecture through `build_click_model`.
    """
    config = json.loads(json.dumps(dict(config)))
    payload = {
        "format": CLICK_FORMAT,
        "config": config,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    return atomic_write(path, lambda fh: torch.save(payload, fh))


def load_click_checkpoint(path: str | os.PathLike) -> tuple[Sam, dict[str, Any]]:
    """Rebuild a click model saved by `save_click_model` (`click_model_from_payload`)."""
    return click_model_from_payload(_load_torch_file(path), path)


def click_model_from_payload(payload: Any, path: str | os.PathLike) -> tuple[Sam, dict[str, Any]]:
    """Rebuild a click model from what `save_click_model` wrote, read from ``path`` (named in
    errors); strict key check. Returns ``(model in eval mode on CPU, config)``."""
    if not isinstance(payload, Mapping) or payload.get("format") != CLICK_FORMAT:
        found = payload.get("format") if isinstance(payload, Mapping) else type(payload).__name__
        raise ValueError(
            f"{path} is not a {CLICK_FORMAT} checkpoint (format: {found!r}); official SAM "
            "checkpoints are loaded with load_sam_checkpoint"
        )
    config = dict(payload["config"])
    model = build_click_model(config)
    state = expand_state_dict(payload["state_dict"])
    missing = sorted(set(model.state_dict()) - set(state))
    unexpected = sorted(set(state) - set(model.state_dict()))
    if missing or unexpected:
        raise KeyError(
            f"{path} does not match its own config {config}: " + _key_report(missing, unexpected)
        )
    model.load_state_dict(state, strict=True)
    return model.eval(), config


def infer_sam_variant(state_dict: Mapping[str, Tensor]) -> str:
    """``"vit_b"`` / ``"vit_l"`` / ``"vit_h"`` from an official SAM state dict's patch embedding."""
    key = "image_encoder.patch_embed.proj.weight"
    if key not in state_dict:
        raise KeyError(f"not a SAM ViT state dict: no {key!r}")
    width = state_dict[key].shape[0]
    variants = {768: "vit_b", 1024: "vit_l", 1280: "vit_h"}
    if width not in variants:
        raise ValueError(f"unknown SAM ViT width {width}; expected one of {sorted(variants)}")
    return variants[width]
