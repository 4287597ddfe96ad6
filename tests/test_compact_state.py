"""Compact checkpoint storage: int8 weight matrices round-trip within half a quantisation step."""

import pytest
import torch

from napari_cosas.models.compact_state import (
    INT8_MIN_NUMEL,
    SCALE_SUFFIX,
    compact_state_dict,
    expand_state_dict,
)
from napari_cosas.models.sam_models import build_tiny_sam, load_click_checkpoint, save_click_model


def _state() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {
        "linear.weight": torch.randn(128, 64, generator=gen),
        "conv.weight": torch.randn(32, 16, 3, 3, generator=gen),
        "zero_row.weight": torch.cat([torch.zeros(1, 4096), torch.randn(1, 4096, generator=gen)]),
        "linear.bias": torch.randn(128, generator=gen),
        "small.weight": torch.randn(2, 8, generator=gen),
        "steps": torch.tensor(7),
    }


def test_round_trip_within_half_a_step_per_row():
    state = _state()
    stored = compact_state_dict(state)
    assert stored["linear.weight"].dtype == torch.int8
    assert stored["conv.weight"].dtype == torch.int8 and stored["conv.weight"].shape == (32, 16, 3, 3)
    assert stored["linear.bias"].dtype == torch.float16 and stored["small.weight"].dtype == torch.float16
    assert stored["steps"].dtype == torch.int64
    restored = expand_state_dict(stored)
    assert set(restored) == set(state)
    for name in ("linear.weight", "conv.weight", "zero_row.weight"):
        rows = state[name].reshape(state[name].shape[0], -1)
        half_step = rows.abs().amax(dim=1) / 254
        error = (restored[name] - state[name]).reshape(rows.shape).abs().amax(dim=1)
        assert (error <= half_step * (1 + 1e-5) + 1e-12).all(), name
        assert restored[name].dtype == torch.float32
    assert torch.equal(restored["zero_row.weight"][0], torch.zeros(4096))
    torch.testing.assert_close(restored["linear.bias"], state["linear.bias"], atol=1e-3, rtol=1e-3)
    assert torch.equal(restored["steps"], state["steps"])


def test_small_and_vector_tensors_stay_float16():
    stored = compact_state_dict({"v": torch.randn(INT8_MIN_NUMEL), "m": torch.randn(2, INT8_MIN_NUMEL // 2 - 1)})
    assert {t.dtype for t in stored.values()} == {torch.float16}


def test_reserved_suffix_rejected():
    with pytest.raises(ValueError, match="reserved"):
        compact_state_dict({"x" + SCALE_SUFFIX: torch.ones(2, 2)})


def test_compacted_click_checkpoint_loads(tmp_path):
    model = build_tiny_sam(decoder="enhanced", seed=0)
    path = save_click_model(model, tmp_path / "click.pt", {"arch": "tiny", "decoder": "enhanced"})
    payload = torch.load(path, weights_only=True)
    payload["state_dict"] = compact_state_dict(payload["state_dict"])
    torch.save(payload, tmp_path / "compact.pt")
    loaded, _ = load_click_checkpoint(tmp_path / "compact.pt")
    for (name, p), q in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert q.dtype == p.dtype, name
        torch.testing.assert_close(q, p, atol=p.abs().max().item() / 254 + 1e-3, rtol=0)
