"""Training: what gets gradients, that weights move, checkpoints, resume, data preparation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_cosas.models.sam_models import build_tiny_sam, load_click_checkpoint, save_click_model
from napari_cosas.models.segmenter import ReinSegmenter, SegmenterConfig
from napari_cosas.training.click_training import (
    ClickTrainConfig,
    prepare_view,
    set_trainable,
    train_click_model,
    trainable_parameter_names,
)
from napari_cosas.training.mask_degrade import degrade_mask
from napari_cosas.training.segmenter_training import SegmenterTrainConfig, train_segmenter


def _pairs(n: int = 3, shape: tuple[int, int] = (96, 128)) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        image = rng.integers(0, 255, (*shape, 3), dtype=np.uint8)
        mask = np.zeros(shape, bool)
        mask[10 + i : 50 + i, 20:70] = True
        image[mask] = (image[mask] // 2).astype(np.uint8)
        out.append((image, mask))
    return out


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_decoder_scope_trains_only_the_mask_decoder(tmp_path):
    model = build_tiny_sam(decoder="enhanced")
    encoder, prompt, decoder = (_snapshot(m) for m in (model.image_encoder, model.prompt_encoder, model.mask_decoder))
    config = ClickTrainConfig(model={"arch": "tiny", "decoder": "enhanced"}, steps=2, batch_size=2,
                              views_per_image=1, max_rounds=1, checkpoint_every=1, lr=1e-3)
    summary = train_click_model(model, _pairs(), config, tmp_path, device="cpu")
    assert summary["trainable_parameters"] == sum(p.numel() for p in model.mask_decoder.parameters())
    assert all(p.requires_grad for p in model.mask_decoder.parameters())
    assert not any(p.requires_grad for p in model.image_encoder.parameters())
    assert not any(p.requires_grad for p in model.prompt_encoder.parameters())
    for before, module in ((encoder, model.image_encoder), (prompt, model.prompt_encoder)):
        assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())
    after = model.mask_decoder.state_dict()
    assert any(not torch.equal(decoder[k], after[k]) for k in decoder)


def test_scopes_name_the_expected_parameters():
    model = build_tiny_sam(decoder="plain")
    names = set(trainable_parameter_names(model, "encoder+decoder"))
    assert any(n.startswith("image_encoder.") for n in names)
    assert not any(n.startswith("prompt_encoder.") for n in names)
    assert set(trainable_parameter_names(model, "all")) == {n for n, _ in model.named_parameters()}
    params = set_trainable(model, "decoder")
    assert len(params) == len(list(model.mask_decoder.parameters()))
    with pytest.raises(ValueError, match="scope"):
        trainable_parameter_names(model, "everything")


def test_plain_decoder_trains_batched_and_reloads_as_plain(tmp_path):
    model = build_tiny_sam(decoder="plain")
    config = ClickTrainConfig(model={"arch": "tiny", "decoder": "plain"}, steps=1, batch_size=3,
                              views_per_image=1, max_rounds=2, checkpoint_every=1)
    train_click_model(model, _pairs(), config, tmp_path, device="cpu")
    save_click_model(model, tmp_path / "click.pt", {"arch": "tiny", "decoder": "plain"})
    reloaded, _ = load_click_checkpoint(tmp_path / "click.pt")
    assert type(reloaded.mask_decoder).__name__ == "MaskDecoder"


def test_click_training_resumes_from_its_checkpoint(tmp_path):
    config = ClickTrainConfig(model={"arch": "tiny", "decoder": "enhanced"}, steps=2, batch_size=2,
                              views_per_image=1, max_rounds=1, checkpoint_every=1)
    first = build_tiny_sam(decoder="enhanced")
    train_click_model(first, _pairs(), config, tmp_path, device="cpu")
    resumed = build_tiny_sam(decoder="enhanced")
    summary = train_click_model(resumed, _pairs(), config, tmp_path, device="cpu")
    assert summary["median_step_s"] != summary["median_step_s"]  # NaN: nothing left to train
    a, b = first.mask_decoder.state_dict(), resumed.mask_decoder.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    other = ClickTrainConfig(**{**config.__dict__, "lr": 0.5})
    with pytest.raises(ValueError, match="other settings"):
        train_click_model(build_tiny_sam(), _pairs(), other, tmp_path, device="cpu")


def test_a_resumed_run_may_save_at_another_interval(tmp_path):
    config = ClickTrainConfig(model={"arch": "tiny", "decoder": "enhanced"}, steps=2, batch_size=2,
                              views_per_image=1, max_rounds=1, checkpoint_every=1)
    train_click_model(build_tiny_sam(decoder="enhanced"), _pairs(), config, tmp_path, device="cpu")
    rarer_saves = ClickTrainConfig(**{**config.__dict__, "checkpoint_every": 50})
    summary = train_click_model(build_tiny_sam(decoder="enhanced"), _pairs(), rarer_saves, tmp_path, device="cpu")
    assert summary["median_step_s"] != summary["median_step_s"]  # NaN: resumed at its last step


def test_segmenter_training_keeps_the_frozen_backbone_and_saves(tmp_path):
    model_config = SegmenterConfig(backbone="test_convnext", crop=64, stride=43, head_dim=32, neck_dim=32)
    config = SegmenterTrainConfig(model=model_config.__dict__, steps=2, batch_size=2, crop=64, checkpoint_every=1)
    summary = train_segmenter([_pairs()], config, tmp_path, val=_pairs(1), device="cpu")
    assert summary["history"] and 0.0 <= summary["history"][-1]["cosas_score"] <= 1.0
    model = ReinSegmenter.load(tmp_path / "segmenter.pt")
    assert not any(k.startswith("backbone.backbone.") for k in model.trainable_state_dict())
    prob = model.predict_proba(_pairs(1)[0][0])
    assert prob.shape == (96, 128) and prob.dtype == np.float32


def test_prepare_view_puts_the_image_in_sams_frame():
    image, mask = _pairs(1, (100, 200))[0]
    img, gt, valid = prepare_view(image, mask, img_size=64)
    assert img.shape == (3, 64, 64) and img.dtype == torch.uint8
    assert gt.shape == (256, 256) and valid.shape == (256, 256)
    assert valid[:, :].any(dim=1)[:128].all() and not valid[200:].any()  # 200x100 -> 64x32, bottom padded
    assert gt[~valid].sum() == 0 and 0 < gt.max() <= 1


def test_degraded_masks_are_soft_and_differ_from_the_truth():
    gt = np.zeros((64, 64), bool)
    gt[10:40, 10:40] = True
    rng = np.random.default_rng(1)
    probs = [degrade_mask(gt, rng) for _ in range(5)]
    assert all(p.dtype == np.float32 and 0 <= p.min() and p.max() <= 1 for p in probs)
    assert any(((p > 0.5) != gt).any() for p in probs)
