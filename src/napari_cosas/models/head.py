"""A light Mask2Former-style head that turns a 4-level pyramid and Rein queries into tumour logits.

Structure:

* **pixel decoder**: an FPN over the 4 levels (1x1 laterals, top-down sum, 3x3 conv + GroupNorm
  + ReLU on the levels that are read) giving per-pixel mask features ``F`` at the finest level
  (stride ~4) and the memories of the decoder;
* **transformer decoder**: ``num_layers`` post-norm layers (cross-attention, self-attention,
  FFN) whose ``K`` queries are the Rein token queries (``(m, d)``, content) plus a learned
  position embedding; layer ``j`` cross-attends to the stride-32, 16, 8 level for ``j % 3 = 0, 1,
  2`` (Mask2Former's round robin over scales, with sine position and level embeddings; without
  masked attention: with 3 layers and ~100 queries it would add little and cost a mask
  prediction per layer);
* **per-query predictions**: a tumour-vs-no-object logit ``s_q`` and a mask embedding ``e_q``;
  mask logits ``m_q(x) = <e_q, F(x)>``.

Semantic output (chosen over Mask2Former's ``sum_q softmax(class_q)[tumour] * sigmoid(m_q)``):
each pixel is softly assigned to one query, ``a_q(x) = softmax_q(m_q(x))`` (as in kMaX-DeepLab),
and ``p(x) = sum_q a_q(x) sigmoid(s_q)``. Its logit is computed exactly and stably as
``LSE_q(m_q + log sigmoid(s_q)) - LSE_q(m_q + log sigmoid(-s_q))``. Why: ``p`` is a true
probability (the Mask2Former sum of ~100 sigmoids is unbounded and must be clamped, which
kills gradients), so the head trains directly with per-pixel losses (BCE / Dice) on the
semantic map, without Hungarian matching, and needs no post-hoc conversion to a logit.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ReinHead"]


def _group_norm(channels: int) -> nn.GroupNorm:
    groups = 32
    while channels % groups:
        groups //= 2
    return nn.GroupNorm(groups, channels)


def _conv_norm_act(in_dim: int, out_dim: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_dim, out_dim, kernel, padding=kernel // 2, bias=False),
        _group_norm(out_dim),
        nn.ReLU(inplace=True),
    )


def sine_position_embedding(h: int, w: int, dim: int, device: torch.device) -> Tensor:
    """2-D sine embedding (DETR style, normalised coordinates): ``(h * w, dim)`` float32."""
    if dim % 4:
        raise ValueError(f"dim must be a multiple of 4, got {dim}")
    quarter = dim // 4
    freqs = 10000.0 ** (-torch.arange(quarter, device=device, dtype=torch.float32) / quarter)
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h * 2 * math.pi
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w * 2 * math.pi
    y = ys[:, None] * freqs[None]  # (h, quarter)
    x = xs[:, None] * freqs[None]  # (w, quarter)
    y = torch.cat([y.sin(), y.cos()], dim=-1)[:, None].expand(h, w, 2 * quarter)
    x = torch.cat([x.sin(), x.cos()], dim=-1)[None].expand(h, w, 2 * quarter)
    return torch.cat([y, x], dim=-1).reshape(h * w, dim)


class FPNPixelDecoder(nn.Module):
    """``[(B, C_i, H_i, W_i)]`` (finest first) -> ``{i: (B, d, H_i, W_i)}``, i in output_levels."""

    def __init__(self, in_channels: list[int], dim: int, output_levels: list[int]) -> None:
        super().__init__()
        self.laterals = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, dim, 1, bias=False), _group_norm(dim)) for c in in_channels
        )
        self.outputs = nn.ModuleDict({str(i): _conv_norm_act(dim, dim, 3) for i in output_levels})

    def forward(self, feats: list[Tensor]) -> dict[int, Tensor]:
        outs: dict[int, Tensor] = {}
        top: Tensor | None = None
        for i in reversed(range(len(feats))):
            lat = self.laterals[i](feats[i])
            if top is not None:
                lat = lat + F.interpolate(top, size=lat.shape[-2:], mode="bilinear",
                                          align_corners=False)
            top = lat
            if str(i) in self.outputs:
                outs[i] = self.outputs[str(i)](lat)
        return outs


class DecoderLayer(nn.Module):
    """Post-norm cross-attention -> self-attention -> FFN on ``(B, K, d)`` queries."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int) -> None:
        super().__init__()
        self.cross = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.self_attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.ReLU(inplace=True),
                                 nn.Linear(ffn_dim, dim))
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(3))

    def forward(self, q: Tensor, q_pos: Tensor, memory: Tensor, memory_pos: Tensor) -> Tensor:
        """``q``, ``q_pos``: ``(B, K, d)``; ``memory``, ``memory_pos``: ``(B, N, d)``."""
        q = self.norms[0](q + self.cross(q + q_pos, memory + memory_pos, memory)[0])
        qk = q + q_pos
        q = self.norms[1](q + self.self_attn(qk, qk, q)[0])
        return self.norms[2](q + self.ffn(q))


class ReinHead(nn.Module):
    """Mask2Former-style head with Rein-seeded queries.

    Args:
        in_channels: channels of the 4 pyramid levels (finest first; strides ~4, 8, 16, 32).
        num_queries: ``K``, number of queries (= Rein's ``num_tokens``).
        dim: width ``d`` of the pixel decoder, the queries and the mask embeddings
            (Rein's ``query_dim`` must equal it).
        num_heads: attention heads.
        num_layers: transformer decoder layers.
        ffn_dim: FFN hidden width (default ``2 * dim``).
    """

    def __init__(self, in_channels: list[int], num_queries: int, dim: int = 128,
                 num_heads: int = 4, num_layers: int = 3, ffn_dim: int | None = None) -> None:
        super().__init__()
        if len(in_channels) != 4:
            raise ValueError(f"expected 4 pyramid levels, got {len(in_channels)}")
        self.dim = dim
        self.num_queries = num_queries
        self.memory_levels = [(3, 2, 1)[j % 3] for j in range(num_layers)]
        self.pixel_decoder = FPNPixelDecoder(in_channels, dim, sorted({0, *self.memory_levels}))
        self.mask_features = nn.Conv2d(dim, dim, 1)
        self.level_embed = nn.Parameter(torch.zeros(3, dim))  # strides 8, 16, 32
        self.query_pos = nn.Parameter(torch.randn(num_queries, dim) * 0.02)
        self.layers = nn.ModuleList(
            DecoderLayer(dim, num_heads, ffn_dim or 2 * dim) for _ in range(num_layers)
        )
        self.query_norm = nn.LayerNorm(dim)
        self.class_logit = nn.Linear(dim, 1)
        self.mask_embed = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(inplace=True),
                                        nn.Linear(dim, dim), nn.ReLU(inplace=True),
                                        nn.Linear(dim, dim))

    def forward(self, feats: list[Tensor], queries: Tensor) -> Tensor:
        """Tumour logits.

        Args:
            feats: ``[(B, C_i, H_i, W_i)]`` for the 4 levels, finest first.
            queries: ``(K, d)`` Rein token queries.

        Returns:
            ``(B, 1, H_0, W_0)`` float logits at the finest level's resolution.
        """
        if queries.shape != (self.num_queries, self.dim):
            raise ValueError(f"queries must be ({self.num_queries}, {self.dim}), "
                             f"got {tuple(queries.shape)}")
        pyramid = self.pixel_decoder(feats)
        mask_feats = self.mask_features(pyramid[0])  # (B, d, H0, W0)
        memories = {}
        for level in set(self.memory_levels):
            fmap = pyramid[level]
            b, d, h, w = fmap.shape
            pos = sine_position_embedding(h, w, d, fmap.device).to(fmap.dtype)
            tokens = fmap.flatten(2).transpose(1, 2) + self.level_embed[level - 1]
            memories[level] = (tokens, pos.expand(b, -1, -1))
        b = mask_feats.shape[0]
        q = queries.to(mask_feats.dtype).expand(b, -1, -1)
        q_pos = self.query_pos.to(mask_feats.dtype).expand(b, -1, -1)
        for level, layer in zip(self.memory_levels, self.layers):
            q = layer(q, q_pos, *memories[level])
        q = self.query_norm(q)
        class_logits = self.class_logit(q)  # (B, K, 1)
        mask_logits = torch.einsum("bkd,bdhw->bkhw", self.mask_embed(q), mask_feats)
        log_pos = F.logsigmoid(class_logits)[..., None]  # (B, K, 1, 1)
        log_neg = F.logsigmoid(-class_logits)[..., None]
        logit = (torch.logsumexp(mask_logits + log_pos, dim=1)
                 - torch.logsumexp(mask_logits + log_neg, dim=1))
        return logit[:, None]
