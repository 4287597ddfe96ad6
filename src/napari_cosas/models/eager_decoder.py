"""The mask decoder's modules as written, behind `models.click_decoding.ClickDecoding`: the
reference the fast path (`models.fast_decoder.FastClickDecoder`) is checked against."""

from __future__ import annotations

from segment_anything.modeling import MaskDecoder, PromptEncoder
from torch import Tensor

from .click_decoding import TOKEN_PIXELS, TokenRegion, check_block_in_region
from .enhanced_decoder import EnhancedMaskDecoder, decoder_image


class EagerClickDecoder:
    """Per-click decoding by ``MaskDecoder.forward`` (or ``EnhancedMaskDecoder
    .forward_with_context`` on the image context cached by `set_image`).

    Attributes:
        image: ``(1, C, h, w)`` float32, what the decoder reads as image (the context of an
            enhanced decoder, else the embedding); ``None`` before `set_image`.
        image_pe: ``(1, C, h, w)`` float32 dense positional encoding.
    """

    def __init__(self, prompt_encoder: PromptEncoder, mask_decoder: MaskDecoder) -> None:
        self.prompt_encoder = prompt_encoder
        self.decoder = mask_decoder
        self._forward = (mask_decoder.forward_with_context if isinstance(mask_decoder, EnhancedMaskDecoder)
                         else mask_decoder)
        self.image: Tensor | None = None
        self.image_pe: Tensor | None = None

    def set_image(self, image_embedding: Tensor, image_pe: Tensor) -> None:
        """Cache the decoder's image input (``(1, C, h, w)`` float32) and positional encoding."""
        self.image = decoder_image(self.decoder, image_embedding, image_pe)
        self.image_pe = image_pe

    def low_res_logits(self, coords_xy: Tensor, labels: Tensor, mask_input: Tensor | None = None) -> Tensor:
        """``(1, 1, 4h, 4w)`` float32 logits of the decoder's single-mask output."""
        return self._decode(coords_xy, labels, mask_input, None)

    def low_res_block(
        self,
        coords_xy: Tensor,
        labels: Tensor,
        mask_input: Tensor | None,
        token_rows: slice,
        token_cols: slice,
        context: TokenRegion | None = None,
    ) -> Tensor:
        """The block ``[token_rows, token_cols]`` of the decoder's output over every token, or over
        ``context`` (embedding, positional encoding and dense prompt cropped to it first):
        ``(1, 1, TOKEN_PIXELS * rows, TOKEN_PIXELS * cols)`` float32."""
        h, w = self._grid()
        region = context or (slice(0, h), slice(0, w))
        check_block_in_region(token_rows, token_cols, region)
        low_res = self._decode(coords_xy, labels, mask_input, context)
        top, left = region[0].start, region[1].start
        return low_res[..., TOKEN_PIXELS * (token_rows.start - top):TOKEN_PIXELS * (token_rows.stop - top),
                       TOKEN_PIXELS * (token_cols.start - left):TOKEN_PIXELS * (token_cols.stop - left)]

    def _grid(self) -> tuple[int, int]:
        if self.image is None or self.image_pe is None:
            raise RuntimeError("EagerClickDecoder.set_image must be called before decoding.")
        return self.image.shape[2], self.image.shape[3]

    def _decode(
        self, coords_xy: Tensor, labels: Tensor, mask_input: Tensor | None, region: TokenRegion | None
    ) -> Tensor:
        self._grid()
        sparse, dense = self.prompt_encoder(points=(coords_xy, labels), boxes=None, masks=mask_input)
        image, image_pe = self.image, self.image_pe
        if region is not None:
            image, image_pe, dense = (t[..., region[0], region[1]] for t in (image, image_pe, dense))
        low_res, _ = self._forward(image, image_pe, sparse, dense, False)
        return low_res
