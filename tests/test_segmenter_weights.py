"""Where a segmenter's backbone weights come from: an official file (frozen, fetched by name) or
the segmenter itself (trained or fine-tuned), through training, saving and loading."""

import hashlib
from dataclasses import asdict
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from napari_cosas.evaluation import metrics
from napari_cosas.cli import main
from napari_cosas.io.image_io import save_mask
from napari_cosas.models.segmenter import ReinSegmenter, SegmenterConfig, build_segmenter
from napari_cosas.models.click_decoding import PROB_THRESHOLD
from napari_cosas.models.registry import Architecture, ModelSpec, load_segmenter
from napari_cosas.training.segmenter_training import SegmenterTrainConfig, initial_model, train_segmenter

SMALL = dict(backbone="test_convnext", num_tokens=8, rank=4, head_dim=32, head_heads=2, head_layers=2,
             neck_dim=16, crop=64, stride=48)


def _pairs(n: int = 2) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        image = rng.integers(0, 255, (80, 96, 3), dtype=np.uint8)
        mask = np.zeros((80, 96), bool)
        mask[10:50, 20:70] = True
        out.append((image, mask))
    return out


def _exported(folder: Path) -> tuple[Path, Path]:
    """`_pairs` as the widget's export writes them: ``folder/images`` and ``folder/masks``."""
    images, masks = folder / "images", folder / "masks"
    images.mkdir()
    for i, (image, mask) in enumerate(_pairs()):
        iio.imwrite(images / f"patch{i}.png", image)
        save_mask(masks / f"patch{i}.png", mask)
    return images, masks


def _backbone_params(model: ReinSegmenter) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if k.startswith("backbone.backbone.")}


@pytest.fixture()
def official_backbone(server, tmp_path, monkeypatch, register) -> dict[str, torch.Tensor]:
    """A registered backbone "tiny_official" served from 127.0.0.1; returns its weights."""
    url, www, _ = server
    torch.manual_seed(123)
    state = build_segmenter(SegmenterConfig(**SMALL)).backbone.backbone.state_dict()
    torch.save(state, www / "tiny_official.pth")
    digest = hashlib.sha256((www / "tiny_official.pth").read_bytes()).hexdigest()
    register(Architecture("test_convnext", "backbone", "test", segmenter_backbone="test_convnext"))
    register(ModelSpec(name="tiny_official", architecture="test_convnext", description="test", licence="none",
                       filename="tiny_official.pth", url=f"{url}/tiny_official.pth",
                       known_hash=f"sha256:{digest}"))
    monkeypatch.setenv("NAPARI_COSAS_CACHE", str(tmp_path / "cache"))
    return state


def test_rein_trained_on_an_official_frozen_backbone_reloads_with_it(official_backbone, tmp_path):
    model_config = SegmenterConfig(**SMALL, backbone_weights="tiny_official")
    config = SegmenterTrainConfig(model=asdict(model_config), steps=2, batch_size=2, crop=64, checkpoint_every=1)
    train_segmenter([_pairs()], config, tmp_path / "run", device="cpu")
    stored = torch.load(tmp_path / "run" / "segmenter.pt", weights_only=True)["state_dict"]
    assert stored and not any(k.startswith("backbone.backbone.") for k in stored)
    loaded = load_segmenter(tmp_path / "run" / "segmenter.pt")
    for key, value in official_backbone.items():
        torch.testing.assert_close(loaded.backbone.backbone.state_dict()[key], value, rtol=0, atol=0)
    assert not any(p.requires_grad for p in loaded.backbone.backbone.parameters())


def test_a_frozen_fine_tune_keeps_the_trained_backbone_of_its_start(tmp_path):
    torch.manual_seed(0)
    start = build_segmenter(SegmenterConfig(**(SMALL | {"freeze_backbone": False})))
    start.save(tmp_path / "start.pt")
    frozen = SegmenterConfig(**SMALL)
    config = SegmenterTrainConfig(model=asdict(frozen), init_from=str(tmp_path / "start.pt"), steps=2,
                                  batch_size=2, crop=64, checkpoint_every=1)
    train_segmenter([_pairs()], config, tmp_path / "run", device="cpu")
    tuned = ReinSegmenter.load(tmp_path / "run" / "segmenter.pt").eval()
    assert tuned.config.freeze_backbone and tuned.config.backbone_weights is None
    before, after = _backbone_params(start), _backbone_params(tuned)
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert any(not torch.equal(start.state_dict()[k], v) for k, v in tuned.state_dict().items()
               if k.startswith("head."))


def test_a_frozen_random_backbone_is_stored_so_the_file_reloads_identically(tmp_path):
    model = build_segmenter(SegmenterConfig(**SMALL)).eval()
    model.save(tmp_path / "seg.pt")
    torch.manual_seed(99)  # a fresh build would draw other random weights
    loaded = ReinSegmenter.load(tmp_path / "seg.pt").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_init_from_refuses_other_backbone_weights(official_backbone, tmp_path):
    build_segmenter(SegmenterConfig(**SMALL)).save(tmp_path / "start.pt")
    config = SegmenterTrainConfig(model=asdict(SegmenterConfig(**SMALL, backbone_weights="tiny_official")),
                                  init_from=str(tmp_path / "start.pt"))
    with pytest.raises(ValueError, match="brings its own backbone weights.*--backbone-weights tiny_official"):
        initial_model(config)


def test_train_segmenter_cli_names_backbone_mistakes(tmp_path, capsys, official_backbone):
    args = ["train-segmenter", "--data", str(tmp_path), str(tmp_path), "--out", str(tmp_path / "run")]
    for extra, message in ((["--backbone-weights", "cosas-default-click"], "no backbone for the segmenter"),
                           (["--backbone-weights", "tiny_official", "--backbone", "convnext_atto"],
                            "holds a 'test_convnext' backbone, not 'convnext_atto'")):
        with pytest.raises(SystemExit) as exit_info:
            main(args + extra)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err



def test_fine_tuning_the_default_segmenter_on_exported_corrections(tmp_path):
    """The corrections loop: masks written as the export writes them, the shipped segmenter as
    the start, its backbone frozen; the result loads as a segmenter with that backbone."""
    images, masks = _exported(tmp_path)
    out = tmp_path / "run"
    assert main(["train-segmenter", "--data", str(images), str(masks), "--out", str(out),
                 "--init-from", "cosas-default-segmenter", "--steps", "1", "--batch-size", "1",
                 "--crop", "64", "--workers", "0", "--device", "cpu"]) == 0
    default = load_segmenter("cosas-default-segmenter")
    tuned = load_segmenter(str(out / "segmenter.pt"))
    assert tuned.config.freeze_backbone and tuned.config.backbone == default.config.backbone
    before, after = _backbone_params(default), _backbone_params(tuned)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_a_fine_tune_keeps_its_start_when_no_step_validates_better(tmp_path):
    torch.manual_seed(0)
    start = build_segmenter(SegmenterConfig(**SMALL))
    start.save(tmp_path / "start.pt")
    config = SegmenterTrainConfig(model=asdict(SegmenterConfig(**SMALL)), init_from=str(tmp_path / "start.pt"),
                                  steps=2, batch_size=2, crop=64, lr=10.0, val_every=1, checkpoint_every=1)
    summary = train_segmenter([_pairs()], config, tmp_path / "run", val=_pairs(1), device="cpu")
    history = summary["history"]
    assert [h["step"] for h in history] == [0, 1, 2]
    best = max(history, key=lambda h: h["cosas_score"])
    kept = ReinSegmenter.load(tmp_path / "run" / "segmenter.pt").eval()
    image, mask = _pairs(1)[0]
    assert metrics.cosas_score(kept.predict_proba(image) > PROB_THRESHOLD, mask) == pytest.approx(best["cosas_score"])


def test_rein_on_a_frozen_official_sam_encoder_from_the_cli(server, tmp_path, monkeypatch, register):
    """``--backbone-weights`` also takes an official SAM checkpoint (a click spec): its image
    encoder becomes the frozen backbone, and ``--backbone`` follows from it."""
    url, www, _ = server
    torch.manual_seed(5)
    encoder = build_segmenter(SegmenterConfig(**(SMALL | {"backbone": "test_sam_vit"}))).backbone.backbone
    checkpoint = {f"image_encoder.{k}": v for k, v in encoder.state_dict().items()}
    checkpoint["mask_decoder.iou_token.weight"] = torch.zeros(1, 8)
    torch.save(checkpoint, www / "tiny_sam.pth")
    digest = hashlib.sha256((www / "tiny_sam.pth").read_bytes()).hexdigest()
    register(Architecture("test_sam_vit", "click", "test", segmenter_backbone="test_sam_vit"))
    register(ModelSpec(name="tiny_sam", architecture="test_sam_vit", description="test", licence="none",
                       filename="tiny_sam.pth", url=f"{url}/tiny_sam.pth", known_hash=f"sha256:{digest}"))
    monkeypatch.setenv("NAPARI_COSAS_CACHE", str(tmp_path / "cache"))
    images, masks = _exported(tmp_path)
    out = tmp_path / "run"
    assert main(["train-segmenter", "--data", str(images), str(masks), "--out", str(out), "--backbone-weights",
                 "tiny_sam", "--steps", "1", "--batch-size", "1", "--crop", "64", "--workers", "0",
                 "--device", "cpu"]) == 0
    trained = load_segmenter(out / "segmenter.pt")
    assert trained.config.backbone == "test_sam_vit" and trained.config.backbone_weights == "tiny_sam"
    for key, value in encoder.state_dict().items():
        torch.testing.assert_close(trained.backbone.backbone.state_dict()[key], value, rtol=0, atol=0)
