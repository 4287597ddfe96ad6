"""Reference correctors that put a click model's numbers in context (design.md, "Reference rows").

Both take the same RITM-placed clicks on the same automatic masks as the model
(``interaction.Interaction``), and neither uses a model:

- :class:`OracleCorrector`, the perfect local corrector: a click flips the whole 8-connected
  error region under it (``gt XOR mask``). It is the bound for clicks whose effect stays in one
  error region.
- :class:`WandCorrector`, a pathologist's colour wand (QuPath's wand tool): a flood fill from the
  clicked pixel over the pixels whose colour, in CIE-Lab after a Gaussian blur, lies within a
  tolerance of the clicked pixel's, inside the click's window; a positive click adds them, a
  negative one removes them.

Coordinates are ``(row, col)``; masks ``(H, W)`` bool; images ``(H, W, 3)`` uint8 RGB.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from skimage.color import rgb2lab
from skimage.filters import gaussian
from skimage.segmentation import flood

from ..inference.refine import LOCAL_WINDOW, local_window
from .correctors import ClickContext

__all__ = ["WAND_SIGMA", "WAND_TOLERANCE", "OracleCorrector", "WandCorrector"]

#: Gaussian blur (pixels) before the wand compares colours.
WAND_SIGMA = 1.5
#: The wand's CIE-Lab distance tolerance; chosen on held-out training images
#: (``benchmarks/click_effects.py``, ``benchmarks/click_effects.md``; 35 and 25 tie within 0.01 clicks).
WAND_TOLERANCE = 35.0

_EIGHT = np.ones((3, 3), dtype=bool)


@dataclass
class OracleCorrector:
    """The perfect local corrector for ground truth ``gt`` (``(H, W)`` bool)."""

    gt: np.ndarray
    effect: str = "oracle"

    def correct(self, context: ClickContext) -> np.ndarray:
        gt = np.asarray(self.gt, dtype=bool)
        previous = context.previous
        click = context.click
        errors = gt != previous
        mask = previous.copy()
        if errors[click.row, click.col]:
            regions, _ = ndimage.label(errors, structure=_EIGHT)
            region = regions == regions[click.row, click.col]
            mask[region] = gt[region]
        return mask


@dataclass
class WandCorrector:
    """The colour wand on ``image`` (``(H, W, 3)`` uint8 RGB).

    Args:
        image: the patch.
        tolerance: largest CIE-Lab distance (Delta E 1976) to the clicked pixel's colour.
        sigma: Gaussian blur, pixels, before the conversion to Lab.
        window: side of the square the fill may reach, a fraction of the longer image side
            (the local click's window, ``refine.LOCAL_WINDOW``).
    """

    image: np.ndarray
    tolerance: float = WAND_TOLERANCE
    sigma: float = WAND_SIGMA
    window: float = LOCAL_WINDOW
    effect: str = "wand"
    _lab: np.ndarray | None = field(default=None, init=False, repr=False)

    @property
    def lab(self) -> np.ndarray:
        """``(H, W, 3)`` float CIE-Lab of the blurred image, computed once."""
        if self._lab is None:
            rgb = np.asarray(self.image)
            if rgb.ndim != 3 or rgb.shape[2] != 3:
                raise ValueError(f"the wand needs an (H, W, 3) RGB image, got shape {rgb.shape}")
            self._lab = rgb2lab(gaussian(rgb, sigma=self.sigma, channel_axis=-1, preserve_range=False))
        return self._lab

    def correct(self, context: ClickContext) -> np.ndarray:
        click = context.click
        rows, cols = local_window(context.previous.shape, click.row, click.col, self.window)
        lab = self.lab[rows, cols]
        seed = (click.row - rows.start, click.col - cols.start)
        close = np.linalg.norm(lab - lab[seed], axis=-1) <= self.tolerance
        mask = context.previous.copy()
        mask[rows, cols][flood(close, seed, connectivity=1)] = click.is_positive
        return mask
