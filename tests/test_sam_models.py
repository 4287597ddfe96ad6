"""SAM-style click model builders and checkpoints (tiny variants only)."""

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor
from segment_anything.modeling import MaskDecoder

from napari_cosas.models.enhanced_decoder import EnhancedMaskDecoder
from napari_cosas.models.sam_models import (
    CLICK_FORMAT,
    build_click_model,
    build_convnext_sam,
    build_tiny_sam,
    convert_decoder,
    infer_sam_variant,
    load_click_checkpoint,
    load_sam_checkpoint,
    save_click_model,
)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)


@pytest.mark.parametrize("builder", [build_tiny_sam, build_convnext_sam])
def test_embedding_shape_and_img_size(builder):
    model = builder(decoder="plain")
    assert model.image_encoder.img_size == 1024
    assert isinstance(model.mask_decoder, MaskDecoder)
    with torch.no_grad():
        emb = model.image_encoder(torch.zeros(1, 3, 1024, 1024))
    assert emb.shape == (1, 256, 64, 64)


@pytest.mark.parametrize("builder", [build_tiny_sam, build_convnext_sam])
def test_sam_predictor_with_a_point(builder, image):
    predictor = SamPredictor(builder(decoder="enhanced"))
    predictor.set_image(image)
    masks, scores, low = predictor.predict(
        point_coords=np.array([[40.0, 30.0]]),  # (x, y)
        point_labels=np.array([1]),
        multimask_output=False,
    )
    assert masks.shape == (1, 120, 160) and masks.dtype == bool
    assert scores.shape == (1,) and low.shape == (1, 256, 256)
    masks2, _, _ = predictor.predict(
        point_coords=np.array([[40.0, 30.0], [100.0, 90.0]]),
        point_labels=np.array([1, 0]),
        mask_input=low,
        multimask_output=True,
    )
    assert masks2.shape == (3, 120, 160)


def test_tiny_is_deterministic_and_enhanced_matches_plain(image):
    plain, enhanced = build_tiny_sam("plain", seed=3), build_tiny_sam("enhanced", seed=3)
    assert isinstance(enhanced.mask_decoder, EnhancedMaskDecoder)
    outs = []
    for model in (plain, enhanced):
        p = SamPredictor(model)
        p.set_image(image)
        outs.append(p.predict(point_coords=np.array([[50.0, 60.0]]), point_labels=np.array([1]))[2])
    np.testing.assert_allclose(outs[0], outs[1], atol=1e-5)


def _low_res(model, image) -> np.ndarray:
    predictor = SamPredictor(model)
    predictor.set_image(image)
    return predictor.predict(point_coords=np.array([[50.0, 60.0], [90.0, 20.0]]), point_labels=np.array([1, 0]))[2]


def test_convert_decoder_keeps_the_shared_weights(image):
    """An enhanced decoder with trained (nonzero) gates made plain computes what it computes with
    every gate at zero; a plain decoder made enhanced computes what it did; neither changes kind
    when it already is one."""
    enhanced = build_tiny_sam("enhanced", seed=4)
    with torch.no_grad():
        for name, p in enhanced.mask_decoder.named_parameters():
            if "gate" in name:
                p.fill_(0.3)
    gated = _low_res(enhanced, image)
    plain, config = convert_decoder(enhanced, {"arch": "tiny", "seed": 4, "decoder": "enhanced"}, "plain")
    assert config == {"arch": "tiny", "seed": 4, "decoder": "plain"}
    assert type(plain.mask_decoder) is MaskDecoder
    as_plain = _low_res(plain, image)
    with torch.no_grad():
        for name, p in enhanced.mask_decoder.named_parameters():
            if "gate" in name:
                p.zero_()
    np.testing.assert_allclose(as_plain, _low_res(enhanced, image), atol=1e-5)
    assert np.abs(gated - as_plain).max() > 1e-3
    back, config = convert_decoder(plain, config, "enhanced")
    assert config["decoder"] == "enhanced" and isinstance(back.mask_decoder, EnhancedMaskDecoder)
    np.testing.assert_allclose(_low_res(back, image), as_plain, atol=1e-5)
    same, same_config = convert_decoder(back, config, "enhanced")
    assert same is back and same_config == config


def test_unknown_decoder_kind():
    with pytest.raises(ValueError, match="decoder"):
        build_tiny_sam(decoder="fancy")


@pytest.mark.parametrize(
    "config",
    [
        {"arch": "tiny", "seed": 1, "decoder": "enhanced", "decoder_kwargs": {"num_extra_layers": 1}},
        {"arch": "convnext", "trunk": "convnext_atto", "decoder": "plain"},
    ],
)
def test_click_checkpoint_round_trip(tmp_path, config):
    model = build_click_model(config)
    with torch.no_grad():  # make it differ from a fresh build
        for p in model.mask_decoder.parameters():
            p.add_(0.01)
    path = save_click_model(model, tmp_path / "click.pt", config)
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert raw["format"] == CLICK_FORMAT and raw["config"] == config
    loaded, loaded_config = load_click_checkpoint(path)
    assert loaded_config == config
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_click_checkpoint_rejects_wrong_format_and_keys(tmp_path):
    torch.save({"format": "something-else"}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="not a napari-cosas-click/1"):
        load_click_checkpoint(tmp_path / "x.pt")
    model = build_tiny_sam("plain")
    path = save_click_model(model, tmp_path / "c.pt", {"arch": "tiny", "decoder": "enhanced"})
    with pytest.raises(KeyError, match="missing key"):  # config says enhanced, state is plain
        load_click_checkpoint(path)
    with pytest.raises(FileNotFoundError):
        load_click_checkpoint(tmp_path / "absent.pt")


def test_load_sam_checkpoint_plain_state_into_enhanced(tmp_path):
    source = build_tiny_sam("plain", seed=5)
    path = tmp_path / "sam.pth"
    torch.save(source.state_dict(), path)
    target = build_tiny_sam("enhanced", seed=6)
    load_sam_checkpoint(target, path)
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_load_sam_checkpoint_errors_name_keys(tmp_path):
    state = build_tiny_sam("plain").state_dict()
    state.pop("prompt_encoder.not_a_point_embed.weight")
    state["image_encoder.extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(KeyError) as err:
        load_sam_checkpoint(build_tiny_sam("plain"), tmp_path / "bad.pth")
    assert "prompt_encoder.not_a_point_embed.weight" in str(err.value)
    assert "image_encoder.extra.weight" in str(err.value)


def test_infer_sam_variant():
    assert infer_sam_variant({"image_encoder.patch_embed.proj.weight": torch.zeros(1024, 3, 16, 16)}) == "vit_l"
    with pytest.raises(KeyError):
        infer_sam_variant({})
