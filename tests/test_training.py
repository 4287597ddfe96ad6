"""Training: what gets gradients, that weights move, checkpoints, resume, data preparation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_cosas.models.sam_models import build_tiny_sam, load_click_checkpoint, save_click_model
from napari_cosas.models.segmenter import ReinSegmenter, SegmenterConfig
from napari_cosas.training.click_simulation import prepare_view
from napari_cosas.training.click_training import (
    ClickTrainConfig,
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


def test_bf16_training_runs_on_the_cpu_from_float16_cached_views(tmp_path):
    """``precision="bf16"`` on the CPU: the float16 encoder cache goes through CPU autocast (it
    raised "Unexpected floating ScalarType" before), the loss is finite and the decoder learns."""
    model = build_tiny_sam(decoder="enhanced")
    before = _snapshot(model.mask_decoder)
    config = ClickTrainConfig(model={"arch": "tiny", "decoder": "enhanced"}, steps=2, batch_size=2,
                              views_per_image=1, max_rounds=1, checkpoint_every=1, lr=1e-3)
    summary = train_click_model(model, _pairs(), config, tmp_path, device="cpu", precision="bf16")
    assert summary["precision"] == "bf16" and np.isfinite(summary["final_loss"])
    assert all(p.dtype == torch.float32 for p in model.parameters())
    after = model.mask_decoder.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    with pytest.raises(ValueError, match="precision"):
        train_click_model(model, _pairs(), config, tmp_path, device="cpu", precision="fp16")


def test_train_decoder_cli_makes_an_enhanced_start_plain(tmp_path):
    """``train-decoder --start-from <enhanced> --decoder plain`` trains and saves a plain decoder
    holding the start's shared weights; without ``--decoder`` the start's kind is kept."""
    import imageio.v3 as iio
    from segment_anything.modeling import MaskDecoder

    from napari_cosas.cli import main
    from napari_cosas.models.enhanced_decoder import EnhancedMaskDecoder
    from napari_cosas.models.sam_models import load_click_checkpoint, save_click_model

    for kind in ("images", "masks"):
        (tmp_path / kind).mkdir()
    for i, (image, mask) in enumerate(_pairs()):
        iio.imwrite(tmp_path / "images" / f"p{i}.png", image)
        iio.imwrite(tmp_path / "masks" / f"p{i}.png", mask.astype(np.uint8) * 255)
    config = {"arch": "tiny", "seed": 2, "decoder": "enhanced"}
    save_click_model(build_tiny_sam("enhanced", seed=2), tmp_path / "start.pt", config)
    common = ["train-decoder", "--data", str(tmp_path / "images"), str(tmp_path / "masks"), "--start-from",
              str(tmp_path / "start.pt"), "--steps", "1", "--batch-size", "2", "--views", "1", "--max-rounds", "1",
              "--device", "cpu"]
    assert main([*common, "--out", str(tmp_path / "plain"), "--decoder", "plain"]) == 0
    model, saved = load_click_checkpoint(tmp_path / "plain" / "click.pt")
    assert saved["decoder"] == "plain" and type(model.mask_decoder) is MaskDecoder
    assert main([*common, "--out", str(tmp_path / "kept")]) == 0
    model, saved = load_click_checkpoint(tmp_path / "kept" / "click.pt")
    assert saved["decoder"] == "enhanced" and isinstance(model.mask_decoder, EnhancedMaskDecoder)


def test_gates_learn_at_their_own_rate(tmp_path):
    """``gate_lr_scale``: with the same seed and session, the enhanced decoder's gates move about
    that many times further than at the common learning rate; the other weights alike."""
    moved = {}
    for scale in (1.0, 20.0):
        model = build_tiny_sam(decoder="enhanced")
        before = _snapshot(model.mask_decoder)
        config = ClickTrainConfig(model={"arch": "tiny", "decoder": "enhanced"}, steps=1, batch_size=2,
                                  views_per_image=1, max_rounds=1, checkpoint_every=1, lr=1e-3, gate_lr_scale=scale)
        train_click_model(model, _pairs(), config, tmp_path / str(scale), device="cpu")
        after = model.mask_decoder.state_dict()
        moved[scale] = {k: float((after[k] - before[k]).abs().max()) for k in before if k.endswith("gate")}
        moved[scale]["other"] = float((after["iou_token.weight"] - before["iou_token.weight"]).abs().max())
    for name in moved[1.0]:
        ratio = moved[20.0][name] / moved[1.0][name]
        assert (0.9 < ratio < 1.1) if name == "other" else (15 < ratio < 25), (name, ratio)


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


def test_encoded_views_are_stored_and_read_back_by_the_next_run(tmp_path, monkeypatch):
    from napari_cosas.training import click_training

    calls = []
    build = click_training.build_views
    monkeypatch.setattr(click_training, "build_views", lambda *a, **k: calls.append(1) or build(*a, **k))
    config = ClickTrainConfig(steps=1, batch_size=2, max_rounds=1, checkpoint_every=1)
    torch.manual_seed(0)
    model = build_tiny_sam(decoder="enhanced")
    split = click_training.EncoderSplit(model.image_encoder, "decoder")
    path = tmp_path / "views.pt"
    first = click_training.cached_views(path, _pairs(), model, split, config, device=torch.device("cpu"))
    again = click_training.cached_views(path, _pairs(), model, split, config, device=torch.device("cpu"))
    assert len(calls) == 1 and path.exists()
    for a, b in zip(first, again):
        assert torch.equal(a.source, b.source) and torch.equal(a.gt, b.gt) and torch.equal(a.valid, b.valid)
    other = _pairs()
    other[0][1][0, 0] = ~other[0][1][0, 0]  # one mask pixel changed: encoded again
    click_training.cached_views(path, other, model, split, config, device=torch.device("cpu"))
    assert len(calls) == 2


def test_the_shared_image_context_decodes_as_the_full_decoder():
    from napari_cosas.training.click_simulation import ClickSimulator
    from napari_cosas.training.click_training import EncoderSplit

    torch.manual_seed(0)
    model = build_tiny_sam(decoder="enhanced").eval()
    with torch.no_grad():
        model.mask_decoder.global_attn.gate.fill_(0.5)  # the global attention acts
    sim = ClickSimulator(model, EncoderSplit(model.image_encoder, "decoder"), ClickTrainConfig(), np.random.default_rng(0))
    size = model.image_encoder.img_size // 16
    embedding = torch.randn(2, 256, size, size)
    points = [[(10, 12, True), (40, 41, False)], [(100, 3, True), (7, 7, True)]]
    with torch.no_grad():
        shared = sim.decode(sim.context(embedding), points, None)
        coords = torch.tensor([[[(c + 0.5) * sim.scale - 0.5, (r + 0.5) * sim.scale - 0.5] for r, c, _ in p]
                               for p in points])
        labels = torch.tensor([[int(q) for _, _, q in p] for p in points])
        sparse, dense = model.prompt_encoder(points=(coords, labels), boxes=None, masks=None)
        full, _ = model.mask_decoder(embedding, model.prompt_encoder.get_dense_pe(), sparse, dense, False)
    torch.testing.assert_close(shared, full, rtol=0, atol=0)


def test_mask_prompts_and_click_focus_follow_the_product_s_local_clicks():
    from napari_cosas.inference.predictor import clipped_logits
    from napari_cosas.training.click_simulation import ClickSimulator, TrainView
    from napari_cosas.training.click_training import EncoderSplit

    torch.manual_seed(0)
    model = build_tiny_sam(decoder="enhanced").eval()
    views = []
    for image, mask in _pairs(2):
        _img, gt, valid = prepare_view(image, mask, model.image_encoder.img_size)
        views.append(TrainView(torch.zeros(1), gt, valid))
    size = model.image_encoder.img_size // 16
    context = torch.randn(2, 256, size, size)
    config = ClickTrainConfig(max_rounds=3, p_auto_start=0.0, p_mask_prompt=1.0, click_focus=2.0)
    sim = ClickSimulator(model, EncoderSplit(model.image_encoder, "decoder"), config, np.random.default_rng(3))
    points, prompt = sim.session(views, context)
    while len(points[0]) == 1:  # a session with at least one no-gradient round
        points, prompt = sim.session(views, context)
    # the prompt is a binarised mask's, as the widget gives a local click
    binary = torch.isin(prompt, clipped_logits(torch.tensor([0.0, 1.0])))
    assert bool(binary.all())
    weights = sim.loss_weights(views, points)
    r, c, _ = points[0][-1]
    assert weights[0, r, c] == 3.0 and weights[0][views[0].valid].min() == 1.0
    assert float(weights[0].sum()) > float(views[0].valid.sum())


def test_datasets_are_drawn_equally_often(tmp_path, monkeypatch):
    from napari_cosas.training import click_training

    groups = click_training._view_groups([0, 0, 0, 1], 4, 2)
    assert [g.tolist() for g in groups] == [[0, 1, 2, 3, 4, 5], [6, 7]]
    drawn = []
    step = click_training.train_step
    monkeypatch.setattr(click_training, "train_step", lambda sim, batch, *a, **k: drawn.extend(batch) or step(sim, batch, *a, **k))
    config = ClickTrainConfig(steps=6, batch_size=4, max_rounds=0, views_per_image=1, checkpoint_every=6)
    model = build_tiny_sam(decoder="enhanced")
    pairs = _pairs(4)  # three images in the first dataset, one in the second
    train_click_model(model, pairs, config, tmp_path, dataset_of=[0, 0, 0, 1], device="cpu")
    small_gt = prepare_view(*pairs[3], model.image_encoder.img_size)[1]
    share = np.mean([torch.equal(v.gt, small_gt) for v in drawn])
    assert len(drawn) == 24 and 0.25 < share < 0.75, share  # a quarter of the images, half of the draws
