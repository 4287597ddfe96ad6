"""Every registered architecture builds and runs forward in its tiny random variant (timm's
test over every model; no weights, no network)."""

from __future__ import annotations

import pytest
import torch

from napari_cosas.models import registry
from napari_cosas.models.backbones import build_backbone
from napari_cosas.models.focus_refiner import FOCUS_CHANNELS, FocusRefiner
from napari_cosas.models.sam_models import IMG_SIZE, build_click_model
from napari_cosas.models.segmenter import SegmenterConfig, build_segmenter

ARCHITECTURES = registry.list_architectures()


def test_every_weights_entry_is_named_architecture_dot_tag() -> None:
    for spec in registry.list_models():
        architecture, _, tag = spec.name.partition(".")
        assert architecture == spec.architecture and tag
        assert registry.get_spec(registry.short_name(spec)) == spec
    for alias in registry.ALIASES:
        assert registry.get_spec(alias).name == registry.ALIASES[alias]


@pytest.mark.parametrize("architecture", ARCHITECTURES, ids=[a.name for a in ARCHITECTURES])
@torch.no_grad()
def test_tiny_variant_builds_and_runs_forward(architecture: registry.Architecture) -> None:
    torch.manual_seed(0)
    if architecture.kind == "click":
        model = build_click_model(architecture.tiny).eval()
        embedding = model.image_encoder(torch.zeros(1, 3, IMG_SIZE, IMG_SIZE))
        assert embedding.shape == (1, 256, 64, 64)
    elif architecture.kind == "backbone":
        model = build_backbone(architecture.tiny["backbone"]).eval()
        levels = model(torch.zeros(1, 3, 112, 112))
        assert len(levels) == 4 and all(level.ndim == 4 and level.shape[0] == 1 for level in levels)
    elif architecture.kind == "segmenter":
        model = build_segmenter(SegmenterConfig(**architecture.tiny)).eval()
        assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 1, 64, 64)
    else:
        tiny = dict(architecture.tiny)
        model = FocusRefiner(tuple(tiny.pop("widths")), **tiny).eval()
        assert model(torch.zeros(1, FOCUS_CHANNELS, 64, 64)).shape == (1, 1, 64, 64)
    assert all(torch.isfinite(p).all() for p in model.parameters())
