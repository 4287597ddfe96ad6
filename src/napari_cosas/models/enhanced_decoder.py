"""SAM's mask decoder with a global-attention block and extra two-way layers.

`EnhancedMaskDecoder` subclasses `segment_anything.modeling.MaskDecoder` and adds

* a **global-attention block**: pre-norm multi-head self-attention over all ``H x W`` image
  tokens (positional encoding added to queries and keys), residual, with a per-channel gate
  initialised to zero. It runs on the image embedding *before* the dense (mask) prompt is added,
  so its output (the "image context") depends only on the image and can be cached per image;
* **extra two-way layers**: `TwoWayAttentionBlock` instances appended after the original
  transformer's layers (before its final token-to-image attention). SAM's blocks end in post-norm
  residuals, so each is wrapped as ``x + g * (block(x) - x)`` with per-channel gates ``g``
  (one for the tokens, one for the image keys) initialised to zero.

With every gate at zero the decoder reproduces the plain decoder's output exactly, so official
SAM decoder weights load into it (`load_sam_decoder_state`) and training starts from SAM.

Shapes: image embeddings ``(B, C, H, W)`` float32 (``C = 256``, ``H = W = 64`` for SAM),
positional encoding ``image_pe`` ``(1, C, H, W)``, sparse prompts ``(N, K, C)`` (``N`` prompts
sharing one image when ``B = 1``), dense prompts ``(N, C, H, W)``. Point coordinates inside the
prompt encoder are SAM's ``(x, y)``.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from segment_anything.modeling import MaskDecoder
from segment_anything.modeling.transformer import TwoWayAttentionBlock, TwoWayTransformer
from torch import Tensor, nn

#: Prefixes of the parameters that `EnhancedMaskDecoder` adds to `MaskDecoder`.
NEW_PARAMETER_PREFIXES: tuple[str, ...] = ("global_attn.", "extra_layers.")


class GlobalAttentionBlock(nn.Module):
    """Gated pre-norm self-attention over all image tokens.

    ``y = x + gate * out_proj(MHA(q = k = norm(x) + pe, v = norm(x)))``; ``gate`` has shape
    ``(C,)`` and starts at zero, so the block is the identity at initialisation while its
    gradient (the attention output) is non-zero.
    """

    def __init__(self, dim: int, num_heads: int = 8) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim={dim} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.norm = nn.LayerNorm(dim)
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        self.gate = nn.Parameter(torch.zeros(dim))

    def forward(self, x: Tensor, pe: Tensor) -> Tensor:
        """``x``: ``(B, C, H, W)``; ``pe``: ``(1 or B, C, H, W)`` -> ``(B, C, H, W)``."""
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # (B, HW, C)
        pos = pe.flatten(2).transpose(1, 2).expand(b, -1, -1)
        normed = self.norm(tokens)
        qk_in = normed + pos

        def heads(t: Tensor) -> Tensor:
            return t.reshape(b, h * w, self.num_heads, c // self.num_heads).transpose(1, 2)

        attn = F.scaled_dot_product_attention(
            heads(self.q_proj(qk_in)), heads(self.k_proj(qk_in)), heads(self.v_proj(normed))
        )
        attn = self.out_proj(attn.transpose(1, 2).reshape(b, h * w, c))
        out = tokens + self.gate * attn
        return out.transpose(1, 2).reshape(b, c, h, w)


class GatedTwoWayBlock(nn.Module):
    """A `TwoWayAttentionBlock` blended in through zero-initialised per-channel gates.

    ``queries <- queries + query_gate * (block_q - queries)`` and likewise for the keys, where
    ``(block_q, block_k) = block(queries, keys, query_pe, key_pe)``.
    """

    def __init__(self, block: TwoWayAttentionBlock, dim: int) -> None:
        super().__init__()
        self.block = block
        self.query_gate = nn.Parameter(torch.zeros(dim))
        self.key_gate = nn.Parameter(torch.zeros(dim))

    def forward(
        self, queries: Tensor, keys: Tensor, query_pe: Tensor, key_pe: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Queries ``(N, K, C)``, keys ``(N, HW, C)`` -> same shapes."""
        new_q, new_k = self.block(queries=queries, keys=keys, query_pe=query_pe, key_pe=key_pe)
        return (
            queries + self.query_gate * (new_q - queries),
            keys + self.key_gate * (new_k - keys),
        )


class EnhancedMaskDecoder(MaskDecoder):
    """`MaskDecoder` + global attention over image tokens + extra gated two-way layers.

    Build it from a plain decoder with `from_sam`; ``forward`` has exactly
    `MaskDecoder.forward`'s signature and return value, so `segment_anything.SamPredictor`
    uses it unchanged. For interactive use compute ``image_context`` once per image and call
    ``forward_with_context`` per click.
    """

    def __init__(
        self,
        *,
        transformer_dim: int,
        transformer: TwoWayTransformer,
        num_multimask_outputs: int = 3,
        activation: type[nn.Module] = nn.GELU,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
        num_extra_layers: int = 2,
        global_attention: bool = True,
        global_num_heads: int = 8,
    ) -> None:
        super().__init__(
            transformer_dim=transformer_dim,
            transformer=transformer,
            num_multimask_outputs=num_multimask_outputs,
            activation=activation,
            iou_head_depth=iou_head_depth,
            iou_head_hidden_dim=iou_head_hidden_dim,
        )
        self.num_extra_layers = num_extra_layers
        self.global_attention = global_attention
        self.global_attn = (
            GlobalAttentionBlock(transformer_dim, global_num_heads) if global_attention else None
        )
        first = transformer.layers[0]
        self.extra_layers = nn.ModuleList(
            GatedTwoWayBlock(
                TwoWayAttentionBlock(
                    embedding_dim=transformer_dim,
                    num_heads=transformer.num_heads,
                    mlp_dim=transformer.mlp_dim,
                    activation=type(first.mlp.act),
                    attention_downsample_rate=(
                        transformer_dim // first.cross_attn_token_to_image.internal_dim
                    ),
                    skip_first_layer_pe=False,
                ),
                transformer_dim,
            )
            for _ in range(num_extra_layers)
        )

    @classmethod
    def from_sam(
        cls,
        mask_decoder: MaskDecoder,
        num_extra_layers: int = 2,
        global_attention: bool = True,
        global_num_heads: int = 8,
        extra_init: str = "copy_last",
    ) -> "EnhancedMaskDecoder":
        """Enhanced decoder holding a deep copy of ``mask_decoder``'s weights.

        ``extra_init``: ``"copy_last"`` initialises each extra layer's block from the plain
        transformer's last layer (a warm start; the gates keep the output unchanged), ``"random"``
        keeps PyTorch's default initialisation. ``mask_decoder`` is left untouched; the result is
        on the same device / dtype and in the same train / eval mode.
        """
        if extra_init not in ("copy_last", "random"):
            raise ValueError(f"extra_init must be 'copy_last' or 'random', got {extra_init!r}")
        iou_head = mask_decoder.iou_prediction_head
        activation = type(mask_decoder.output_upscaling[2])
        decoder = cls(
            transformer_dim=mask_decoder.transformer_dim,
            transformer=copy.deepcopy(mask_decoder.transformer),
            num_multimask_outputs=mask_decoder.num_multimask_outputs,
            activation=activation,
            iou_head_depth=iou_head.num_layers,
            iou_head_hidden_dim=iou_head.layers[0].out_features,
            num_extra_layers=num_extra_layers,
            global_attention=global_attention,
            global_num_heads=global_num_heads,
        )
        ref = next(mask_decoder.parameters())
        decoder.to(device=ref.device, dtype=ref.dtype)
        decoder.load_sam_decoder_state(copy.deepcopy(mask_decoder.state_dict()))
        if extra_init == "copy_last":
            last = decoder.transformer.layers[-1].state_dict()
            for layer in decoder.extra_layers:
                layer.block.load_state_dict(last)
        decoder.train(mask_decoder.training)
        return decoder

    def new_parameter_names(self) -> list[str]:
        """Names (as in ``state_dict``) of the parameters not present in `MaskDecoder`."""
        return [n for n, _ in self.named_parameters() if n.startswith(NEW_PARAMETER_PREFIXES)]

    @property
    def num_added_parameters(self) -> int:
        """Number of scalar parameters added to the plain decoder."""
        return sum(
            p.numel() for n, p in self.named_parameters() if n.startswith(NEW_PARAMETER_PREFIXES)
        )

    def load_sam_decoder_state(self, state_dict: dict[str, Tensor]) -> None:
        """Load a plain `MaskDecoder` state dict (or a full enhanced one).

        The keys missing from ``state_dict`` must be exactly none or all of
        `new_parameter_names`; any other missing or unexpected key raises ``KeyError`` naming it.
        """
        new = set(self.new_parameter_names())
        result = self.load_state_dict(state_dict, strict=False)
        missing = set(result.missing_keys)
        problems = []
        if result.unexpected_keys:
            problems.append(f"unexpected keys: {sorted(result.unexpected_keys)}")
        if missing - new:
            problems.append(f"missing decoder keys: {sorted(missing - new)}")
        if missing & new and missing & new != new:
            problems.append(f"partially missing new keys: {sorted(missing & new)}")
        if problems:
            raise KeyError("Cannot load mask decoder state: " + "; ".join(problems))

    def image_context(self, image_embeddings: Tensor, image_pe: Tensor) -> Tensor:
        """Prompt-independent image context: ``(B, C, H, W)`` -> ``(B, C, H, W)``.

        The global-attention block applied to the image embedding (identity if disabled).
        Cache it per image and pass it to `forward_with_context`.
        """
        if self.global_attn is None:
            return image_embeddings
        return self.global_attn(image_embeddings, image_pe)

    def forward(
        self,
        image_embeddings: Tensor,
        image_pe: Tensor,
        sparse_prompt_embeddings: Tensor,
        dense_prompt_embeddings: Tensor,
        multimask_output: bool,
    ) -> tuple[Tensor, Tensor]:
        """Same contract as `MaskDecoder.forward`.

        Returns masks ``(N, M, 4H, 4W)`` low-resolution logits (256x256 for SAM) and IoU
        predictions ``(N, M)``, ``M = 3`` if ``multimask_output`` else ``1``.
        """
        return self.forward_with_context(
            self.image_context(image_embeddings, image_pe),
            image_pe,
            sparse_prompt_embeddings,
            dense_prompt_embeddings,
            multimask_output,
        )

    def forward_with_context(
        self,
        context: Tensor,
        image_pe: Tensor,
        sparse_prompt_embeddings: Tensor,
        dense_prompt_embeddings: Tensor,
        multimask_output: bool,
    ) -> tuple[Tensor, Tensor]:
        """`forward` from a cached `image_context` ``(B, C, H, W)``; same outputs."""
        masks, iou_pred = self.predict_masks(
            image_embeddings=context,
            image_pe=image_pe,
            sparse_prompt_embeddings=sparse_prompt_embeddings,
            dense_prompt_embeddings=dense_prompt_embeddings,
        )
        mask_slice = slice(1, None) if multimask_output else slice(0, 1)
        return masks[:, mask_slice, :, :], iou_pred[:, mask_slice]

    def _run_transformer(
        self, src: Tensor, pos_src: Tensor, tokens: Tensor
    ) -> tuple[Tensor, Tensor]:
        """`TwoWayTransformer.forward` with the extra layers inserted before its final attention."""
        t = self.transformer
        keys = src.flatten(2).permute(0, 2, 1)
        key_pe = pos_src.flatten(2).permute(0, 2, 1)
        queries = tokens
        for layer in [*t.layers, *self.extra_layers]:
            queries, keys = layer(queries=queries, keys=keys, query_pe=tokens, key_pe=key_pe)
        attn_out = t.final_attn_token_to_image(q=queries + tokens, k=keys + key_pe, v=keys)
        queries = t.norm_final_attn(queries + attn_out)
        return queries, keys

    def predict_masks(
        self,
        image_embeddings: Tensor,
        image_pe: Tensor,
        sparse_prompt_embeddings: Tensor,
        dense_prompt_embeddings: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """`MaskDecoder.predict_masks` running `_run_transformer`; ``image_embeddings`` is the
        (already global-attended) context. Returns all ``num_mask_tokens`` masks and IoUs.

        ``image_embeddings`` is ``(1, C, H, W)`` shared by all ``N`` prompt sets (SAM's case), or
        ``(N, C, H, W)``, one image per prompt set (batched training).
        """
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        output_tokens = output_tokens.unsqueeze(0).expand(sparse_prompt_embeddings.size(0), -1, -1)
        tokens = torch.cat((output_tokens, sparse_prompt_embeddings), dim=1)

        if image_embeddings.shape[0] == tokens.shape[0]:
            src = image_embeddings
        else:
            src = torch.repeat_interleave(image_embeddings, tokens.shape[0], dim=0)
        src = src + dense_prompt_embeddings
        pos_src = torch.repeat_interleave(image_pe, tokens.shape[0], dim=0)
        b, c, h, w = src.shape

        hs, src = self._run_transformer(src, pos_src, tokens)
        iou_token_out = hs[:, 0, :]
        mask_tokens_out = hs[:, 1 : (1 + self.num_mask_tokens), :]

        src = src.transpose(1, 2).reshape(b, c, h, w)
        upscaled = self.output_upscaling(src)
        hyper_in = torch.stack(
            [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)],
            dim=1,
        )
        b, c, h, w = upscaled.shape
        masks = (hyper_in @ upscaled.view(b, c, h * w)).view(b, -1, h, w)
        iou_pred = self.iou_prediction_head(iou_token_out)
        return masks, iou_pred


def decoder_image(decoder: MaskDecoder, image_embedding: Tensor, image_pe: Tensor) -> Tensor:
    """What ``decoder`` reads as image per click, ``(1, C, h, w)`` float32: an
    `EnhancedMaskDecoder`'s `image_context` (computed once per image), else the embedding."""
    if isinstance(decoder, EnhancedMaskDecoder):
        return decoder.image_context(image_embedding, image_pe)
    return image_embedding
