"""Rein adapter math, checked against an independent recomputation."""

import math

import pytest
import torch

from napari_cosas.models.rein import Rein, ReinStack, build_rein_stack


def _reference(rein: Rein, f: torch.Tensor, layer: int) -> torch.Tensor:
    """Direct recomputation of the design's formulas, loop over tokens, no shared code."""
    c = f.shape[-1]
    T = torch.einsum("mr,rc->mc", rein.A[layer], rein.B[layer])
    S = torch.exp(torch.einsum("bnc,mc->bnm", f, T) / math.sqrt(c))
    S = S / S.sum(-1, keepdim=True)
    W_T, b_T = rein.token_to_feat.weight, rein.token_to_feat.bias
    dF = torch.zeros_like(f)
    for j in range(1, T.shape[0]):  # token 0 (null) has no value
        dF = dF + S[:, :, j:j + 1] * (T[j] @ W_T.T + b_T)
    dF = (dF + f) @ rein.delta_feat.weight.T + rein.delta_feat.bias
    return f + rein.scale[layer] * dF


@pytest.fixture
def rein() -> Rein:
    torch.manual_seed(0)
    r = Rein(embed_dim=12, num_layers=3, num_tokens=7, rank=4, query_dim=8)
    with torch.no_grad():
        r.scale.fill_(0.7)  # make the update visible
    return r


def test_init(rein: Rein) -> None:
    fresh = Rein(embed_dim=12, num_layers=3, num_tokens=7, rank=4, query_dim=8)
    assert torch.equal(fresh.scale, torch.full((3,), 1e-3))
    assert fresh.A.abs().sum() > 0 and fresh.B.abs().sum() > 0
    assert fresh.tokens().shape == (3, 7, 12)


@pytest.mark.parametrize("layer", [0, 2])
def test_forward_matches_reference(rein: Rein, layer: int) -> None:
    f = torch.randn(2, 5, 12)
    torch.testing.assert_close(rein(f, layer), _reference(rein, f, layer))


def test_prefix_tokens_pass_through(rein: Rein) -> None:
    f = torch.randn(2, 6, 12)
    out = rein(f, 1, has_cls_token=True)
    assert torch.equal(out[:, 0], f[:, 0])
    torch.testing.assert_close(out[:, 1:], _reference(rein, f[:, 1:], 1))
    out = rein(f, 1, num_prefix_tokens=3)
    assert torch.equal(out[:, :3], f[:, :3])
    torch.testing.assert_close(out[:, 3:], _reference(rein, f[:, 3:], 1))


def test_null_token_adds_nothing(rein: Rein) -> None:
    """When the null token takes all the attention mass, dF reduces to f W_f + b_f."""
    f = torch.randn(2, 5, 12)
    with torch.no_grad():
        rein.A[0].zero_()
        rein.A[0, 0] = 1.0
        rein.B[0] = f.mean((0, 1)).repeat(4, 1) * 1e3  # T_0 aligned with every feature, huge
        # token 0's value row would be T_0 W_T + b_T: make it enormous; it must not matter
        rein.token_to_feat.bias.fill_(1e6)
    f = f + f.mean((0, 1))  # every feature positively aligned with T_0
    expected = f + rein.scale[0] * rein.delta_feat(f)
    torch.testing.assert_close(rein(f, 0), expected)


def test_shared_projections_receive_gradient_from_every_layer(rein: Rein) -> None:
    assert rein.token_to_feat.weight.shape == (12, 12)
    assert rein.delta_feat.weight.shape == (12, 12)
    n_params = sum(p.numel() for p in rein.parameters())
    per_layer = 7 * 4 + 4 * 12 + 1
    shared = 2 * (12 * 12 + 12) + (12 * 8 + 8) + (3 * 8 * 8 + 8)
    assert n_params == 3 * per_layer + shared
    for layer in range(3):
        rein.zero_grad()
        rein(torch.randn(2, 5, 12), layer).sum().backward()
        assert rein.token_to_feat.weight.grad.abs().sum() > 0
        assert rein.delta_feat.weight.grad.abs().sum() > 0
        assert rein.A.grad[layer].abs().sum() > 0
        others = [i for i in range(3) if i != layer]
        assert rein.A.grad[others].abs().sum() == 0


def test_queries(rein: Rein) -> None:
    q_layers = rein.token_to_query(rein.A @ rein.B)  # (L, m, d)
    assert q_layers.shape == (3, 7, 8)
    merged = torch.cat([q_layers.max(0).values, q_layers.mean(0), q_layers[-1]], dim=-1)
    expected = merged @ rein.merge.proj.weight.T + rein.merge.proj.bias
    torch.testing.assert_close(rein.queries(), expected)


def test_stack_per_stage() -> None:
    torch.manual_seed(0)
    stack = build_rein_stack([8, 16], num_tokens=5, rank=2, query_dim=4)
    assert isinstance(stack, ReinStack)
    f = torch.randn(1, 9, 16)
    torch.testing.assert_close(stack(f, 1), stack.reins[1](f, 0))
    assert stack(torch.randn(1, 9, 8), 0).shape == (1, 9, 8)
    assert stack.queries().shape == (5, 4)
    with pytest.raises(RuntimeError, match="ReinStack"):
        stack.reins[0].queries()


def test_bad_input_shape(rein: Rein) -> None:
    with pytest.raises(ValueError, match=r"\(B, n, 12\)"):
        rein(torch.randn(5, 12), 0)
