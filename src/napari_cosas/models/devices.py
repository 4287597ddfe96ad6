"""Choosing the torch device and the inference precision."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Literal

import torch

#: The click decoder's product precision (``ClickPredictor``'s ``precision``).
Precision = Literal["auto", "fp32", "bf16"]


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


def bf16_pays(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether bfloat16 products make the product's click faster on this CPU: it multiplies
    bfloat16 with AVX512-BF16 (the x86 flag ``avx512_bf16`` in ``cpuinfo``) and has no AMX
    (``amx_bf16``). Measured with ``benchmarks/bench_focus_click.py``: 1.23x faster on an AMD
    EPYC with AVX512-BF16 (``benchmarks/click_precision.md``), 0.97x on an Intel Xeon with AMX
    (``benchmarks/click_precision_amx.md``), where oneDNN multiplies the small matrices of a
    click on the AMX tiles. Where the file cannot be read (not Linux) the answer is ``False``."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.partition(":")[2].split())
            return "avx512_bf16" in flags and "amx_bf16" not in flags
    return False


def click_products(precision: Precision, device: torch.device) -> torch.dtype:
    """The dtype of the click decoder's image-sized products (``FastClickDecoder``'s ``products``):
    ``"fp32"`` float32, ``"bf16"`` bfloat16, ``"auto"`` bfloat16 on a CPU where it makes clicks
    faster (`bf16_pays`) and float32 elsewhere, CUDA included."""
    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        return torch.bfloat16
    if precision == "auto":
        return torch.bfloat16 if device.type == "cpu" and bf16_pays() else torch.float32
    raise ValueError(f'precision must be "auto", "fp32" or "bf16", not {precision!r}')
