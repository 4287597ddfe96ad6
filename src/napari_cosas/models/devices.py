"""Choosing the torch device and the inference precision."""

from __future__ import annotations

import contextlib

import torch


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """Return the torch device for ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.

    Asking for ``"cuda"`` on a machine without a usable GPU raises a ``RuntimeError`` that says
    to use ``cpu`` instead.
    """
    if isinstance(name, torch.device):
        return name
    name = (name or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("CUDA was requested but no CUDA GPU is available here; use --device cpu.")
    return device


def inference_autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on CUDA, a no-op on the CPU (full precision)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
