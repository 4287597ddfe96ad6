"""The models an annotation session uses, by registry name, loaded on first use (no torch until
then): the automatic segmenter, the click predictor and the focus refiner of the clicks.

:class:`Segmenter` is what the session, the folder jobs (``batch``) and ``demo`` need from an
automatic segmenter. Images are ``(H, W, 3)`` uint8; probabilities ``(H, W)`` float32.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ..models.registry import DEFAULT_CLICK, DEFAULT_FOCUS, DEFAULT_SEGMENTER, load_focus_refiner, load_segmenter

if TYPE_CHECKING:  # torch is imported only when a model is used
    from ..models.focus_refiner import FocusRefiner
    from .predictor import ClickPredictor

__all__ = ["ModelBundle", "Segmenter"]


class Segmenter(Protocol):
    """What the session, the folder jobs and ``demo`` need from an automatic segmenter
    (``models.segmenter.ReinSegmenter`` implements it)."""

    def predict_proba(
        self, image: np.ndarray, *, progress: Callable[[int, int], None] | None = None
    ) -> np.ndarray:
        """``(H, W, 3)`` uint8 RGB -> ``(H, W)`` float32 tumour probabilities; ``progress(done,
        total)`` after each batch of windows."""


class ModelBundle:
    """The automatic segmenter and the click predictor, loaded from the registry on first use.

    Args:
        segmenter_name, click_name: registry names (see :func:`napari_cosas.models.registry.available_models`).
        focus_name: registry name of the focus refiner of the clicks (:mod:`napari_cosas.inference.focus`),
            or ``None`` for none.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"`` (the refiner runs on the CPU).
        segmenter, predictor, refiner: ready models (tests, scripts); they skip loading.
        segmenter_id: id recorded in sidecars for an injected segmenter.
    """

    def __init__(
        self,
        segmenter_name: str = DEFAULT_SEGMENTER,
        click_name: str = DEFAULT_CLICK,
        device: str = "auto",
        *,
        focus_name: str | None = DEFAULT_FOCUS,
        segmenter: Segmenter | None = None,
        predictor: ClickPredictor | None = None,
        refiner: FocusRefiner | None = None,
        segmenter_id: str | None = None,
    ) -> None:
        self.segmenter_name = segmenter_name
        self.click_name = click_name
        self.focus_name = focus_name
        self.device = device
        self._segmenter = segmenter
        self._predictor = predictor
        self._refiner = refiner
        self._segmenter_id = segmenter_id

    @property
    def segmenter_id(self) -> str:
        return self._segmenter_id or self.segmenter_name

    @property
    def click_id(self) -> str:
        return self._predictor.model_id if self._predictor is not None else self.click_name

    def segmenter(self) -> Segmenter:
        """The ``ReinSegmenter`` (loads it on first call; raises ``WeightsError`` if missing)."""
        if self._segmenter is None:
            self._segmenter = load_segmenter(self.segmenter_name, device=self.device)
        return self._segmenter

    def predictor(self) -> ClickPredictor:
        """The ``ClickPredictor`` with an on-disk embedding cache (loads it on first call)."""
        if self._predictor is None:
            from .embedding_cache import EmbeddingCache
            from .predictor import ClickPredictor

            self._predictor = ClickPredictor.from_registry(
                self.click_name, device=self.device, cache=EmbeddingCache()
            )
        return self._predictor

    def refiner(self) -> FocusRefiner | None:
        """The focus refiner (loads it on first call), or ``None`` when the bundle has none."""
        if self._refiner is None and self.focus_name is not None:
            self._refiner = load_focus_refiner(self.focus_name)
        return self._refiner
