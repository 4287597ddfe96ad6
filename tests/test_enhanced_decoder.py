"""EnhancedMaskDecoder: identical to the plain decoder at initialisation, loadable from it."""

import pytest
import torch
from segment_anything.modeling import MaskDecoder, TwoWayTransformer

from napari_cosas.models.enhanced_decoder import EnhancedMaskDecoder


@pytest.fixture(scope="module")
def plain() -> MaskDecoder:
    torch.manual_seed(0)
    dec = MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
        transformer_dim=256,
    )
    with torch.no_grad():  # random, non-default weights everywhere
        for p in dec.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return dec.eval()


def _inputs(n_prompts: int = 3, side: int = 16):
    g = torch.Generator().manual_seed(1)
    return (
        torch.randn(1, 256, side, side, generator=g),
        torch.randn(1, 256, side, side, generator=g),
        torch.randn(n_prompts, 4, 256, generator=g),
        torch.randn(n_prompts, 256, side, side, generator=g),
    )


@pytest.mark.parametrize("multimask", [True, False])
@pytest.mark.parametrize("extra_init", ["copy_last", "random"])
def test_identical_to_plain_at_init(plain, multimask, extra_init):
    enhanced = EnhancedMaskDecoder.from_sam(plain, extra_init=extra_init).eval()
    args = _inputs()
    with torch.no_grad():
        m0, i0 = plain(*args, multimask)
        m1, i1 = enhanced(*args, multimask)
    assert m1.shape == m0.shape == (3, 3 if multimask else 1, 64, 64)
    assert i1.shape == i0.shape
    torch.testing.assert_close(m1, m0, atol=1e-5, rtol=0)
    torch.testing.assert_close(i1, i0, atol=1e-5, rtol=0)


def test_context_path_matches_forward(plain):
    enhanced = EnhancedMaskDecoder.from_sam(plain).eval()
    with torch.no_grad():
        enhanced.global_attn.gate.fill_(0.5)
        emb, pe, sparse, dense = _inputs()
        ctx = enhanced.image_context(emb, pe)
        assert ctx.shape == emb.shape
        a = enhanced(emb, pe, sparse, dense, True)
        b = enhanced.forward_with_context(ctx, pe, sparse, dense, True)
    torch.testing.assert_close(a[0], b[0])
    torch.testing.assert_close(a[1], b[1])


@pytest.mark.parametrize(
    "gate", ["global_attn.gate", "extra_layers.0.query_gate", "extra_layers.1.key_gate"]
)
def test_gates_change_output(plain, gate):
    enhanced = EnhancedMaskDecoder.from_sam(plain, extra_init="random").eval()
    args = _inputs()
    with torch.no_grad():
        before = enhanced(*args, True)[0]
        enhanced.get_parameter(gate).fill_(0.5)
        after = enhanced(*args, True)[0]
    assert (after - before).abs().max() > 1e-3


def test_original_untouched_and_weights_copied(plain):
    ref = {k: v.clone() for k, v in plain.state_dict().items()}
    enhanced = EnhancedMaskDecoder.from_sam(plain)
    with torch.no_grad():
        enhanced.iou_token.weight.add_(1.0)
    for k, v in plain.state_dict().items():
        assert torch.equal(v, ref[k]), k
    assert not isinstance(plain, EnhancedMaskDecoder)


def test_new_parameters_and_state_loading(plain):
    enhanced = EnhancedMaskDecoder.from_sam(plain, num_extra_layers=2)
    names = enhanced.new_parameter_names()
    assert names and all(n.startswith(("global_attn.", "extra_layers.")) for n in names)
    assert set(enhanced.state_dict()) - set(names) == set(plain.state_dict())
    assert enhanced.num_added_parameters == sum(
        enhanced.get_parameter(n).numel() for n in names
    )
    fresh = EnhancedMaskDecoder.from_sam(plain, extra_init="random")
    fresh.load_sam_decoder_state(plain.state_dict())  # only the new keys missing: fine
    fresh.load_sam_decoder_state(enhanced.state_dict())  # full enhanced state: fine
    partial = dict(plain.state_dict())
    partial.pop("iou_token.weight")
    with pytest.raises(KeyError, match="iou_token.weight"):
        fresh.load_sam_decoder_state(partial)
    with pytest.raises(KeyError, match="unexpected"):
        fresh.load_sam_decoder_state({**plain.state_dict(), "bogus": torch.zeros(1)})


def test_options_without_new_parts(plain):
    enhanced = EnhancedMaskDecoder.from_sam(plain, num_extra_layers=0, global_attention=False)
    assert enhanced.new_parameter_names() == []
    emb, pe, *_ = _inputs()
    assert enhanced.image_context(emb, pe) is emb


def test_gradients_reach_gates(plain):
    enhanced = EnhancedMaskDecoder.from_sam(plain).train()
    masks, iou = enhanced(*_inputs(n_prompts=1), False)
    (masks.mean() + iou.mean()).backward()
    for name in ("global_attn.gate", "extra_layers.0.query_gate", "extra_layers.0.key_gate"):
        assert enhanced.get_parameter(name).grad.abs().sum() > 0, name
