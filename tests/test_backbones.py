"""Backbone families: feature shapes, freezing, strict weight loading."""

import pytest
import torch

from napari_cosas.models.backbones import ReinBackbone, build_backbone

TINY = ["test_convnext", "test_vit_dinov2", "test_vit_reg_dinov2", "test_sam_vit"]
KW = dict(num_tokens=6, rank=2, query_dim=8, neck_dim=8)


def _build(name: str, **kw) -> ReinBackbone:
    torch.manual_seed(0)
    return build_backbone(name, **(KW | kw))


@pytest.mark.parametrize("name", TINY)
def test_feature_shapes(name: str) -> None:
    model = _build(name)
    feats = model(torch.randn(2, 3, 64, 96))
    assert len(feats) == 4 and len(model.out_channels) == 4 and len(model.strides) == 4
    patch = {"test_convnext": None, "test_sam_vit": 16}.get(name, 14)
    for level, (f, c) in enumerate(zip(feats, model.out_channels)):
        assert f.shape[:2] == (2, c)
        if patch is None:  # ConvNeXt: exact strides 4, 8, 16, 32
            assert f.shape[2:] == (64 // 4 // 2**level, 96 // 4 // 2**level)
        else:  # ViT grid (padded to the patch size), then x4, x2, x1, /2
            grid = (-(-64 // patch), -(-96 // patch))
            scale = (4, 2, 1, 0.5)[level]
            assert f.shape[2:] == (int(grid[0] * scale), int(grid[1] * scale))
    assert model.rein_queries().shape == (6, 8)


@pytest.mark.parametrize("name", TINY)
def test_frozen_backbone(name: str) -> None:
    model = _build(name).train()
    assert not model.backbone.training
    assert all(not p.requires_grad for p in model.backbone.parameters())
    trainable = {k.split(".")[0] for k, p in model.named_parameters() if p.requires_grad}
    assert trainable <= {"rein", "neck"} and "rein" in trainable
    feats = model(torch.randn(1, 3, 64, 64))
    (sum(f.sum() for f in feats) + model.rein_queries().sum()).backward()
    rein_grads = [p.grad for p in model.rein.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in rein_grads)
    assert all(p.grad is None for p in model.backbone.parameters())


def test_unfrozen_backbone_trains() -> None:
    model = _build("test_convnext", freeze_backbone=False).train()
    assert model.backbone.training
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("name", TINY)
def test_load_backbone_state_round_trip(name: str) -> None:
    source, target = _build(name), _build(name)
    with torch.no_grad():
        for p in source.backbone.parameters():
            p.add_(0.1)
    target.load_backbone_state(source.backbone.state_dict())
    loaded = target.backbone.state_dict()
    for k, v in source.backbone.state_dict().items():
        assert torch.equal(v, loaded[k]), k


def test_load_official_formats() -> None:
    sam = _build("test_sam_vit")
    full = {f"image_encoder.{k}": v for k, v in sam.backbone.state_dict().items()}
    full["image_encoder.neck.0.weight"] = torch.zeros(1)  # SAM's neck: not used, dropped
    full["mask_decoder.iou_token.weight"] = torch.zeros(1)
    sam.load_backbone_state(full)

    vit = _build("test_vit_dinov2")
    dinov2 = dict(vit.backbone.state_dict())
    dinov2["mask_token"] = torch.zeros(1, 32)  # official DINOv2 key, removed by timm's filter
    dinov2["norm.weight"], dinov2["norm.bias"] = torch.ones(32), torch.zeros(32)
    vit.load_backbone_state(dinov2)

    convnext = _build("test_convnext")
    timm_sd = dict(convnext.backbone.state_dict())
    timm_sd["head.norm.weight"] = torch.ones(64)
    convnext.load_backbone_state(timm_sd)


def test_load_is_strict() -> None:
    model = _build("test_convnext")
    state = dict(model.backbone.state_dict())
    state.pop("stem.0.weight")
    with pytest.raises(RuntimeError, match="stem.0.weight"):
        model.load_backbone_state(state)


def test_unknown_name() -> None:
    with pytest.raises(ValueError, match="convnext_atto"):
        build_backbone("resnet50")
