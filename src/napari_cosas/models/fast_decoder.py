"""A faster, numerically equivalent per-click path through SAM's (or the enhanced) mask decoder.

`FastClickDecoder` computes exactly what ``MaskDecoder.forward`` / ``EnhancedMaskDecoder
.forward_with_context`` compute for one prompt set with ``multimask_output=False`` (up to float
rounding), but cheaper:

* **per-image terms cached**: the image context (global attention, for the enhanced decoder) and
  the dense positional encoding are stored once per image as ``(HW, C)`` token matrices, so a click
  does no ``repeat_interleave`` / flatten / permute copies of them;
* **attention re-associated on the token side**: the cross attentions between the ``T`` prompt
  tokens and the ``HW = 4096`` image tokens never project the image tokens. For
  tokens -> image, ``softmax(q W_k (x + b_k)^T)`` equals ``softmax((q W_k) x^T)`` (the key bias adds
  a constant per row) and ``P (x W_v^T + b_v) = (P x) W_v^T + b_v`` (rows of ``P`` sum to one); for
  image -> tokens the query projection is folded into the (few) keys and the value projection into
  the output projection. Each ``HW x C x D`` projection (``D = 128``) becomes an
  ``HW x C x (heads * T)`` product, a saving while ``heads * T < D`` (fewer than 16 tokens: 5
  output tokens, the points and SAM's padding point, i.e. up to 9 clicks); otherwise the original
  attention projections run;
* **softmax over the short token axis on a contiguous layout**: PyTorch's CPU softmax over a last
  dimension of 7 is ~50x slower than over a middle dimension of the same tensor;
* **only the returned mask**: the final token -> image attention for mask token 0 only (it is
  per query token), its hypernetwork MLP only, no IoU head; the transposed convolutions of the
  output upscaling run as channels-last matrix products (no NCHW permutes);
* **residuals fused into products**: the image tokens' residual ``keys + attn(...)`` is the
  ``addmm`` input, with the output bias folded into the value rows; the output upscaling's
  kernels are laid out as matrices once per instance;
* the extra layers' gated blend ``x + g * (new - x)`` as one ``torch.lerp``;
* **optionally bfloat16 products** (``products=torch.bfloat16``): the four products per layer
  whose one side is the ``HW`` image tokens take bf16 inputs and return float32 (softmax,
  residuals and everything else stay float32). On a CPU with AVX512-BF16 a click is about
  1.2x faster (on one with AMX 0.97x: ``benchmarks/click_precision_amx.md``); the logits then
  differ from float32 by about bf16's precision (``benchmarks/click_precision.md`` measures
  both), so this class's default is float32;
* **only the tokens a window needs** (`low_res_block`): each image token becomes its own 4x4
  block of low-resolution logits, so a click that changes only a window of the mask upscales
  only the tokens under that window; the attention layers see every token, or, given a
  ``context``, only the tokens of that region around the window (every product then shrinks
  with the region: this changes the result, see ``ClickPredictor``'s ``context_margin``).

Shapes: image tokens ``(HW, C)`` float32 (``C = 256``, ``HW = 64 * 64``), prompt tokens
``(T, C)``, low-resolution logits ``(1, 1, 4h, 4w)`` (``(1, 1, 256, 256)`` for SAM).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from segment_anything.modeling import MaskDecoder, PromptEncoder
from segment_anything.modeling.transformer import Attention, TwoWayAttentionBlock
from torch import Tensor, nn

from .click_decoding import TokenRegion, check_block_in_region
from .enhanced_decoder import EnhancedMaskDecoder, decoder_image

Layer = tuple[TwoWayAttentionBlock, Tensor | None, Tensor | None]


def _heads_weight(linear: nn.Linear, heads: int) -> Tensor:
    """``(D, C)`` projection weight as ``(heads, D / heads, C)`` (a view)."""
    return linear.weight.view(heads, -1, linear.weight.shape[1])


def _crop_tokens(tokens: Tensor, h: int, w: int, region: TokenRegion) -> Tensor:
    """The ``(rows * cols, C)`` tokens of ``region`` out of ``(h * w, C)`` row-major tokens."""
    cropped = tokens.view(h, w, -1)[region[0], region[1]]
    return cropped.reshape(-1, tokens.shape[1])


def _mm(a: Tensor, b: Tensor, products: torch.dtype) -> Tensor:
    """``a @ b`` as float32, multiplied in ``products`` (float32 or bfloat16)."""
    if products == torch.float32:
        return torch.mm(a, b)
    return torch.mm(a.to(products), b.to(products)).float()


def _addmm(bias: Tensor, a: Tensor, b: Tensor, products: torch.dtype) -> Tensor:
    """``bias + a @ b`` as float32, the product multiplied in ``products`` (one fused ``addmm`` in
    float32)."""
    if products == torch.float32:
        return torch.addmm(bias, a, b)
    return bias + torch.mm(a.to(products), b.to(products)).float()


def _uses_token_side(attn: Attention, num_tokens: int) -> bool:
    """The re-associated form costs ``heads * T`` per image token, the original ``D``."""
    return attn.num_heads * num_tokens < attn.internal_dim


def tokens_to_image(
    attn: Attention, q: Tensor, k: Tensor, v: Tensor, products: torch.dtype = torch.float32
) -> Tensor:
    """``attn(q, k, v)`` for ``T`` query tokens ``(T, C)`` over image tokens ``k``, ``v``
    ``(HW, C)``; returns ``(T, C)``. The two ``HW``-sized products of the token-side form are
    multiplied in ``products``."""
    num_tokens = q.shape[0]
    if not _uses_token_side(attn, num_tokens):
        return attn(q[None], k[None], v[None])[0]
    heads = attn.num_heads
    head_dim = attn.internal_dim // heads
    qh = attn.q_proj(q).view(num_tokens, heads, head_dim).transpose(0, 1)  # (H, T, d)
    q_img = torch.bmm(qh, _heads_weight(attn.k_proj, heads)).mul_(1.0 / math.sqrt(head_dim))
    probs = _mm(q_img.view(heads * num_tokens, -1), k.t(), products).softmax(dim=-1)  # (H*T, HW)
    mixed = _mm(probs, v, products).view(heads, num_tokens, -1)  # (H, T, C)
    out = torch.baddbmm(
        attn.v_proj.bias.view(heads, 1, head_dim),
        mixed,
        _heads_weight(attn.v_proj, heads).transpose(1, 2),
    )  # (H, T, d)
    return attn.out_proj(out.transpose(0, 1).reshape(num_tokens, attn.internal_dim))


def image_to_tokens(
    attn: Attention, residual: Tensor, q: Tensor, k: Tensor, v: Tensor, products: torch.dtype = torch.float32
) -> Tensor:
    """``residual + attn(q, k, v)`` for image tokens ``q`` ``(HW, C)`` over ``T`` prompt tokens
    ``k``, ``v`` ``(T, C)``; ``residual`` and the result are ``(HW, C)``. The two ``HW``-sized
    products of the token-side form are multiplied in ``products`` (the original form, for 16
    tokens or more, stays float32).

    The residual sum is the input of one ``addmm``, and in the token-side form the output bias is
    folded into the ``H * T`` value rows (each head's attention weights over the ``T`` tokens sum
    to one, so every image token receives ``heads`` copies of ``bias / heads``): no extra pass
    over the ``HW x C`` result.
    """
    num_tokens = k.shape[0]
    heads = attn.num_heads
    head_dim = attn.internal_dim // heads
    kh = attn.k_proj(k).view(num_tokens, heads, head_dim).transpose(0, 1)  # (H, T, d)
    vh = attn.v_proj(v).view(num_tokens, heads, head_dim).transpose(0, 1)
    scale = 1.0 / math.sqrt(head_dim)
    if not _uses_token_side(attn, num_tokens):
        qh = attn.q_proj(q).view(-1, heads, head_dim).permute(1, 2, 0)  # (H, d, HW)
        probs = torch.bmm(kh, qh).mul_(scale).softmax(dim=1)  # (H, T, HW)
        mixed = torch.bmm(probs.transpose(1, 2), vh)  # (H, HW, d)
        mixed = mixed.transpose(0, 1).reshape(-1, attn.internal_dim)
        return torch.addmm(residual, mixed, attn.out_proj.weight.t()).add_(attn.out_proj.bias)
    keys_img = torch.bmm(kh, _heads_weight(attn.q_proj, heads)).mul_(scale)  # (H, T, C)
    bias = torch.bmm(kh, attn.q_proj.bias.view(heads, head_dim, 1)).mul_(scale)  # (H, T, 1)
    logits = _addmm(
        bias.view(heads * num_tokens, 1), keys_img.view(heads * num_tokens, -1), q.t(), products
    )  # (H*T, HW)
    probs = logits.view(heads, num_tokens, -1).softmax(dim=1).view(heads * num_tokens, -1)
    out_w = attn.out_proj.weight.view(-1, heads, head_dim).permute(1, 2, 0)  # (H, d, C)
    values_out = torch.bmm(vh, out_w).view(heads * num_tokens, -1)  # (H*T, C)
    values_out.add_(attn.out_proj.bias, alpha=1.0 / heads)
    return _addmm(residual, probs.t(), values_out, products)


def two_way_block(
    block: TwoWayAttentionBlock,
    queries: Tensor,
    keys: Tensor,
    query_pe: Tensor,
    key_pe: Tensor,
    products: torch.dtype = torch.float32,
) -> tuple[Tensor, Tensor]:
    """``TwoWayAttentionBlock.forward`` on unbatched ``(T, C)`` queries and ``(HW, C)`` keys, the
    cross attentions' image-sized products multiplied in ``products``."""
    if block.skip_first_layer_pe:
        queries = block.self_attn(queries[None], queries[None], queries[None])[0]
    else:
        q = (queries + query_pe)[None]
        queries = queries + block.self_attn(q, q, queries[None])[0]
    queries = block.norm1(queries)
    keys_pe = keys + key_pe
    attn_out = tokens_to_image(block.cross_attn_token_to_image, queries + query_pe, keys_pe, keys, products)
    queries = block.norm2(queries + attn_out)
    queries = block.norm3(queries + block.mlp(queries))
    keys = image_to_tokens(block.cross_attn_image_to_token, keys, keys_pe, queries + query_pe, queries, products)
    return queries, block.norm4(keys)


def _conv_transpose_2x2_matrix(conv: nn.ConvTranspose2d) -> tuple[Tensor, Tensor]:
    """``ConvTranspose2d(kernel=2, stride=2)`` as a channels-last product: weight
    ``(C_in, 4 * C_out)`` and bias ``(4 * C_out,)``, the 4 sub-pixels ordered ``(a, b)``
    (output pixel ``(2i + a, 2j + b)``)."""
    c_in, c_out = conv.weight.shape[:2]
    weight = conv.weight.permute(0, 2, 3, 1).reshape(c_in, 4 * c_out).contiguous()
    return weight, conv.bias.repeat(4)


class FastClickDecoder:
    """Per-click decoder path of a SAM model with a plain or enhanced mask decoder
    (`models.click_decoding.ClickDecoding`).

    Call `set_image` once per image, then `low_res_logits` or `low_res_block` per click. Inference only (call it
    under ``torch.inference_mode``); the model's parameters are read, not copied, except the two
    small output-upscaling kernels, laid out once per instance as matrices (so build a new
    instance after changing the weights). ``products``: the dtype of the attention's image-sized
    products, ``torch.float32`` (equal to the decoder within float tolerance) or
    ``torch.bfloat16`` (see the module docstring).
    """

    def __init__(
        self, prompt_encoder: PromptEncoder, mask_decoder: MaskDecoder, *, products: torch.dtype = torch.float32
    ) -> None:
        if products not in (torch.float32, torch.bfloat16):
            raise ValueError(f"products must be torch.float32 or torch.bfloat16, not {products}")
        self.products = products
        self.prompt_encoder = prompt_encoder
        self.decoder = mask_decoder
        transformer = mask_decoder.transformer
        self.layers: list[Layer] = [(block, None, None) for block in transformer.layers]
        if isinstance(mask_decoder, EnhancedMaskDecoder):
            self.layers += [(g.block, g.query_gate, g.key_gate) for g in mask_decoder.extra_layers]
        self._image_tokens: Tensor | None = None
        self._key_pe: Tensor | None = None
        self._grid: tuple[int, int] = (0, 0)
        conv1, _, _, conv2, _ = mask_decoder.output_upscaling
        with torch.no_grad():
            self._upscale_kernels = (
                _conv_transpose_2x2_matrix(conv1),
                _conv_transpose_2x2_matrix(conv2),
            )

    def set_image(self, image_embedding: Tensor, image_pe: Tensor) -> None:
        """Cache the per-image terms.

        Args:
            image_embedding: ``(1, C, h, w)`` float32 image encoder output (an enhanced decoder's
                ``image_context`` of it is computed here, once).
            image_pe: ``(1, C, h, w)`` dense positional encoding.
        """
        image = decoder_image(self.decoder, image_embedding, image_pe)
        self._grid = (image.shape[2], image.shape[3])
        self._image_tokens = image[0].flatten(1).t().contiguous()
        self._key_pe = image_pe[0].flatten(1).t().contiguous()

    def low_res_logits(
        self, coords_xy: Tensor, labels: Tensor, mask_input: Tensor | None = None
    ) -> Tensor:
        """Low-resolution logits of the single-mask output.

        Args:
            coords_xy: ``(1, N, 2)`` float32 point coordinates ``(x, y)`` in the resized frame.
            labels: ``(1, N)`` int64, 1 positive / 0 negative.
            mask_input: ``(1, 1, 4h, 4w)`` float32 mask prompt logits, or ``None``.

        Returns:
            ``(1, 1, 4h, 4w)`` float32 logits, equal (within float tolerance) to
            ``decoder(..., multimask_output=False)[0]``.
        """
        sparse, dense = self.prompt_encoder(points=(coords_xy, labels), boxes=None, masks=mask_input)
        return self.decode(sparse, dense)

    def low_res_block(
        self,
        coords_xy: Tensor,
        labels: Tensor,
        mask_input: Tensor | None,
        token_rows: slice,
        token_cols: slice,
        context: TokenRegion | None = None,
    ) -> Tensor:
        """The low-resolution logits of the image tokens ``[token_rows, token_cols]`` only:
        ``(1, 1, TOKEN_PIXELS * rows, TOKEN_PIXELS * cols)`` float32.

        Without a ``context`` they equal (within float tolerance) the same rows and columns of
        ``low_res_logits(...)``. With one, ``(rows, cols)`` token slices that contain the block,
        the attention layers see only the image tokens of that region: the result equals the
        decoder's output on the image embedding, positional encoding and dense prompt cropped to
        the region. Arguments as in `low_res_logits`; the slices have unit step, inside the grid.
        """
        sparse, dense = self.prompt_encoder(points=(coords_xy, labels), boxes=None, masks=mask_input)
        h, w = self._grid
        region = context or (slice(0, h), slice(0, w))
        check_block_in_region(token_rows, token_cols, region)
        keys, hyper = self.decode_keys(sparse, dense, context)
        block = keys.view(region[0].stop - region[0].start, region[1].stop - region[1].start, -1)[
            token_rows.start - region[0].start:token_rows.stop - region[0].start,
            token_cols.start - region[1].start:token_cols.stop - region[1].start,
        ]
        return self._upscale(block.reshape(-1, block.shape[-1]), hyper, block.shape[:2])

    def decode(self, sparse: Tensor, dense: Tensor) -> Tensor:
        """`low_res_logits` from encoded prompts: sparse ``(1, K, C)``, dense ``(1, C, h, w)``."""
        keys, hyper = self.decode_keys(sparse, dense)
        return self._upscale(keys, hyper, self._grid)

    def decode_keys(
        self, sparse: Tensor, dense: Tensor, region: TokenRegion | None = None
    ) -> tuple[Tensor, Tensor]:
        """The two-way transformer's image tokens ``(rows * cols, C)`` (row-major over the token
        grid, or over ``region``, ``(rows, cols)`` token slices the attention is confined to) and
        the mask's hypernetwork weights ``(C / 8,)``, from encoded prompts."""
        if self._image_tokens is None or self._key_pe is None:
            raise RuntimeError("FastClickDecoder.set_image must be called before decoding.")
        d = self.decoder
        tokens = torch.cat([d.iou_token.weight, d.mask_tokens.weight, sparse[0]], dim=0)
        image_tokens, key_pe = self._image_tokens, self._key_pe
        dense_tokens = dense[0]
        if region is not None:
            h, w = self._grid
            image_tokens = _crop_tokens(image_tokens, h, w, region)
            key_pe = _crop_tokens(key_pe, h, w, region)
            dense_tokens = dense_tokens[:, region[0], region[1]]
        keys = image_tokens + dense_tokens.flatten(1).t()
        queries = tokens
        for block, query_gate, key_gate in self.layers:
            new_q, new_k = two_way_block(block, queries, keys, tokens, key_pe, self.products)
            if query_gate is None:
                queries, keys = new_q, new_k
            else:
                queries = torch.lerp(queries, new_q, query_gate)
                keys = torch.lerp(keys, new_k, key_gate)
        # the final attention is per query token: only mask token 0 (row 1) feeds the output
        t = d.transformer
        mask_query = queries[1:2]
        attn_out = tokens_to_image(
            t.final_attn_token_to_image, mask_query + tokens[1:2], keys + key_pe, keys, self.products
        )
        mask_query = t.norm_final_attn(mask_query + attn_out)
        return keys, d.output_hypernetworks_mlps[0](mask_query[0])

    def _upscale(self, keys: Tensor, hyper: Tensor, grid: tuple[int, int]) -> Tensor:
        """``output_upscaling`` + hypernetwork product of a ``grid = (h, w)`` block of image
        tokens: ``(h * w, C)``, ``(C / 8,)`` -> ``(1, 1, 4h, 4w)``."""
        _, norm, act1, _, act2 = self.decoder.output_upscaling
        (weight1, bias1), (weight2, bias2) = self._upscale_kernels
        x = torch.addmm(bias1, keys, weight1).view(-1, 4, weight1.shape[1] // 4)  # (hw, 4, C/4)
        x = act1(F.layer_norm(x, norm.weight.shape, norm.weight, norm.bias, norm.eps))
        x = act2(torch.addmm(bias2, x.view(-1, x.shape[-1]), weight2))  # (4hw, 4 * C/8)
        h, w = grid
        # pixel (4i + 2a + a2, 4j + 2b + b2) from rows (i, j, a, b) and sub-pixels (a2, b2)
        low = torch.mv(x.view(-1, weight2.shape[1] // 4), hyper).view(h, w, 2, 2, 2, 2)
        return low.permute(0, 2, 4, 1, 3, 5).reshape(1, 1, 4 * h, 4 * w)
