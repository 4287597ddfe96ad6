"""Reading weights files safely: ``torch.load(weights_only=True)`` with errors that name the
file and what is wrong with it, and a check that loaded parameters are finite.

No torch at import (it is imported where a file is read), so that the registry's names and the
CLI's defaults are read without it.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["WeightsError", "check_finite", "read_weights_file"]


class WeightsError(RuntimeError):
    """A weights file is missing, cannot be downloaded or fails its checksum."""


_TORCH_PICKLE_HINT = "WeightsUnpickler error:"


def read_weights_file(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``, with a `WeightsError` naming the file and what
    is wrong with it (missing, unreadable, empty, truncated, not a PyTorch file, or holding
    Python objects that only an unsafe load would run) instead of PyTorch's exception."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise WeightsError(f"weights file {path} cannot be read ({exc.strerror or exc})") from exc
    if size == 0:
        raise WeightsError(f"weights file {path} is empty (0 bytes): copy or download it again")
    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "weights_only" in text or _TORCH_PICKLE_HINT in text:
            detail = next((line.strip() for line in text.splitlines() if _TORCH_PICKLE_HINT in line),
                          "it holds objects other than tensors and plain containers")
            raise WeightsError(
                f"weights file {path} was refused: {detail}. A file that needs arbitrary Python objects could "
                "run code when loaded, so napari-cosas never loads one. Use a checkpoint saved as a plain "
                "state dict (official checkpoints and napari-cosas's own files are)."
            ) from None
        raise WeightsError(f"{path} is not a PyTorch weights file, or it is damaged ({text})") from None
    except OSError as exc:
        raise WeightsError(f"weights file {path} cannot be read ({exc.strerror or exc})") from exc
    except Exception as exc:  # torch raises EOFError, RuntimeError, IndexError, ... for damaged files
        first_line = (str(exc).splitlines() or [""])[0]
        raise WeightsError(
            f"weights file {path} is truncated, damaged or not a PyTorch file ({type(exc).__name__}: {first_line}); "
            "download or copy it again"
        ) from None


def check_finite(module: torch.nn.Module, path: str | os.PathLike) -> None:
    """`WeightsError` naming ``path`` when a loaded parameter or buffer holds NaN or infinity
    (a damaged file: PyTorch's zip reader does not check CRCs)."""
    import torch

    for name, tensor in module.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise WeightsError(
                f"weights file {path} is damaged: {name} holds NaN or infinite values. Download or copy it "
                "again (or reinstall napari-cosas for the bundled models)."
            )
