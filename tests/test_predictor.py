"""ClickPredictor and its embedding cache: conversion, refusals, hit / miss / corruption."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from napari_cosas.inference.embedding_cache import CachedEmbedding, CacheKey, EmbeddingCache
from napari_cosas.io.image_io import ImageFormatError, image_sha256
from napari_cosas.models.sam_models import build_tiny_sam
from napari_cosas.inference.predictor import PREPROCESS_VERSION, ClickPredictor


class Counter:
    calls = 0


@pytest.fixture
def image():
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (120, 90, 3), dtype=np.uint8)


def _predictor(cache=None):
    model = build_tiny_sam(decoder="enhanced")
    predictor = ClickPredictor(model, "tiny-test", device="cpu", cache=cache)
    counter = Counter()

    def count(*_args) -> None:
        counter.calls += 1

    model.image_encoder.register_forward_hook(count)
    return predictor, counter


def test_predict_returns_full_mask_and_low_res_logits(image):
    predictor, _ = _predictor()
    predictor.set_image(image)
    first = predictor.predict(np.array([[60.0, 45.0]]), np.array([1]))
    mask, logits = first.mask, first.next_prompt
    assert mask.shape == (120, 90) and mask.dtype == bool
    assert logits.shape == (1, 256, 256) and logits.dtype == np.float32
    again = predictor.predict(np.array([[60.0, 45.0], [10.0, 10.0]]), np.array([1, 0]), logits).mask
    assert again.shape == (120, 90)


def test_grayscale_and_rgba_are_converted_other_shapes_refused(image):
    predictor, _ = _predictor()
    predictor.set_image(image[..., 0])
    predictor.set_image(np.concatenate([image, np.full((120, 90, 1), 255, np.uint8)], axis=-1))
    with pytest.raises(ImageFormatError, match=r"\(H, W, 3\)"):
        predictor.set_image(np.zeros((4, 120, 90, 3), np.uint8))


def test_clicks_outside_the_image_are_refused(image):
    predictor, _ = _predictor()
    predictor.set_image(image)
    with pytest.raises(ValueError, match="outside the 120x90 image"):
        predictor.predict(np.array([[120.0, 5.0]]), np.array([1]))
    with pytest.raises(ValueError, match="outside"):
        predictor.predict(np.array([[5.0, -1.0]]), np.array([0]))
    with pytest.raises(ValueError, match="one label per click"):
        predictor.predict(np.array([[5.0, 5.0]]), np.array([1, 0]))


def test_predict_before_set_image_says_what_to_do():
    predictor, _ = _predictor()
    with pytest.raises(RuntimeError, match="set_image"):
        predictor.predict(np.array([[1.0, 1.0]]), np.array([1]))


def test_initial_mask_must_match_the_image(image):
    predictor, _ = _predictor()
    predictor.set_image(image)
    prompt = predictor.mask_to_prompt(np.ones((120, 90), np.float32))
    assert prompt.shape == (1, 256, 256)
    with pytest.raises(ValueError, match="must match"):
        predictor.mask_to_prompt(np.ones((90, 120), np.float32))


def test_cache_hit_miss_and_corruption(image, tmp_path):
    cache = EmbeddingCache(tmp_path)
    predictor, counter = _predictor(cache)
    predictor.set_image(image)
    assert counter.calls == 1 and not predictor.last_encode_from_cache
    first = predictor.predict(np.array([[30.0, 30.0]]), np.array([1])).next_prompt

    fresh, fresh_counter = _predictor(cache)
    fresh.set_image(image)
    assert fresh_counter.calls == 0 and fresh.last_encode_from_cache
    np.testing.assert_array_equal(fresh.predict(np.array([[30.0, 30.0]]), np.array([1])).next_prompt, first)

    other = image.copy()
    other[0, 0] ^= 1
    fresh.set_image(other)
    assert fresh_counter.calls == 1  # another image is a miss

    entry = cache.path(CacheKey(image_sha256(image), "tiny-test", PREPROCESS_VERSION))
    group = zarr.open_group(str(entry), mode="r+")
    group["embedding"][0, 0, 0, 0] = 123.0  # corrupt the stored embedding
    corrupted, corrupted_counter = _predictor(cache)
    corrupted.set_image(image)
    assert corrupted_counter.calls == 1 and not corrupted.last_encode_from_cache
    np.testing.assert_allclose(corrupted.predict(np.array([[30.0, 30.0]]), np.array([1])).next_prompt, first, atol=1e-5)


def test_cache_rejects_entries_of_another_model(tmp_path):
    cache = EmbeddingCache(tmp_path)
    key = CacheKey("abc", "model-a", "v1")
    cache.put(key, CachedEmbedding(np.ones((1, 2, 4, 4), np.float32), (64, 48)))
    assert cache.get(key).input_size == (64, 48)
    stale = CacheKey("abc", "model-a", "v2")
    assert cache.get(stale) is None
    group = zarr.open_group(str(cache.path(key)), mode="r+")
    group.attrs["model_id"] = "model-b"
    assert cache.get(key) is None  # mismatching attributes: discarded
    assert not cache.path(key).exists()


@pytest.mark.parametrize("fast", [True, False])
def test_damaged_click_weights_give_a_clear_error_not_an_empty_mask(image, fast):
    import torch

    from napari_cosas.models.segmenter import ModelOutputError
    from napari_cosas.inference.refine import click_mask

    model = build_tiny_sam()
    with torch.no_grad():
        model.mask_decoder.output_upscaling[0].weight[0, 0, 0, 0] = float("nan")  # one flipped bit's worth
    predictor = ClickPredictor(model, "damaged", device="cpu", fast=fast)
    predictor.set_image(image)
    previous = np.zeros(image.shape[:2], dtype=bool)
    for start in (True, False):  # the whole prediction, and one window of it
        with pytest.raises(ModelOutputError, match="damaged"):
            click_mask(predictor, previous, np.array([[10.0, 12.0]]), np.array([1]), None,
                       start_from_prediction=start)
