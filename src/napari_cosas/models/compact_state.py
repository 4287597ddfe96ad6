"""Compact storage of checkpoint state dicts: 8-bit weight matrices, float16 for the rest.

`compact_state_dict` stores every floating-point tensor with at least two dimensions and
`INT8_MIN_NUMEL` elements as int8 with one float32 scale per row (index 0 of the tensor,
symmetric, ``w ~= q * scale``; the error per weight is at most half its row's scale, i.e.
``max|row| / 254``) and every other floating-point tensor as float16. `expand_state_dict` turns
such a dict back into float32 tensors; a dict without int8 entries passes through with its
float16 tensors cast to float32, so float16 checkpoints load the same way.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

#: Key suffix of the per-row scales of an int8 tensor (``"<name>" + SCALE_SUFFIX``).
SCALE_SUFFIX = ":int8_scale"
#: Smaller tensors (biases, norms, gates, positional tables) stay float16.
INT8_MIN_NUMEL = 4096


def _quantise_rows(weight: Tensor) -> tuple[Tensor, Tensor]:
    """``(R, ...)`` float -> int8 of the same shape and ``(R,)`` float32 scales."""
    rows = weight.detach().float().reshape(weight.shape[0], -1)
    scale = rows.abs().amax(dim=1).clamp_min(torch.finfo(torch.float32).tiny) / 127.0
    q = torch.round(rows / scale[:, None]).clamp_(-127, 127).to(torch.int8)
    return q.reshape(weight.shape), scale


def compact_state_dict(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Int8 weight matrices (plus their scales) and float16 for the other float tensors."""
    out: dict[str, Tensor] = {}
    for name, tensor in state.items():
        if name.endswith(SCALE_SUFFIX):
            raise ValueError(f"state dict key {name!r} ends with the reserved suffix {SCALE_SUFFIX!r}")
        if not tensor.is_floating_point():
            out[name] = tensor
        elif tensor.dim() >= 2 and tensor.numel() >= INT8_MIN_NUMEL:
            out[name], out[name + SCALE_SUFFIX] = _quantise_rows(tensor)
        else:
            out[name] = tensor.half()
    return out


def expand_state_dict(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Inverse of `compact_state_dict`: float32 tensors under the original keys."""
    out: dict[str, Tensor] = {}
    for name, tensor in state.items():
        if name.endswith(SCALE_SUFFIX):
            continue
        scale = state.get(name + SCALE_SUFFIX)
        if scale is not None:
            shape = (-1,) + (1,) * (tensor.dim() - 1)
            out[name] = tensor.float() * scale.float().view(shape)
        elif tensor.is_floating_point():
            out[name] = tensor.float()
        else:
            out[name] = tensor
    return out
