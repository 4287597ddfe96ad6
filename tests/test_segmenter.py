"""ReinSegmenter: forward, sliding window, save / load."""

import numpy as np
import pytest
import torch

from napari_cosas.models.segmenter import ReinSegmenter, SegmenterConfig, build_segmenter
from napari_cosas.training.augment import random_crop


def _config(backbone: str = "test_convnext", **kw) -> SegmenterConfig:
    base = dict(backbone=backbone, num_tokens=8, rank=4, head_dim=32, head_heads=2,
                head_layers=2, neck_dim=16, crop=64, stride=48)
    return SegmenterConfig(**(base | kw))


def _model(backbone: str = "test_convnext", seed: int = 0, **kw) -> ReinSegmenter:
    torch.manual_seed(seed)
    return build_segmenter(_config(backbone, **kw)).eval()


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("backbone", ["test_convnext", "test_vit_dinov2", "test_sam_vit"])
def test_forward_shape(backbone: str) -> None:
    model = _model(backbone)
    out = model(torch.randn(2, 3, 64, 80))
    assert out.shape == (2, 1, 64, 80) and out.dtype == torch.float32


def test_trainable_parameters_are_rein_neck_head() -> None:
    for backbone, prefixes in [("test_convnext", ("backbone.rein.", "head.")),
                               ("test_vit_dinov2", ("backbone.rein.", "backbone.neck.", "head."))]:
        keys = _model(backbone).trainable_state_dict()
        assert all(k.startswith(prefixes) for k in keys)
        assert {p for p in prefixes if any(k.startswith(p) for k in keys)} == set(prefixes)
    unfrozen = _model(freeze_backbone=False)
    assert any(k.startswith("backbone.backbone.") for k in unfrozen.trainable_state_dict())


def test_gradient_reaches_rein_and_head_only() -> None:
    model = _model().train()
    model(torch.randn(2, 3, 64, 64)).mean().backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, name
        else:
            assert p.grad is None, name
    assert not model.backbone.backbone.training


@pytest.mark.parametrize("freeze", [True, False])
def test_save_load_round_trip(tmp_path, freeze: bool) -> None:
    model = _model(freeze_backbone=freeze)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.01)  # differ from any fresh init
    path = tmp_path / "seg.pt"
    model.save(path)
    loaded = ReinSegmenter.load(path).eval()
    assert loaded.config == model.config
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_load_rejects_wrong_files(tmp_path) -> None:
    path = tmp_path / "seg.pt"
    model = _model()
    model.save(path)
    payload = torch.load(path, weights_only=True)
    payload["state_dict"].pop("head.class_logit.weight")
    payload["state_dict"]["backbone.extra"] = torch.zeros(1)
    torch.save(payload, path)
    with pytest.raises(ValueError, match=r"head\.class_logit\.weight.*backbone\.extra"):
        ReinSegmenter.load(path)
    torch.save({"state_dict": {}}, path)
    with pytest.raises(ValueError, match="napari-cosas-segmenter/1"):
        ReinSegmenter.load(path)


def test_predict_proba_shape_dtype_range() -> None:
    model = _model(crop=128, stride=96)
    calls = []
    prob = model.predict_proba(_image(300, 700), crop=128,
                               progress=lambda done, total: calls.append((done, total)))
    assert prob.shape == (300, 700) and prob.dtype == np.float32
    assert np.all((prob >= 0) & (prob <= 1)) and np.isfinite(prob).all()
    n_windows = len(range(0, 300 - 128 + 1, 96)) + 1  # + the window snapped to the border
    n_windows *= len(range(0, 700 - 128 + 1, 96)) + 1
    assert calls[-1] == (n_windows, n_windows)
    assert model.training is False


def test_predict_proba_small_image_is_padded_with_black_as_in_training() -> None:
    """An image smaller than the crop is seen as the training crops of such images are: padded
    with zeros at the bottom and right (`augment.random_crop`), the result cropped back."""
    model = _model().train()
    image = _image(30, 50)
    prob = model.predict_proba(image, crop=64, stride=48)
    assert prob.shape == (30, 50)
    assert model.training  # mode restored
    padded, _, valid = random_crop(image, np.ones((30, 50), np.float32), 64, np.random.default_rng(0))
    assert np.array_equal(padded[:30, :50], image) and not valid[30:].any() and not valid[:, 50:].any()
    model.eval()
    with torch.no_grad():
        expected = torch.sigmoid(model(model.normalise(padded))[0, 0, :30, :50]).numpy()
    np.testing.assert_allclose(prob, expected, atol=1e-5)


def test_sliding_window_stitching() -> None:
    """Logits are averaged in overlaps; elsewhere the output is the model's on that window."""
    model = _model()
    image = _image(96, 160)
    prob = model.predict_proba(image, crop=64, stride=48, batch_size=3)
    x = model.normalise(image)
    with torch.no_grad():
        logits = {(y, x0): model(x[..., y:y + 64, x0:x0 + 64])[0, 0]
                  for y in (0, 32) for x0 in (0, 48, 96)}
    # rows 0..31 and columns 0..47: only window (0, 0)
    np.testing.assert_allclose(prob[:32, :48], torch.sigmoid(logits[0, 0][:32, :48]).numpy(),
                               atol=1e-5)
    # rows 0..31, columns 48..63: windows (0, 0) and (0, 48)
    mean = (logits[0, 0][:32, 48:64] + logits[0, 48][:32, :16]) / 2
    np.testing.assert_allclose(prob[:32, 48:64], torch.sigmoid(mean).numpy(), atol=1e-5)


def test_predict_proba_validates_input() -> None:
    model = _model()
    with pytest.raises(ValueError, match="uint8"):
        model.predict_proba(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        model.predict_proba(np.zeros((64, 64), np.uint8))
    with pytest.raises(ValueError, match="stride"):
        model.predict_proba(_image(64, 64), crop=64, stride=65)


def test_config_round_trip() -> None:
    from dataclasses import asdict
    config = _config()
    data = asdict(config) | {"mean": list(config.mean)}
    assert SegmenterConfig.from_dict(data) == config
    with pytest.raises(ValueError, match="bogus"):
        SegmenterConfig.from_dict(data | {"bogus": 1})
