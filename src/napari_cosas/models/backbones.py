"""Frozen backbones with a Rein adapter after every block (ViTs) or stage (ConvNeXt).

Every backbone maps a normalised float image ``(B, 3, H, W)`` to a 4-level feature pyramid
``list[(B, C_i, H_i, W_i)]`` (finest first) and exposes :meth:`ReinBackbone.rein_queries`.

* :class:`ReinConvNeXt` wraps a timm ``ConvNeXt``: stem, then each stage followed by its own
  single-layer Rein (no class token); the 4 stage outputs (strides 4, 8, 16, 32) are returned.
* :class:`ReinViT` wraps a timm ``VisionTransformer`` (DINOv2 names; created with
  ``dynamic_img_size=True, dynamic_img_pad=True`` so any input size works: the position
  embedding is resampled and the input zero-padded to a multiple of the patch size);
  Rein after every block with the class and register tokens split off.
* :class:`ReinSamViT` wraps ``segment_anything``'s ``ImageEncoderViT`` (blocks on
  ``(B, H, W, C)``); Rein after every block; the absolute position embedding is resampled
  bicubically when the input grid differs from the one it was built for (e.g. 512 crops on
  the official 1024 geometry); SAM's own ``neck`` is not used and not built.

The ViTs read 4 evenly spaced blocks (``(B, C, H/p, W/p)`` each) and turn them into a
pyramid at strides ``p/4, p/2, p, 2p`` with :class:`PyramidNeck` (ConvTranspose x2 twice,
ConvTranspose x2, identity resolution, max-pool /2, each projected to ``neck_dim``). The neck
is trainable and lives in the backbone module (attribute ``neck``), next to the Rein.

With ``freeze_backbone=True`` (default) the wrapped model's parameters have
``requires_grad=False`` and it stays in eval mode even after ``.train()``; Rein and neck train.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Mapping

import timm
import torch.nn.functional as F
from segment_anything.modeling import ImageEncoderViT
from timm.models import convnext as timm_convnext
from timm.models import vision_transformer as timm_vit
from torch import Tensor, nn

from .rein import Rein, ReinStack, build_rein_stack

__all__ = [
    "BACKBONE_NAMES",
    "PyramidNeck",
    "ReinBackbone",
    "ReinConvNeXt",
    "ReinSamViT",
    "ReinViT",
    "build_backbone",
]

# Tiny randomly initialised variants for tests: (timm base name, overrides).
_TINY_TIMM_VITS: dict[str, tuple[str, dict[str, Any]]] = {
    "test_vit_dinov2": (
        "vit_small_patch14_dinov2",
        dict(depth=4, embed_dim=32, num_heads=2, img_size=112),
    ),
    "test_vit_reg_dinov2": (
        "vit_small_patch14_reg4_dinov2",
        dict(depth=4, embed_dim=32, num_heads=2, img_size=112),
    ),
}
_TIMM_VITS = tuple(
    f"vit_{size}_patch14{reg}_dinov2"
    for size in ("small", "base", "large", "giant")
    for reg in ("", "_reg4")
)
_CONVNEXTS = ("convnext_atto", "convnext_femto", "convnext_pico", "convnext_nano",
              "convnext_tiny", "convnext_small", "convnext_base", "convnext_large",
              "test_convnext")
# segment_anything ImageEncoderViT geometries (official ones as in build_sam.py).
_SAM_VITS: dict[str, dict[str, Any]] = {
    "sam_vit_b": dict(embed_dim=768, depth=12, num_heads=12, global_attn_indexes=(2, 5, 8, 11)),
    "sam_vit_l": dict(embed_dim=1024, depth=24, num_heads=16,
                      global_attn_indexes=(5, 11, 17, 23)),
    "sam_vit_h": dict(embed_dim=1280, depth=32, num_heads=16,
                      global_attn_indexes=(7, 15, 23, 31)),
    "test_sam_vit": dict(embed_dim=32, depth=4, num_heads=2, global_attn_indexes=(1, 3),
                         img_size=256, window_size=4),
}
BACKBONE_NAMES: tuple[str, ...] = (*_CONVNEXTS, *_TIMM_VITS, *_TINY_TIMM_VITS, *_SAM_VITS)


def _group_norm(channels: int) -> nn.GroupNorm:
    groups = 32
    while channels % groups:
        groups //= 2
    return nn.GroupNorm(groups, channels)


def _evenly_spaced(depth: int, count: int = 4) -> list[int]:
    """Indices of ``count`` evenly spaced blocks ending at the last one, e.g. 12 -> 2, 5, 8, 11."""
    if depth < count:
        raise ValueError(f"need at least {count} blocks to read {count} levels, got {depth}")
    return [(k + 1) * depth // count - 1 for k in range(count)]


class PyramidNeck(nn.Module):
    """Four same-resolution ViT maps ``(B, C, h, w)`` -> pyramid at 4x, 2x, 1x, 0.5x resolution.

    Output: ``[(B, d, 4h, 4w), (B, d, 2h, 2w), (B, d, h, w), (B, d, h/2, w/2)]``.
    """

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.levels = nn.ModuleList([
            nn.Sequential(
                nn.ConvTranspose2d(in_dim, out_dim, 2, stride=2), _group_norm(out_dim), nn.GELU(),
                nn.ConvTranspose2d(out_dim, out_dim, 2, stride=2),
            ),
            nn.ConvTranspose2d(in_dim, out_dim, 2, stride=2),
            nn.Conv2d(in_dim, out_dim, 1),
            nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(in_dim, out_dim, 1)),
        ])

    def forward(self, feats: list[Tensor]) -> list[Tensor]:
        return [level(f) for level, f in zip(self.levels, feats)]


class ReinBackbone(nn.Module):
    """Common base: a wrapped model ``backbone`` plus its Rein ``rein``.

    Attributes:
        out_channels: channels ``C_i`` of the 4 returned levels (finest first).
        strides: nominal stride of each level w.r.t. the input (floats for patch-14 ViTs).
        freeze_backbone: whether ``backbone`` is frozen (no grad, always eval mode).
    """

    #: state-dict key prefixes of modules of the original model that this wrapper does not use
    _unused_prefixes: tuple[str, ...] = ()

    def __init__(
        self,
        backbone: nn.Module,
        rein: Rein | ReinStack,
        out_channels: list[int],
        strides: list[float],
        freeze_backbone: bool = True,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.rein = rein
        self.out_channels = list(out_channels)
        self.strides = list(strides)
        self.freeze_backbone = freeze_backbone
        if freeze_backbone:
            self.backbone.requires_grad_(False)
            self.backbone.eval()

    def train(self, mode: bool = True) -> "ReinBackbone":
        super().train(mode)
        if self.freeze_backbone:
            self.backbone.eval()
        return self

    def rein_queries(self) -> Tensor:
        """Token-seeded decoder queries ``(num_tokens, query_dim)``."""
        return self.rein.queries()

    def _convert_state(self, state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
        """Map an official / timm checkpoint to the wrapped model's keys (override per family)."""
        return state_dict

    def load_backbone_state(self, state_dict: Mapping[str, Tensor]) -> None:
        """Load weights of the wrapped model (strict; keys of unused modules are dropped).

        Accepts the model's own ``state_dict`` as well as the official checkpoint formats that
        the family's converter understands (timm checkpoint filters; full SAM checkpoints).
        """
        converted = self._convert_state(dict(state_dict))
        kept = {k: v for k, v in converted.items() if not k.startswith(self._unused_prefixes)}
        try:
            self.backbone.load_state_dict(kept, strict=True)
        except RuntimeError as err:
            raise RuntimeError(
                f"backbone weights do not match {type(self).__name__} "
                f"({type(self.backbone).__name__}): {err}"
            ) from err

    def forward(self, x: Tensor) -> list[Tensor]:
        """``(B, 3, H, W)`` normalised float -> ``[(B, C_i, H_i, W_i)]`` for the 4 levels."""
        raise NotImplementedError


class ReinConvNeXt(ReinBackbone):
    """timm ConvNeXt with one Rein per stage; returns the 4 stage outputs (strides 4..32)."""

    _unused_prefixes = ("head.", "norm_pre.")

    def __init__(self, model: nn.Module, num_tokens: int = 100, rank: int = 16,
                 query_dim: int = 256, freeze_backbone: bool = True) -> None:
        model.head = nn.Identity()
        model.norm_pre = nn.Identity()
        channels = [info["num_chs"] for info in model.feature_info]
        strides = [info["reduction"] for info in model.feature_info]
        rein = build_rein_stack(channels, num_tokens, rank, query_dim)
        super().__init__(model, rein, channels, strides, freeze_backbone)

    def _convert_state(self, state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
        return timm_convnext.checkpoint_filter_fn(state_dict, self.backbone)

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.backbone.stem(x)
        outs = []
        for i, stage in enumerate(self.backbone.stages):
            x = stage(x)
            b, c, h, w = x.shape
            tokens = self.rein(x.flatten(2).transpose(1, 2), i)
            x = tokens.transpose(1, 2).reshape(b, c, h, w)
            outs.append(x)
        return outs


class ReinViT(ReinBackbone):
    """timm VisionTransformer (DINOv2) with Rein after every block and a trainable pyramid neck."""

    _unused_prefixes = ("norm.", "fc_norm.", "head.")

    def __init__(self, model: nn.Module, num_tokens: int = 100, rank: int = 16,
                 query_dim: int = 256, neck_dim: int = 256, freeze_backbone: bool = True) -> None:
        model.norm = nn.Identity()
        model.fc_norm = nn.Identity()
        model.head = nn.Identity()
        dim = model.embed_dim
        patch = model.patch_embed.patch_size[0]
        rein = Rein(dim, len(model.blocks), num_tokens, rank, query_dim, patch_size=patch)
        strides = [patch / 4, patch / 2, float(patch), float(2 * patch)]
        super().__init__(model, rein, [neck_dim] * 4, strides, freeze_backbone)
        self.out_indices = _evenly_spaced(len(model.blocks))
        self.neck = PyramidNeck(dim, neck_dim)

    def _convert_state(self, state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
        return timm_vit.checkpoint_filter_fn(state_dict, self.backbone)

    def forward(self, x: Tensor) -> list[Tensor]:
        vit = self.backbone
        x = vit.patch_embed(x)  # (B, h, w, C) with dynamic_img_size
        if x.ndim != 4:
            raise RuntimeError("ReinViT needs a timm ViT created with dynamic_img_size=True")
        b, h, w, c = x.shape
        x = vit.norm_pre(vit.patch_drop(vit._pos_embed(x)))
        n_prefix = vit.num_prefix_tokens
        maps = []
        for i, block in enumerate(vit.blocks):
            x = self.rein(block(x), i, num_prefix_tokens=n_prefix)
            if i in self.out_indices:
                maps.append(x[:, n_prefix:].transpose(1, 2).reshape(b, c, h, w))
        return self.neck(maps)


class ReinSamViT(ReinBackbone):
    """segment_anything ImageEncoderViT with Rein after every block and a trainable pyramid neck."""

    _unused_prefixes = ("neck.",)

    def __init__(self, encoder: ImageEncoderViT, num_tokens: int = 100, rank: int = 16,
                 query_dim: int = 256, neck_dim: int = 256, freeze_backbone: bool = True) -> None:
        encoder.neck = nn.Identity()
        dim = encoder.patch_embed.proj.out_channels
        patch = encoder.patch_embed.proj.kernel_size[0]
        rein = Rein(dim, len(encoder.blocks), num_tokens, rank, query_dim, patch_size=patch)
        strides = [patch / 4, patch / 2, float(patch), float(2 * patch)]
        super().__init__(encoder, rein, [neck_dim] * 4, strides, freeze_backbone)
        self.out_indices = _evenly_spaced(len(encoder.blocks))
        self.neck = PyramidNeck(dim, neck_dim)

    def _convert_state(self, state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
        """Accept a full SAM checkpoint (``image_encoder.*`` keys) or an encoder state dict."""
        prefix = "image_encoder."
        if any(k.startswith(prefix) for k in state_dict):
            return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        return state_dict

    def forward(self, x: Tensor) -> list[Tensor]:
        enc = self.backbone
        x = enc.patch_embed(x)  # (B, h, w, C)
        b, h, w, c = x.shape
        if enc.pos_embed is not None:
            pos = enc.pos_embed
            if pos.shape[1:3] != (h, w):
                pos = F.interpolate(pos.permute(0, 3, 1, 2), size=(h, w), mode="bicubic",
                                    align_corners=False).permute(0, 2, 3, 1)
            x = x + pos
        maps = []
        for i, block in enumerate(enc.blocks):
            x = self.rein(block(x).reshape(b, h * w, c), i).reshape(b, h, w, c)
            if i in self.out_indices:
                maps.append(x.permute(0, 3, 1, 2))
        return self.neck(maps)


def _build_sam_encoder(name: str) -> ImageEncoderViT:
    geometry = dict(img_size=1024, window_size=14) | _SAM_VITS[name]
    return ImageEncoderViT(
        patch_size=16, mlp_ratio=4, qkv_bias=True, use_rel_pos=True, out_chans=256,
        norm_layer=partial(nn.LayerNorm, eps=1e-6), **geometry,
    )


def build_backbone(
    name: str,
    *,
    num_tokens: int = 100,
    rank: int = 16,
    query_dim: int = 256,
    neck_dim: int = 256,
    freeze_backbone: bool = True,
) -> ReinBackbone:
    """Build a randomly initialised backbone ``name`` (see :data:`BACKBONE_NAMES`) with Rein.

    Load official weights afterwards with :meth:`ReinBackbone.load_backbone_state`.
    ``neck_dim`` applies to the ViTs only (ConvNeXt levels keep their stage widths).
    """
    rein_kw = dict(num_tokens=num_tokens, rank=rank, query_dim=query_dim,
                   freeze_backbone=freeze_backbone)
    if name in _CONVNEXTS:
        model = timm.create_model(name, pretrained=False, num_classes=0)
        return ReinConvNeXt(model, **rein_kw)
    if name in _TIMM_VITS or name in _TINY_TIMM_VITS:
        base, overrides = _TINY_TIMM_VITS.get(name, (name, {}))
        model = timm.create_model(base, pretrained=False, num_classes=0, dynamic_img_size=True,
                                  dynamic_img_pad=True,
                                  **overrides)
        return ReinViT(model, neck_dim=neck_dim, **rein_kw)
    if name in _SAM_VITS:
        return ReinSamViT(_build_sam_encoder(name), neck_dim=neck_dim, **rein_kw)
    raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONE_NAMES)}")
