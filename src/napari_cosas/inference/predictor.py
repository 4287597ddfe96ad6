"""The click predictor: an image is encoded once, then every click is cheap.

Public coordinates are napari's ``(row, col)`` in image pixels. segment-anything works in
``(x, y)``; the conversion happens here and nowhere else (``x = col``, ``y = row``; SAM's prompt
encoder adds the half-pixel shift itself).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam
from segment_anything.utils.transforms import ResizeLongestSide

from ..io.image_io import as_rgb_uint8, image_sha256
from ..models.click_decoding import TOKEN_PIXELS, ClickDecoding, ClickPrediction, TokenRegion
from ..models.devices import Precision, click_products, resolve_device
from ..models.eager_decoder import EagerClickDecoder
from ..models.fast_decoder import FastClickDecoder
from ..models.segmenter import ModelOutputError
from .embedding_cache import CachedEmbedding, CacheKey, EmbeddingCache
from .refine import CONTEXT_MARGIN

#: Bumped whenever resizing or normalisation changes, which invalidates cached embeddings.
PREPROCESS_VERSION = "sam-resize-longest-pil/1"
#: Mask prompts made from probabilities are clipped to this logit magnitude.
PROMPT_LOGIT_CLIP = 10.0


def clipped_logits(prob: torch.Tensor) -> torch.Tensor:
    """Probabilities in ``[0, 1]`` -> logits clipped to ``±PROMPT_LOGIT_CLIP`` (any shape)."""
    eps = 1.0 / (1.0 + math.exp(PROMPT_LOGIT_CLIP))
    return torch.logit(prob.clamp(eps, 1 - eps))


def prob_to_prompt_logits(
    prob: torch.Tensor, input_size: tuple[int, int], img_size: int = 1024, low_res: int = 256
) -> torch.Tensor:
    """Turn full-resolution probabilities into a SAM mask prompt.

    Args:
        prob: ``(B, 1, H, W)`` float probabilities in ``[0, 1]`` at the original image size.
        input_size: ``(rows, cols)`` of the image after resizing its longest side to ``img_size``.

    Returns:
        ``(B, 1, low_res, low_res)`` float32 logits in SAM's padded frame, clipped to
        ``±PROMPT_LOGIT_CLIP``, the form the decoder's own low-resolution output takes.
    """
    scale = low_res / img_size
    rows, cols = max(1, round(input_size[0] * scale)), max(1, round(input_size[1] * scale))
    small = F.interpolate(prob.float(), (rows, cols), mode="bilinear", align_corners=False)
    logits = clipped_logits(small)
    out = torch.full((prob.shape[0], 1, low_res, low_res), -PROMPT_LOGIT_CLIP, device=prob.device)
    out[..., :rows, :cols] = logits
    return out


def postprocess_matrix(low_res: int, img_size: int, input_len: int, original_len: int) -> torch.Tensor:
    """SAM's ``postprocess_masks`` along one axis as a matrix.

    ``Sam.postprocess_masks`` upsamples low-resolution logits bilinearly to ``img_size``, crops
    the resized image (``input_len``) and upsamples bilinearly to the original size; both steps
    are linear and separable, so along one axis they are a matrix, built here by running them on
    the identity (float32, torch's own interpolation).

    Returns:
        ``(original_len, low_res)`` float32: row ``i`` weights the low-resolution rows (or
        columns) that make output row ``i``; at most a few entries per row are non-zero.
    """
    basis = torch.eye(low_res).view(1, low_res, low_res, 1)
    resized = F.interpolate(basis, (img_size, 1), mode="bilinear", align_corners=False)[:, :, :input_len]
    original = F.interpolate(resized, (original_len, 1), mode="bilinear", align_corners=False)
    return original[0, :, :, 0].t().contiguous()


def _token_span(weights: torch.Tensor) -> slice:
    """The image tokens (``TOKEN_PIXELS`` low-resolution pixels each) that the non-zero columns
    of ``weights`` ``(n, low_res)`` read."""
    used = torch.nonzero(weights.any(dim=0)).flatten()
    return slice(int(used[0]) // TOKEN_PIXELS, int(used[-1]) // TOKEN_PIXELS + 1)


class ClickPredictor:
    """Answers clicks on one image at a time with a SAM-style model.

    Args:
        model: a ``segment_anything.modeling.Sam`` (its mask decoder may be an
            ``EnhancedMaskDecoder``).
        model_id: names the weights; part of the embedding cache key.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        cache: an ``EmbeddingCache``, or ``None`` to keep embeddings in memory only.
        fast: decode clicks with `FastClickDecoder` (same output within float tolerance,
            about twice as fast on CPU); ``False``: `EagerClickDecoder`, the decoder modules as
            written. Either is the predictor's `decoding` (a ``ClickDecoding``).
        context_margin: for a window's logits (`predict` with a ``window``), the decoder's
            attention sees only the image tokens under the window and this many tokens around
            it (cut at the image's edge, so never the padding of a non-square image); ``None``:
            every token of the padded grid, SAM's own decoding. A click then costs in proportion
            to the tokens seen (default `CONTEXT_MARGIN`).
        precision: the dtype of the fast decoder's image-sized products (``devices.click_products``):
            ``"auto"`` (bf16 where it pays, ``devices.bf16_pays``: about 1.2x faster clicks,
            else fp32), ``"fp32"`` or ``"bf16"``; `precision` then holds the one used. The eager
            decoder is always fp32.
    """

    def __init__(
        self,
        model: Sam,
        model_id: str,
        *,
        device: str | torch.device = "auto",
        cache: EmbeddingCache | None = None,
        fast: bool = True,
        context_margin: int | None = CONTEXT_MARGIN,
        precision: Precision = "auto",
    ) -> None:
        if context_margin is not None and context_margin < 0:
            raise ValueError(f"context_margin must be None or at least 0, not {context_margin}")
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.model_id = model_id
        self.cache = cache
        self.transform = ResizeLongestSide(model.image_encoder.img_size)
        self.original_size: tuple[int, int] | None = None
        self.input_size: tuple[int, int] | None = None
        self.embedding: torch.Tensor | None = None
        self._resize_rows: torch.Tensor | None = None
        self._resize_cols: torch.Tensor | None = None
        self.last_encode_from_cache = False
        products = click_products(precision, self.device)
        if fast:
            self.decoding: ClickDecoding = FastClickDecoder(self.model.prompt_encoder, self.model.mask_decoder,
                                                            products=products)
        elif precision == "bf16":
            raise ValueError('precision "bf16" needs the fast decoder (fast=True); the eager decoder is fp32')
        else:
            products = torch.float32
            self.decoding = EagerClickDecoder(self.model.prompt_encoder, self.model.mask_decoder)
        self.precision = "bf16" if products == torch.bfloat16 else "fp32"
        self.context_margin = context_margin

    @classmethod
    def from_registry(
        cls,
        name: str,
        *,
        weights: str | None = None,
        device: str = "auto",
        cache: EmbeddingCache | None = None,
        context_margin: int | None = CONTEXT_MARGIN,
        precision: Precision = "auto",
    ) -> ClickPredictor:
        """Build from a registry name (``cosas-default-click``, ``sam_vit_b``, ...) or a checkpoint path."""
        from ..models.registry import load_click_model

        model, model_id = load_click_model(name, weights=weights, device="cpu")
        return cls(model, model_id, device=device, cache=cache, context_margin=context_margin, precision=precision)

    @property
    def is_image_set(self) -> bool:
        return self.embedding is not None

    def set_image(self, image: np.ndarray, progress: Callable[[str], None] | None = None) -> None:
        """Encode ``image`` (``(H, W, 3)`` uint8; grayscale / RGBA are converted) once.

        The embedding comes from the cache when an entry for this image, model and
        preprocessing exists and verifies; otherwise it is computed and stored.
        """
        image = as_rgb_uint8(image)
        self.original_size = (image.shape[0], image.shape[1])
        key = CacheKey(image_sha256(image), self.model_id, PREPROCESS_VERSION)
        cached = self.cache.get(key) if self.cache is not None else None
        self.last_encode_from_cache = cached is not None
        if cached is None:
            if progress is not None:
                progress("encoding image")
            cached = self._encode(image)
            if self.cache is not None:
                self.cache.put(key, cached)
        self.set_embedding(cached.embedding, cached.input_size, self.original_size)

    def set_embedding(
        self, embedding: np.ndarray | torch.Tensor, input_size: tuple[int, int], original_size: tuple[int, int]
    ) -> None:
        """Use a precomputed image embedding (as ``SamPredictor.set_torch_image`` does after its
        encoder): ``embedding`` ``(1, C, h, w)`` float32 of an image of ``original_size``
        ``(rows, cols)`` resized to ``input_size`` ``(rows, cols)`` (longest side ``img_size``).
        `set_image` ends here; tests and benchmarks call it to compare decoder paths on a fixed
        embedding."""
        if isinstance(embedding, np.ndarray):
            embedding = torch.from_numpy(embedding)
        self.original_size = (int(original_size[0]), int(original_size[1]))
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.embedding = embedding.to(self.device, torch.float32)
        self._prepare_image_terms()

    @torch.inference_mode()
    def _encode(self, image: np.ndarray) -> CachedEmbedding:
        resized = self.transform.apply_image(image)
        x = torch.as_tensor(resized, device=self.device).permute(2, 0, 1)[None].float()
        embedding = self.model.image_encoder(self.model.preprocess(x))
        return CachedEmbedding(embedding.float().cpu().numpy(), (resized.shape[0], resized.shape[1]))

    @torch.inference_mode()
    def _prepare_image_terms(self) -> None:
        """Compute the prompt-independent terms once per image (the decoding's image terms, the
        resize matrices to full resolution)."""
        self.decoding.set_image(self.embedding, self.model.prompt_encoder.get_dense_pe())
        low_res = TOKEN_PIXELS * self.embedding.shape[-1]
        img_size = self.model.image_encoder.img_size
        self._resize_rows, self._resize_cols = (
            postprocess_matrix(low_res, img_size, n_in, n_out).to(self.device)
            for n_in, n_out in zip(self.input_size, self.original_size)
        )

    def _context_region(self, token_rows: slice, token_cols: slice) -> TokenRegion | None:
        """The token region the decoder attends to for a window's token block: the block and
        ``context_margin`` tokens around it, the margin inside the tokens that cover the image
        (``None`` without a margin). The block itself may hold one padding token: the bilinear
        resize to full resolution reads one low-resolution pixel past the image's last row or
        column."""
        if self.context_margin is None:
            return None
        token_size = self.model.image_encoder.img_size / self.embedding.shape[-1]
        spans = []
        for block, length in zip((token_rows, token_cols), self.input_size):
            tokens = math.ceil(length / token_size)
            spans.append(slice(max(0, block.start - self.context_margin),
                               max(block.stop, min(tokens, block.stop + self.context_margin))))
        return spans[0], spans[1]

    def _require_image(self) -> None:
        if self.embedding is None:
            raise RuntimeError("No image is set; call set_image(image) before predicting.")

    @torch.inference_mode()
    def mask_to_prompt(self, prob: np.ndarray) -> np.ndarray:
        """A mask as a mask prompt: a pure conversion (`prob_to_prompt_logits` in this image's frame).

        Args:
            prob: ``(H, W)`` probabilities in ``[0, 1]`` (or a boolean mask) at image size: the
                automatic mask's probabilities for the first click, the current mask after it.

        Returns:
            ``(1, 256, 256)`` float32 logits to pass as ``mask_prompt`` with a click.
        """
        self._require_image()
        prob = np.asarray(prob, dtype=np.float32)
        if prob.shape != self.original_size:
            raise ValueError(
                f"initial mask is {prob.shape[0]}x{prob.shape[1]} but the image is "
                f"{self.original_size[0]}x{self.original_size[1]} (rows x cols); they must match."
            )
        t = torch.from_numpy(prob)[None, None].to(self.device)
        return prob_to_prompt_logits(t, self.input_size, self.model.image_encoder.img_size)[0].cpu().numpy()

    def _validate_points(self, points_rc: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        points = np.asarray(points_rc, dtype=np.float64).reshape(-1, 2)
        labels = np.asarray(labels).reshape(-1)
        if len(points) == 0:
            raise ValueError("predict needs at least one click.")
        if len(labels) != len(points):
            raise ValueError(f"{len(points)} clicks but {len(labels)} labels; give one label per click.")
        if not np.isin(labels, (0, 1)).all():
            raise ValueError("click labels must be 1 (positive) or 0 (negative).")
        rows, cols = self.original_size
        outside = ~((points[:, 0] >= 0) & (points[:, 0] < rows) & (points[:, 1] >= 0) & (points[:, 1] < cols))
        if outside.any():
            r, c = points[np.argmax(outside)]
            raise ValueError(
                f"click at (row {r:g}, col {c:g}) is outside the {rows}x{cols} image; "
                "clicks must lie on the image."
            )
        return points, labels

    def _prompt_tensors(
        self, points_rc: np.ndarray, labels: np.ndarray, mask_prompt: np.ndarray | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Validated clicks as SAM's ``(1, N, 2)`` ``(x, y)`` coordinates in the resized frame and
        ``(1, N)`` labels, and the mask prompt as ``(1, 1, 256, 256)`` (or ``None``)."""
        self._require_image()
        points, labels = self._validate_points(points_rc, labels)
        xy = self.transform.apply_coords(points[:, ::-1].copy(), self.original_size)
        coords = torch.as_tensor(xy, dtype=torch.float32, device=self.device)[None]
        point_labels = torch.as_tensor(labels, dtype=torch.int64, device=self.device)[None]
        dense_in = None
        if mask_prompt is not None:
            dense_in = torch.as_tensor(np.asarray(mask_prompt, dtype=np.float32), device=self.device).reshape(
                1, 1, *np.shape(mask_prompt)[-2:]
            )
        return coords, point_labels, dense_in

    @torch.inference_mode()
    def predict(
        self,
        points_rc: np.ndarray,
        labels: np.ndarray,
        mask_prompt: np.ndarray | None = None,
        *,
        window: tuple[slice, slice] | None = None,
    ) -> ClickPrediction:
        """The model's logits for the clicks so far, at full resolution.

        Without a ``window``, the whole image and the next mask prompt. With one (what a local
        click reads) only the window's logits: the decoder's attention runs over every image token
        (or, with a ``context_margin``, over the tokens around the window only), only the tokens
        under the window are upscaled and only the window is interpolated to full resolution
        (``ClickDecoding.low_res_block``, `postprocess_matrix`).

        Args:
            points_rc: ``(N, 2)`` click positions ``(row, col)`` in image pixels.
            labels: ``(N,)`` 1 for positive, 0 for negative clicks.
            mask_prompt: ``(1, 256, 256)`` logits of the previous prediction (or of a mask,
                `mask_to_prompt`), or ``None``.
            window: ``(rows, cols)`` unit-step slices of image pixels inside the image
                (``refine.local_window``), or ``None``.

        Returns:
            A `ClickPrediction`: ``(H, W)`` float32 logits and the ``(1, 256, 256)`` float32
            next prompt; with a ``window``, the window's float32 logits (without a
            ``context_margin`` equal within float tolerance to the whole image's logits cropped to
            it) and no next prompt. ``ModelOutputError`` when a logit is NaN or infinite.
        """
        self._require_image()
        if window is not None:
            self._check_window(*window)
        coords, point_labels, dense_in = self._prompt_tensors(points_rc, labels, mask_prompt)
        if window is not None:
            return ClickPrediction(self._window_logits(coords, point_labels, dense_in, *window), None, window)
        low_res = self.decoding.low_res_logits(coords, point_labels, dense_in)
        full = self.model.postprocess_masks(low_res, self.input_size, self.original_size)
        return ClickPrediction(_finite(full[0, 0].float().cpu().numpy()), low_res[0].float().cpu().numpy())

    def _check_window(self, rows: slice, cols: slice) -> None:
        height, width = self.original_size
        if not (0 <= rows.start < rows.stop <= height and 0 <= cols.start < cols.stop <= width):
            raise ValueError(f"window rows {rows.start}:{rows.stop}, cols {cols.start}:{cols.stop} is not "
                             f"inside the {height}x{width} image")

    def _window_logits(
        self, coords: torch.Tensor, labels: torch.Tensor, dense_in: torch.Tensor | None, rows: slice, cols: slice
    ) -> np.ndarray:
        """The ``(rows, cols)``-sized float32 logits of one window from the prompt tensors."""
        row_weights, col_weights = self._resize_rows[rows], self._resize_cols[cols]
        token_rows, token_cols = _token_span(row_weights), _token_span(col_weights)
        context = self._context_region(token_rows, token_cols)
        block = self.decoding.low_res_block(coords, labels, dense_in, token_rows, token_cols, context)[0, 0]
        row_weights = row_weights[:, TOKEN_PIXELS * token_rows.start:TOKEN_PIXELS * token_rows.stop]
        col_weights = col_weights[:, TOKEN_PIXELS * token_cols.start:TOKEN_PIXELS * token_cols.stop]
        return _finite((row_weights @ block @ col_weights.t()).cpu().numpy())


def _finite(logits: np.ndarray) -> np.ndarray:
    """``logits`` unchanged, or ``ModelOutputError`` when any is NaN or infinite (damaged weights)."""
    if not np.isfinite(logits).all():
        raise ModelOutputError(
            "the click model returned NaN or infinite logits, so its weights are damaged; reinstall "
            "napari-cosas or pass a good checkpoint with --weights"
        )
    return logits
