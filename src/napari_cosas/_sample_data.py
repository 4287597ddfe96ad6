"""Sample data: three EBHI-Seg adenocarcinoma patches (224x224 RGB, 400x) with ground truth.

Images and masks are from EBHI-Seg (CC BY 4.0): Shi L. et al., "EBHI-Seg: A novel enteroscope
biopsy histopathological hematoxylin and eosin image dataset for image segmentation tasks",
Frontiers in Medicine (2023); data doi:10.6084/m9.figshare.21540159. Masks were thresholded at
>= 128 to a binary tumour region.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .io.image_io import load_image, load_mask

SAMPLE_DIR = Path(__file__).parent / "sample_data"
SAMPLES = (
    "adenocarcinoma__GT2001837-1-400-001",
    "adenocarcinoma__GT2012223-4-400-002",
    "adenocarcinoma__GT2012329-1-400-001",
)
ATTRIBUTION = "EBHI-Seg (CC BY 4.0), Shi L. et al., Frontiers in Medicine 2023, doi:10.6084/m9.figshare.21540159"


def sample_path(index: int) -> Path:
    """Path of sample ``index`` (0, 1 or 2)'s image."""
    return SAMPLE_DIR / f"{SAMPLES[index]}.png"


def _sample(index: int) -> list[tuple[Any, dict, str]]:
    """The image ``(224, 224, 3)`` uint8 and its ground truth ``(224, 224)`` uint8 labels (1 = tumour)."""
    path = sample_path(index)
    image = load_image(path)
    truth = (load_mask(SAMPLE_DIR / f"{SAMPLES[index]}_mask.png", shape=image.shape[:2]) > 0).astype("uint8")
    meta = {"metadata": {"attribution": ATTRIBUTION, "path": str(path)}}
    return [
        (image, {"name": SAMPLES[index], "rgb": True, **meta}, "image"),
        (truth, {"name": f"{SAMPLES[index]} ground truth", "opacity": 0.4, "visible": False, **meta}, "labels"),
    ]


def sample_1() -> list[tuple[Any, dict, str]]:
    return _sample(0)


def sample_2() -> list[tuple[Any, dict, str]]:
    return _sample(1)


def sample_3() -> list[tuple[Any, dict, str]]:
    return _sample(2)
