"""``ReinSegmenter``: a Rein backbone plus :class:`~napari_cosas.models.head.ReinHead`.

Inference on whole patches is by sliding window (:meth:`ReinSegmenter.predict_proba`);
:meth:`ReinSegmenter.save` / :meth:`ReinSegmenter.load` store the config and the parameters
that no official file holds: Rein, ViT neck and head, plus the backbone unless it is frozen at
the official weights named by ``SegmenterConfig.backbone_weights`` (which
``registry.load_segmenter`` fetches and hands to :meth:`ReinSegmenter.from_payload`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from os import PathLike
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..io.files import atomic_write
from .backbones import ReinBackbone, build_backbone
from .checkpoints import read_weights_file
from .compact_state import expand_state_dict
from .devices import inference_autocast
from .head import ReinHead

__all__ = [
    "FORMAT", "ModelOutputError", "ReinSegmenter", "SegmenterConfig", "build_segmenter", "read_segmenter_config",
    "read_segmenter_file",
]

FORMAT = "napari-cosas-segmenter/1"


class ModelOutputError(RuntimeError):
    """A model returned non-finite values (NaN or infinity), so its output cannot be used."""


@dataclass
class SegmenterConfig:
    """Everything needed to rebuild a :class:`ReinSegmenter` (weights aside).

    ``mean`` / ``std`` are per-channel RGB statistics on the ``[0, 1]`` scale; ``crop`` and
    ``stride`` are the sliding-window defaults of :meth:`ReinSegmenter.predict_proba`.
    ``backbone_weights`` names the registered backbone (``napari_cosas.models.registry``, e.g.
    ``"dinov2_vitl14"``) whose official weights the backbone was loaded from; ``None`` when the
    backbone's weights are the segmenter's own (trained, or from a random initialisation).
    """

    backbone: str = "convnext_atto"
    num_tokens: int = 100
    rank: int = 16
    head_dim: int = 128
    head_heads: int = 4
    head_layers: int = 3
    neck_dim: int = 256
    freeze_backbone: bool = True
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    crop: int = 512
    stride: int = 341
    backbone_weights: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SegmenterConfig":
        """Inverse of :func:`dataclasses.asdict` (lists become tuples; unknown keys rejected)."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown SegmenterConfig fields: {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def normalise_batch(images: Tensor, config: SegmenterConfig, device: torch.device) -> Tensor:
    """``(B, H, W, 3)`` uint8 -> ``(B, 3, H, W)`` float32 on ``device``, normalised with the
    config's mean / std (what the segmenter is trained and run on)."""
    x = images.to(device).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(config.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(config.std, device=device).view(1, 3, 1, 1)
    return (x - mean) / std


def _window_starts(length: int, crop: int, stride: int) -> list[int]:
    """Window origins covering ``[0, length)`` (``length >= crop``), the last snapped to the end."""
    starts = list(range(0, length - crop + 1, stride))
    if starts[-1] + crop < length:
        starts.append(length - crop)
    return starts


class ReinSegmenter(nn.Module):
    """Backbone with Rein + segmentation head.

    ``forward``: ``(B, 3, h, w)`` normalised float -> ``(B, 1, h, w)`` tumour logits.
    """

    def __init__(self, backbone: ReinBackbone, head: ReinHead, config: SegmenterConfig) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.config = config

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        logits = self.head(self.backbone(x), self.backbone.rein_queries())
        # The finest level may cover a padded input (patch-14 ViTs pad to a multiple of 14):
        # resample to the extent it covers, then crop; otherwise resample to the input size.
        stride = self.backbone.strides[0]
        covered = (round(logits.shape[-2] * stride), round(logits.shape[-1] * stride))
        size = covered if covered[0] >= h and covered[1] >= w else (h, w)
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        return logits[..., :h, :w]

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def normalise(self, image: np.ndarray) -> Tensor:
        """``(H, W, 3)`` uint8 -> ``(1, 3, H, W)`` normalised float32 on the module's device."""
        return normalise_batch(torch.from_numpy(np.ascontiguousarray(image))[None], self.config, self.device)

    def predict_proba(
        self,
        image: np.ndarray,
        *,
        crop: int | None = None,
        stride: int | None = None,
        batch_size: int = 4,
        progress: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Tumour probability of every pixel, by sliding window.

        Windows of ``crop x crop`` start every ``stride`` pixels, the last one in each direction
        snapped to the border; images smaller than ``crop`` are padded with black (bottom /
        right) to ``crop`` and the result cropped back, as the training crops of such images are
        (`training.augment.random_crop`): a mirrored padding, which the model never saw, cost
        the 224-px EBHI patches 0.11 of mean IoU (``benchmarks/segmenter_padding.md``). Window
        logits are averaged where windows overlap (elsewhere the result is exactly the model's
        output on that window), then passed through a sigmoid. Runs under
        ``torch.inference_mode`` on the module's device, with bf16 autocast on CUDA and fp32 on
        CPU, in eval mode (the mode is restored after).

        Args:
            image: ``(H, W, 3)`` uint8 RGB.
            crop, stride: window size and step (default: the config's, 512 and 341).
            batch_size: windows per forward pass.
            progress: called as ``progress(done_windows, total_windows)`` after each batch.

        Returns:
            ``(H, W)`` float32 probabilities in ``[0, 1]``.

        Raises:
            ModelOutputError: the model produced NaN (damaged weights); no mask is returned.
        """
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image must be an (H, W, 3) RGB array, got "
                             f"{getattr(image, 'shape', type(image))}")
        if image.dtype != np.uint8:
            raise ValueError(f"image must be uint8, got {image.dtype}; convert it first "
                             "(napari_cosas.io.image_io.as_rgb_uint8)")
        crop = self.config.crop if crop is None else crop
        stride = self.config.stride if stride is None else stride
        if crop <= 0 or not 0 < stride <= crop or batch_size <= 0:
            raise ValueError(f"need crop > 0, 0 < stride <= crop and batch_size > 0, got "
                             f"crop={crop}, stride={stride}, batch_size={batch_size}")
        height, width = image.shape[:2]
        pad = ((0, max(crop - height, 0)), (0, max(crop - width, 0)), (0, 0))
        padded = np.pad(image, pad) if any(p[1] for p in pad) else image
        ph, pw = padded.shape[:2]
        origins = [(y, x) for y in _window_starts(ph, crop, stride)
                   for x in _window_starts(pw, crop, stride)]
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode(), inference_autocast(self.device):
                x = self.normalise(padded)
                total = torch.zeros(ph, pw, device=x.device)
                count = torch.zeros(ph, pw, device=x.device)
                for first in range(0, len(origins), batch_size):
                    batch = origins[first:first + batch_size]
                    windows = torch.cat([x[..., y:y + crop, x0:x0 + crop] for y, x0 in batch])
                    logits = self(windows)[:, 0].float()
                    for (y, x0), window_logits in zip(batch, logits):
                        total[y:y + crop, x0:x0 + crop] += window_logits
                        count[y:y + crop, x0:x0 + crop] += 1
                    if progress is not None:
                        progress(first + len(batch), len(origins))
                prob = torch.sigmoid(total / count)[:height, :width]
                finite = bool(torch.isfinite(prob).all())
        finally:
            self.train(was_training)
        if not finite:
            raise ModelOutputError(
                "the segmenter returned NaN probabilities: its weights are damaged or it overflowed. "
                "Reload it from a good copy of its file (or reinstall napari-cosas for the bundled one); "
                "on a GPU, try --device cpu."
            )
        return prob.cpu().numpy().astype(np.float32, copy=False)

    def trainable_state_dict(self) -> dict[str, Tensor]:
        """Parameters with ``requires_grad`` (Rein, neck, head; backbone too if not frozen)."""
        return {k: p.detach().clone() for k, p in self.named_parameters() if p.requires_grad}

    @property
    def backbone_from_official_file(self) -> bool:
        """Whether the backbone is frozen at the official weights ``config.backbone_weights``
        (which :meth:`save` then leaves out and :meth:`load` fetches)."""
        return self.config.freeze_backbone and self.config.backbone_weights is not None

    def stored_state_dict(self) -> dict[str, Tensor]:
        """What :meth:`save` writes: the trainable parameters, plus the frozen backbone's
        unless it comes from an official file (a trained or random backbone has no other copy)."""
        if self.backbone_from_official_file:
            return self.trainable_state_dict()
        return {k: p.detach().clone() for k, p in self.named_parameters()}

    def save(self, path: str | PathLike) -> None:
        """Write config + :meth:`stored_state_dict` (format :data:`FORMAT`) with ``torch.save``,
        atomically (``files.atomic_write``)."""
        payload = {"format": FORMAT, "config": asdict(self.config), "state_dict": self.stored_state_dict()}
        atomic_write(path, lambda fh: torch.save(payload, fh))

    @classmethod
    def load(
        cls,
        path: str | PathLike,
        map_location: str | torch.device = "cpu",
        backbone_state: Mapping[str, Tensor] | None = None,
    ) -> "ReinSegmenter":
        """Rebuild a segmenter saved by :meth:`save` (:meth:`from_payload` of the file read once).

        ``backbone_state``: the official backbone weights, for a file whose backbone is frozen
        at ``config.backbone_weights`` (``registry.load_segmenter`` fetches them by name).
        """
        return cls.from_payload(read_segmenter_file(path, map_location), backbone_state, source=path).to(map_location)

    @classmethod
    def from_payload(
        cls,
        payload: Mapping[str, Any],
        backbone_state: Mapping[str, Tensor] | None = None,
        *,
        source: str | PathLike,
    ) -> "ReinSegmenter":
        """Rebuild a segmenter from what :meth:`save` wrote (:func:`read_segmenter_file`), strict
        keys; ``source`` (the file) is named in errors. ``backbone_state`` is required exactly
        when the backbone is frozen at official weights the file leaves out."""
        config = SegmenterConfig.from_dict(payload["config"])
        if backbone_state is None and config.freeze_backbone and config.backbone_weights:
            raise ValueError(
                f"{source} keeps its backbone frozen at the official weights {config.backbone_weights!r}, "
                "which it does not hold: load it with napari_cosas.models.registry.load_segmenter (which fetches "
                "them), or pass their state dict as backbone_state"
            )
        model = build_segmenter(config, backbone_state)
        state = expand_state_dict(payload["state_dict"])
        expected = set(model.stored_state_dict())
        missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
        if missing or unexpected:
            raise ValueError(
                f"{source} does not hold the parameters of a "
                f"{model.config.backbone!r} segmenter (freeze_backbone="
                f"{model.config.freeze_backbone}, backbone_weights="
                f"{model.config.backbone_weights!r}); it should be a file written by "
                f"ReinSegmenter.save for that config. Missing keys: {missing[:10]}"
                f"{' ...' if len(missing) > 10 else ''}; unexpected keys: {unexpected[:10]}"
                f"{' ...' if len(unexpected) > 10 else ''}"
            )
        model.load_state_dict(state, strict=False)
        return model


def read_segmenter_config(path: str | PathLike) -> SegmenterConfig:
    """The config of a segmenter file written by :meth:`ReinSegmenter.save`."""
    return SegmenterConfig.from_dict(read_segmenter_file(path)["config"])


def read_segmenter_file(path: str | PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The contents of a file written by :meth:`ReinSegmenter.save` (``format``, ``config``,
    ``state_dict``); ``ValueError`` naming the file when it is another kind of file."""
    payload = read_weights_file(path, map_location)
    found = payload.get("format") if isinstance(payload, dict) else None
    if found != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} file (written by ReinSegmenter.save): format={found!r}")
    return payload


def build_segmenter(
    config: SegmenterConfig,
    backbone_state: Mapping[str, Tensor] | None = None,
) -> ReinSegmenter:
    """Build a randomly initialised segmenter; optionally load backbone weights (strict)."""
    backbone = build_backbone(
        config.backbone, num_tokens=config.num_tokens, rank=config.rank,
        query_dim=config.head_dim, neck_dim=config.neck_dim,
        freeze_backbone=config.freeze_backbone,
    )
    if backbone_state is not None:
        backbone.load_backbone_state(backbone_state)
    head = ReinHead(backbone.out_channels, config.num_tokens, config.head_dim,
                    config.head_heads, config.head_layers)
    return ReinSegmenter(backbone, head, config)
