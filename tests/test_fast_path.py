"""FastClickDecoder: the same output as SAM's decoder + postprocess, within float tolerance."""

import numpy as np
import pytest
import torch
from segment_anything.modeling import Sam
from segment_anything.modeling.transformer import Attention

from napari_cosas.inference.embedding_cache import EmbeddingCache
from napari_cosas.models.click_decoding import LOGIT_THRESHOLD
from napari_cosas.models.fast_decoder import FastClickDecoder, image_to_tokens, tokens_to_image
from napari_cosas.models.sam_models import build_tiny_sam
from napari_cosas.inference.predictor import ClickPredictor

ATOL = 1e-4


def _randomise(sam: Sam, seed: int = 0) -> Sam:
    """Non-default weights everywhere, non-zero gates (a trained enhanced decoder)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sam.mask_decoder.named_parameters():
            if name.endswith("gate"):
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))
            else:
                p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return sam.eval()


@pytest.fixture(scope="module", params=["plain", "enhanced"])
def sam(request) -> Sam:
    return _randomise(build_tiny_sam(decoder=request.param, seed=0))


@pytest.fixture(scope="module")
def embedding() -> torch.Tensor:
    return torch.randn(1, 256, 64, 64, generator=torch.Generator().manual_seed(1))


def _prompt(n_points: int, with_mask: bool, seed: int = 2):
    gen = torch.Generator().manual_seed(seed)
    coords = torch.rand(1, n_points, 2, generator=gen) * 1024
    labels = torch.randint(0, 2, (1, n_points), generator=gen)
    mask = 4 * torch.randn(1, 1, 256, 256, generator=gen) if with_mask else None
    return coords, labels, mask


@pytest.mark.parametrize("heads_tokens", [(8, 3), (8, 7), (8, 20)])
def test_attention_forms_match_module(heads_tokens):
    """Both re-associated attentions equal `Attention` (token-side form and fallback)."""
    heads, n_tokens = heads_tokens
    torch.manual_seed(3)
    attn = Attention(256, heads, downsample_rate=2).eval()
    tokens, tokens_v = torch.randn(n_tokens, 256), torch.randn(n_tokens, 256)
    image, image_v = torch.randn(300, 256), torch.randn(300, 256)
    with torch.inference_mode():
        ref_t2i = attn(tokens[None], image[None], image_v[None])[0]
        ref_i2t = attn(image[None], tokens[None], tokens_v[None])[0]
        torch.testing.assert_close(tokens_to_image(attn, tokens, image, image_v), ref_t2i,
                                   atol=1e-5, rtol=1e-5)
        residual = torch.randn(300, 256)
        torch.testing.assert_close(image_to_tokens(attn, residual, image, tokens, tokens_v),
                                   residual + ref_i2t, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("n_points", [1, 4, 12, 25])
@pytest.mark.parametrize("with_mask", [True, False])
def test_low_res_logits_match_decoder(sam, embedding, n_points, with_mask):
    """1-9 points use the token-side attention, 10+ the original projections; both match."""
    coords, labels, mask = _prompt(n_points, with_mask)
    dec = sam.mask_decoder
    with torch.inference_mode():
        pe = sam.prompt_encoder.get_dense_pe()
        sparse, dense = sam.prompt_encoder(points=(coords, labels), boxes=None, masks=mask)
        ref, _ = dec(embedding, pe, sparse, dense, False)  # full forward, no caching
        fast = FastClickDecoder(sam.prompt_encoder, dec)
        fast.set_image(embedding, pe)
        out = fast.low_res_logits(coords, labels, mask)
    assert out.shape == ref.shape == (1, 1, 256, 256)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=0)


def test_decode_requires_image(sam):
    with pytest.raises(RuntimeError, match="set_image"):
        FastClickDecoder(sam.prompt_encoder, sam.mask_decoder).decode(
            torch.zeros(1, 2, 256), torch.zeros(1, 256, 64, 64)
        )


def _reference_full_logits(sam, embedding, points_rc, labels, mask, original_size):
    """SAM's own path: prompt encoder, decoder forward, ``Sam.postprocess_masks``."""
    from segment_anything.utils.transforms import ResizeLongestSide

    xy = ResizeLongestSide(1024).apply_coords(points_rc[:, ::-1].copy(), original_size)
    with torch.inference_mode():
        sparse, dense = sam.prompt_encoder(
            points=(torch.as_tensor(xy, dtype=torch.float32)[None], torch.as_tensor(labels)[None]),
            boxes=None,
            masks=torch.as_tensor(mask)[None],
        )
        low, _ = sam.mask_decoder(embedding, sam.prompt_encoder.get_dense_pe(), sparse, dense, False)
        input_size = ResizeLongestSide(1024).get_preprocess_shape(*original_size, 1024)
        return sam.postprocess_masks(low, input_size, original_size)[0, 0], low[0]


@pytest.mark.parametrize("original_size", [(1500, 1500), (300, 420)])
def test_predictor_matches_sam_reference(sam, embedding, tmp_path, original_size):
    """Full-resolution logits and masks of `ClickPredictor.predict` vs SAM's path."""
    image = np.random.default_rng(0).integers(0, 256, (*original_size, 3), dtype=np.uint8)
    predictor = ClickPredictor(sam, "tiny", device="cpu", precision="fp32")
    predictor.set_image(image)
    # a fixed embedding: compare the decoder path only
    predictor.set_embedding(embedding, predictor.input_size, predictor.original_size)
    rng = np.random.default_rng(4)
    points = rng.uniform(0, min(original_size) - 1, size=(3, 2))
    labels = np.array([1, 0, 1])
    mask = (4 * rng.standard_normal((1, 256, 256))).astype(np.float32)
    full_ref, low_ref = _reference_full_logits(sam, embedding, points, labels, mask, original_size)
    prediction = predictor.predict(points, labels, mask)
    mask_out, low_out, full_out = prediction.mask, prediction.next_prompt, torch.from_numpy(prediction.logits)
    torch.testing.assert_close(torch.from_numpy(low_out), low_ref, atol=ATOL, rtol=0)
    torch.testing.assert_close(full_out, full_ref, atol=ATOL, rtol=0)
    assert mask_out.dtype == bool and mask_out.shape == original_size
    ref_mask = (full_ref > LOGIT_THRESHOLD).numpy()
    decided = (full_ref - LOGIT_THRESHOLD).abs().numpy() > ATOL
    assert (mask_out == ref_mask)[decided].all()
    assert (mask_out == ref_mask).mean() > 0.9999


@pytest.mark.parametrize("original_size", [(1500, 1500), (522, 775)])
@pytest.mark.parametrize("fast", [True, False])
def test_window_logits_are_the_full_logits_cropped(sam, embedding, original_size, fast):
    """A local click reads only its window: the window path equals the full path's crop, at the
    centre, at every border and for a single pixel (the tokens it upscales are chosen right)."""
    image = np.random.default_rng(7).integers(0, 256, (*original_size, 3), dtype=np.uint8)
    predictor = ClickPredictor(sam, "tiny", device="cpu", fast=fast, context_margin=None)
    predictor.set_image(image)
    predictor.set_embedding(embedding, predictor.input_size, predictor.original_size)
    points, labels = np.array([[100.0, 200.0], [400.0, 30.0]]), np.array([1, 0])
    mask = (4 * np.random.default_rng(8).standard_normal((1, 256, 256))).astype(np.float32)
    full = predictor.predict(points, labels, mask).logits
    height, width = original_size
    windows = [
        (slice(200, 471), slice(300, 571)),
        (slice(0, 139), slice(0, 139)),
        (slice(height - 139, height), slice(width - 139, width)),
        (slice(0, height), slice(width - 5, width)),
        (slice(77, 78), slice(301, 302)),
    ]
    for rows, cols in windows:
        window = predictor.predict(points, labels, mask, window=(rows, cols)).logits
        assert window.shape == (rows.stop - rows.start, cols.stop - cols.start)
        assert window.dtype == np.float32
        np.testing.assert_allclose(window, full[rows, cols], atol=ATOL, rtol=0)


def _context_reference(sam, embedding, points_rc, labels, mask, original_size, region):
    """SAM's decoder modules on the embedding, positional encoding and dense prompt cropped to
    the token ``region``; the region's low-resolution logits placed in a 256x256 canvas and
    post-processed as SAM does: ``(H, W)`` logits (valid inside windows whose tokens the region
    holds)."""
    from segment_anything.utils.transforms import ResizeLongestSide

    xy = ResizeLongestSide(1024).apply_coords(points_rc[:, ::-1].copy(), original_size)
    rows, cols = region
    with torch.inference_mode():
        sparse, dense = sam.prompt_encoder(
            points=(torch.as_tensor(xy, dtype=torch.float32)[None], torch.as_tensor(labels)[None]),
            boxes=None,
            masks=torch.as_tensor(mask)[None],
        )
        decoder = sam.mask_decoder
        image = decoder.image_context(embedding, sam.prompt_encoder.get_dense_pe()) \
            if hasattr(decoder, "image_context") else embedding
        crop = [t[..., rows, cols] for t in (image, sam.prompt_encoder.get_dense_pe(), dense)]
        if hasattr(decoder, "forward_with_context"):
            low, _ = decoder.forward_with_context(crop[0], crop[1], sparse, crop[2], False)
        else:
            low, _ = decoder(crop[0], crop[1], sparse, crop[2], False)
        canvas = torch.zeros(1, 1, 256, 256)
        canvas[..., 4 * rows.start:4 * rows.stop, 4 * cols.start:4 * cols.stop] = low
        input_size = ResizeLongestSide(1024).get_preprocess_shape(*original_size, 1024)
        return sam.postprocess_masks(canvas, input_size, original_size)[0, 0].numpy()


@pytest.mark.parametrize("original_size", [(580, 775), (775, 580)])
@pytest.mark.parametrize("fast", [True, False])
def test_context_margin_window_at_the_image_edge(sam, embedding, original_size, fast):
    """A window on the last rows / columns of a non-square image reads one padding token (the
    bilinear resize to full resolution reaches one low-resolution pixel past the image): a local
    click there works with any margin."""
    image = np.random.default_rng(3).integers(0, 256, (*original_size, 3), dtype=np.uint8)
    height, width = original_size
    rows, cols = slice(height - 300, height), slice(width - 300, width)
    points, labels = np.array([[height - 10.0, width - 10.0]]), np.array([1])
    for margin in (0, 8):
        predictor = ClickPredictor(sam, "tiny", device="cpu", fast=fast, context_margin=margin)
        predictor.set_image(image)
        predictor.set_embedding(embedding, predictor.input_size, predictor.original_size)
        window = predictor.predict(points, labels, None, window=(rows, cols)).logits
        assert window.shape == (300, 300) and np.isfinite(window).all()


@pytest.mark.parametrize("original_size", [(1500, 1500), (522, 775)])
@pytest.mark.parametrize("fast", [True, False])
def test_context_margin_confines_the_attention_to_the_image_tokens_near_the_window(
    sam, embedding, original_size, fast
):
    """With a ``context_margin`` the decoder attends only to the tokens near the window and never
    to the padding of a non-square image: a margin wider than the grid gives SAM's decoder on the
    tokens that cover the image; a small one gives the decoder on the window's tokens and that
    many around them, and differs from the full attention."""
    image = np.random.default_rng(7).integers(0, 256, (*original_size, 3), dtype=np.uint8)
    points, labels = np.array([[300.0, 500.0], [420.0, 400.0]]), np.array([1, 0])
    mask = (4 * np.random.default_rng(8).standard_normal((1, 256, 256))).astype(np.float32)
    rows, cols = slice(240, 480), slice(380, 600)
    outputs = {}
    for margin in (None, 100, 2):
        predictor = ClickPredictor(sam, "tiny", device="cpu", fast=fast, context_margin=margin, precision="fp32")
        predictor.set_image(image)
        predictor.set_embedding(embedding, predictor.input_size, predictor.original_size)
        outputs[margin] = predictor.predict(points, labels, mask, window=(rows, cols)).logits
    scale = 1024 / max(original_size)
    image_tokens = slice(0, -(-round(original_size[0] * scale) // 16)), slice(0, -(-round(original_size[1] * scale) // 16))
    whole = _context_reference(sam, embedding, points, labels, mask, original_size, image_tokens)
    np.testing.assert_allclose(outputs[100], whole[rows, cols], atol=ATOL, rtol=0)
    if original_size[0] == original_size[1]:
        np.testing.assert_allclose(outputs[100], outputs[None], atol=ATOL, rtol=0)
    near = tuple(slice(max(0, int(s.start * scale) // 16 - 2), min(t.stop, -(-int(np.ceil(s.stop * scale)) // 16) + 2))
                 for s, t in zip((rows, cols), image_tokens))
    local = _context_reference(sam, embedding, points, labels, mask, original_size, near)
    np.testing.assert_allclose(outputs[2], local[rows, cols], atol=ATOL, rtol=0)
    assert np.abs(outputs[2] - outputs[None]).max() > 10 * ATOL


def test_context_margin_must_not_be_negative(sam):
    with pytest.raises(ValueError, match="context_margin must be None or at least 0"):
        ClickPredictor(sam, "tiny", device="cpu", context_margin=-1)


def test_window_outside_the_image_is_refused(sam):
    predictor = ClickPredictor(sam, "tiny", device="cpu")
    predictor.set_image(np.zeros((100, 80, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="not inside the 100x80 image"):
        predictor.predict(np.array([[5.0, 5.0]]), np.array([1]), None, window=(slice(90, 110), slice(0, 10)))


def test_fast_and_eager_predictors_agree(sam, tmp_path):
    image = np.random.default_rng(5).integers(0, 256, (200, 150, 3), dtype=np.uint8)
    cache = EmbeddingCache(tmp_path)
    fast = ClickPredictor(sam, "tiny", device="cpu", cache=cache, precision="fp32")
    eager = ClickPredictor(sam, "tiny", device="cpu", cache=cache, fast=False)
    fast.set_image(image)
    eager.set_image(image)
    points, labels = np.array([[50.0, 60.0], [120.0, 20.0]]), np.array([1, 0])
    fast_out, eager_out = fast.predict(points, labels), eager.predict(points, labels)
    full_f, low_f = torch.from_numpy(fast_out.logits), torch.from_numpy(fast_out.next_prompt)
    full_e, low_e = torch.from_numpy(eager_out.logits), torch.from_numpy(eager_out.next_prompt)
    torch.testing.assert_close(low_f, low_e, atol=ATOL, rtol=0)
    torch.testing.assert_close(full_f, full_e, atol=ATOL, rtol=0)


def test_patch_encoded_once(tmp_path):
    """Opening a patch again (same or another predictor) reads the cache, never the encoder."""
    sam = build_tiny_sam(decoder="enhanced")
    calls = []
    sam.image_encoder.register_forward_hook(lambda *args: calls.append(1))
    image = np.random.default_rng(6).integers(0, 256, (1500, 1500, 3), dtype=np.uint8)
    cache = EmbeddingCache(tmp_path)
    first = ClickPredictor(sam, "tiny", device="cpu", cache=cache)
    first.set_image(image)
    assert not first.last_encode_from_cache and len(calls) == 1
    second = ClickPredictor(sam, "tiny", device="cpu", cache=cache)
    second.set_image(image)
    assert second.last_encode_from_cache and len(calls) == 1
    prediction = second.predict(np.array([[700.0, 800.0]]), np.array([1]))
    mask, low = prediction.mask, prediction.next_prompt
    assert mask.shape == (1500, 1500) and low.shape == (1, 256, 256)


@pytest.mark.parametrize("margin", [None, 8])
def test_bf16_products_give_the_fp32_mask_within_bf16_precision(sam, embedding, margin):
    """The bf16 products change the logits by about bf16's precision, not the mask: the window a
    local click reads and the whole prediction agree with fp32 wherever fp32 is not within that
    precision of the threshold."""
    original_size = (775, 522)
    image = np.random.default_rng(2).integers(0, 256, (*original_size, 3), dtype=np.uint8)
    points, labels = np.array([[300.0, 200.0], [420.0, 100.0], [250.0, 330.0]]), np.array([1, 0, 1])
    mask = (4 * np.random.default_rng(8).standard_normal((1, 256, 256))).astype(np.float32)
    window = (slice(150, 500), slice(50, 400))
    outputs = {}
    for precision in ("fp32", "bf16"):
        predictor = ClickPredictor(sam, "tiny", device="cpu", context_margin=margin, precision=precision)
        assert predictor.precision == precision
        predictor.set_image(image)
        predictor.set_embedding(embedding, predictor.input_size, predictor.original_size)
        outputs[precision] = (predictor.predict(points, labels, mask).logits,
                              predictor.predict(points, labels, mask, window=window).logits)
    for fp32, bf16 in zip(outputs["fp32"], outputs["bf16"]):
        scale = np.abs(fp32).max()
        difference = np.abs(bf16 - fp32)
        assert 0 < difference.max() < 0.02 * scale
        decided = np.abs(fp32 - LOGIT_THRESHOLD) > 0.02 * scale
        assert ((bf16 > LOGIT_THRESHOLD) == (fp32 > LOGIT_THRESHOLD))[decided].all()


def test_precision_auto_uses_bf16_only_on_a_cpu_where_it_pays(sam, tmp_path):
    """bf16 on a CPU with AVX512-BF16 and no AMX (faster there), fp32 on one with AMX (slower
    there), without bf16, or on CUDA."""
    from napari_cosas.models.devices import bf16_pays, click_products

    with_bf16, with_amx, without = tmp_path / "bf16", tmp_path / "amx", tmp_path / "plain"
    with_bf16.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n")
    with_amx.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n")
    without.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n")
    assert bf16_pays(with_bf16) and not bf16_pays(with_amx) and not bf16_pays(without)
    assert not bf16_pays(tmp_path / "absent")
    assert click_products("auto", torch.device("cuda")) == torch.float32
    assert click_products("fp32", torch.device("cpu")) == torch.float32
    assert click_products("bf16", torch.device("cpu")) == torch.bfloat16
    assert ClickPredictor(sam, "tiny", device="cpu").precision == ("bf16" if bf16_pays() else "fp32")
    with pytest.raises(ValueError, match='precision must be "auto", "fp32" or "bf16"'):
        ClickPredictor(sam, "tiny", device="cpu", precision="fp16")
    with pytest.raises(ValueError, match="needs the fast decoder"):
        ClickPredictor(sam, "tiny", device="cpu", fast=False, precision="bf16")
    assert ClickPredictor(sam, "tiny", device="cpu", fast=False).precision == "fp32"
