"""Reader: the plugin's own sidecars (source image if present, mask as labels, clicks as points).

The manifest claims ``*.json`` only, and only files with ``"format": "napari-cosas-sidecar/1"``
are read (anything else is left to other readers, ``None``): PNG and TIFF files stay napari's,
so opening an image never asks which reader to use. An exported mask opens with its sidecar.
Clicks in sidecars are ``(row, col)`` image pixels, napari's order for a 2-D points layer.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .io.exports import SIDECAR_FORMAT, load_sidecar
from .io.image_io import load_image, load_mask

LayerData = tuple[Any, dict[str, Any], str]


def _is_sidecar(path: Path) -> bool:
    try:
        return json.loads(path.read_text()).get("format") == SIDECAR_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """napari reader hook: a reader function for one sidecar, else ``None``."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    p = Path(path)
    if p.suffix.lower() == ".json" and _is_sidecar(p):
        return read_sidecar
    return None


def read_sidecar(path: str | list[str]) -> list[LayerData]:
    """The source image (when its file still exists), the mask and the clicks of a sidecar."""
    p = Path(path[0] if isinstance(path, list) else path)
    data = load_sidecar(p)
    layers: list[LayerData] = []
    image_path = data["image"].get("path")
    if image_path and Path(image_path).is_file():
        layers.append((load_image(image_path), {"name": data["image"]["name"], "rgb": True}, "image"))
    mask_path = (p.parent / data["mask_file"]).resolve()
    labels = (load_mask(mask_path, shape=tuple(data["image"]["shape_rc"])) > 0).astype(np.uint8)
    layers.append((labels, {"name": f"{p.stem} mask", "opacity": 0.5}, "labels"))
    clicks = data["clicks"]
    points = np.array([[c["row"], c["col"]] for c in clicks], dtype=float).reshape(-1, 2)
    colors = ["lime" if c["positive"] else "red" for c in clicks]
    meta: dict[str, Any] = {"name": f"{p.stem} clicks", "features": {"positive": [c["positive"] for c in clicks]}}
    if colors:
        meta["face_color"] = colors
    layers.append((points, meta, "points"))
    return layers
