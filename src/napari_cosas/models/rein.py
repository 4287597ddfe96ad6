"""Rein: low-rank learnable tokens that refine a frozen backbone's features layer by layer.

After Wei et al., "Stronger, Fewer, & Superior: Harnessing Vision Foundation Models for Domain
Generalized Semantic Segmentation" (CVPR 2024). For backbone layer ``i`` with features
``f_i`` of shape ``(B, n, c)`` (prefix tokens such as the class token split off):

* tokens ``T_i = A_i @ B_i`` with ``A_i: (m, r)`` and ``B_i: (r, c)`` (``m = 100``, ``r = 16``);
* ``S_i = softmax(f_i @ T_i^T / sqrt(c))``, shape ``(B, n, m)``;
* ``dF = S_i[:, :, 1:] @ (T_i[1:] W_T + b_T)``: token 0 is a *null token*, it takes attention
  mass and adds nothing;
* ``dF = (dF + f_i) W_f + b_f``;
* ``f_i <- f_i + s_i * dF`` with a learnable scale ``s_i`` initialised to ``1e-3``.

``W_T`` and ``W_f`` (``c x c`` linear layers) are shared by all layers of one :class:`Rein`;
``A_i``, ``B_i`` and the scale ``s_i`` are per layer (the reference implementation shares one
scalar scale over all layers; a per-layer scalar is a strict generalisation of it).

Token-to-query link: ``Q_i = T_i W_Q`` (``(m, d)`` per layer), max- and mean-pooled over layers
and concatenated with the last layer's; a linear layer merges ``(m, 3d) -> (m, d)``.

Backbones whose layers have different widths (ConvNeXt stages) use :class:`ReinStack`, one
single-layer :class:`Rein` per stage sharing one query merge, with the same call interface.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Rein", "ReinStack", "QueryMerge", "build_rein_stack"]


class QueryMerge(nn.Module):
    """Merge per-layer token queries ``(L, m, d)`` into ``(m, d)``.

    ``Linear(concat[max over L, mean over L, last layer])``.
    """

    def __init__(self, query_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(3 * query_dim, query_dim)

    def forward(self, layer_queries: Tensor) -> Tensor:
        """``layer_queries``: ``(L, m, d)`` float -> ``(m, d)``."""
        pooled = torch.cat(
            [layer_queries.amax(dim=0), layer_queries.mean(dim=0), layer_queries[-1]], dim=-1
        )
        return self.proj(pooled)


class Rein(nn.Module):
    """Rein adapter for ``num_layers`` layers of width ``embed_dim``.

    Args:
        embed_dim: feature width ``c``.
        num_layers: number of backbone layers refined by this module.
        num_tokens: ``m``, tokens per layer (token 0 is the null token).
        rank: ``r``, rank of the token factorisation ``T_i = A_i B_i``.
        query_dim: width ``d`` of the queries returned by :meth:`queries`.
        patch_size: only used for the initialisation range of ``A`` and ``B``
            (``U(-v, v)`` with ``v = sqrt(6 / (3 * patch_size**2 + c))``, as in the reference).
        scale_init: initial value of every per-layer scale ``s_i``.
        with_merge: build the query merge; :class:`ReinStack` sets it False and merges itself.
    """

    def __init__(
        self,
        embed_dim: int,
        num_layers: int,
        num_tokens: int = 100,
        rank: int = 16,
        query_dim: int = 256,
        patch_size: int = 16,
        scale_init: float = 1e-3,
        with_merge: bool = True,
    ) -> None:
        super().__init__()
        if num_tokens < 2:
            raise ValueError(
                f"num_tokens must be >= 2 (token 0 is the null token), got {num_tokens}")
        self.embed_dim = embed_dim
        self.num_layers = num_layers
        self.num_tokens = num_tokens
        self.rank = rank
        self.query_dim = query_dim
        self.A = nn.Parameter(torch.empty(num_layers, num_tokens, rank))
        self.B = nn.Parameter(torch.empty(num_layers, rank, embed_dim))
        bound = math.sqrt(6.0 / float(3 * patch_size * patch_size + embed_dim))
        nn.init.uniform_(self.A, -bound, bound)
        nn.init.uniform_(self.B, -bound, bound)
        self.token_to_feat = nn.Linear(embed_dim, embed_dim)  # W_T, b_T (shared by layers)
        self.delta_feat = nn.Linear(embed_dim, embed_dim)  # W_f, b_f (shared by layers)
        self.scale = nn.Parameter(torch.full((num_layers,), float(scale_init)))
        self.token_to_query = nn.Linear(embed_dim, query_dim)  # W_Q
        self.merge = QueryMerge(query_dim) if with_merge else None

    def tokens(self, layer: int | None = None) -> Tensor:
        """``T = A @ B``: ``(m, c)`` for one layer, ``(L, m, c)`` when ``layer`` is None."""
        if layer is None:
            return self.A @ self.B
        return self.A[layer] @ self.B[layer]

    def forward(
        self,
        feats: Tensor,
        layer: int,
        has_cls_token: bool = False,
        num_prefix_tokens: int | None = None,
    ) -> Tensor:
        """Refine the features of one layer.

        Args:
            feats: ``(B, n, c)`` float tokens (prefix tokens first, when present).
            layer: layer index in ``[0, num_layers)``.
            has_cls_token: whether ``feats[:, 0]`` is a class token (passed through unchanged).
            num_prefix_tokens: overrides ``has_cls_token``; e.g. ``5`` for a class token plus
                4 register tokens. Prefix tokens are passed through unchanged.

        Returns:
            ``(B, n, c)`` refined features, same dtype as ``feats``.
        """
        if feats.ndim != 3 or feats.shape[-1] != self.embed_dim:
            raise ValueError(f"feats must be (B, n, {self.embed_dim}), got {tuple(feats.shape)}")
        n_prefix = (1 if has_cls_token else 0) if num_prefix_tokens is None else num_prefix_tokens
        prefix, f = feats[:, :n_prefix], feats[:, n_prefix:]
        tokens = self.tokens(layer).to(f.dtype)  # (m, c)
        attn = F.softmax(f @ tokens.t() * self.embed_dim**-0.5, dim=-1)  # (B, n, m)
        delta = attn[:, :, 1:] @ self.token_to_feat(tokens[1:])  # (B, n, c)
        delta = self.delta_feat(delta + f)
        f = f + self.scale[layer].to(f.dtype) * delta
        return torch.cat([prefix, f], dim=1) if n_prefix else f

    def layer_queries(self) -> Tensor:
        """``Q_i = T_i W_Q`` for every layer: ``(L, m, d)``."""
        return self.token_to_query(self.tokens())

    def queries(self) -> Tensor:
        """Decoder queries seeded by the tokens: ``(m, d)`` (null token included)."""
        if self.merge is None:
            raise RuntimeError("this Rein was built with with_merge=False; use its ReinStack")
        return self.merge(self.layer_queries())


class ReinStack(nn.Module):
    """One single-layer :class:`Rein` per stage, for backbones with per-stage widths.

    Same interface as :class:`Rein`: ``forward(feats, layer, ...)`` refines stage ``layer`` and
    :meth:`queries` merges the stages' queries (max, mean, last stage) into ``(m, d)``.
    """

    def __init__(self, reins: list[Rein], query_dim: int) -> None:
        super().__init__()
        if len({r.num_tokens for r in reins}) != 1:
            raise ValueError("all stages of a ReinStack need the same number of tokens")
        self.reins = nn.ModuleList(reins)
        self.merge = QueryMerge(query_dim)

    def forward(
        self,
        feats: Tensor,
        layer: int,
        has_cls_token: bool = False,
        num_prefix_tokens: int | None = None,
    ) -> Tensor:
        """Refine stage ``layer``: ``(B, n, c_layer) -> (B, n, c_layer)``."""
        return self.reins[layer](feats, 0, has_cls_token, num_prefix_tokens)

    def queries(self) -> Tensor:
        """``(m, d)`` queries merged over stages."""
        return self.merge(torch.cat([r.layer_queries() for r in self.reins], dim=0))


def build_rein_stack(
    stage_dims: list[int],
    num_tokens: int = 100,
    rank: int = 16,
    query_dim: int = 256,
    patch_size: int = 16,
    scale_init: float = 1e-3,
) -> ReinStack:
    """One Rein (``num_layers=1``) per stage width in ``stage_dims``."""
    reins = [
        Rein(c, 1, num_tokens, rank, query_dim, patch_size, scale_init, with_merge=False)
        for c in stage_dims
    ]
    return ReinStack(reins, query_dim)
