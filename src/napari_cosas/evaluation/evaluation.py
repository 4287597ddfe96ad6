"""Interactive-segmentation simulation (RITM's NoC protocol) and seconds-per-click timing.

For each object the loop is RITM's ``evaluate_sample``: up to ``max_clicks`` times, place the
next click from the current prediction's errors (``clicks.next_click``), let the object's
:class:`~napari_cosas.interaction.engine.Interaction` apply it (the same engine, mask prompts and click
rules as the widget), record the IoU, and stop once it reaches ``stop_iou`` (the highest NoC
target).

Two starting points:

- ``"empty"`` (RITM): the first click is chosen on an empty prediction; the first mask prompt
  is ``None``.
- ``"auto"`` (mask correction): the starting prediction is ``init_prob > 0.49`` from the
  automatic segmenter, the first click is chosen from its errors, and the logits from
  ``model.mask_to_prompt(init_prob)`` are the first mask prompt. If the starting mask already
  reaches ``stop_iou`` no click is made (NoC 0, see ``metrics.noc``).

Two click effects (:func:`refine.mask_after_click`): ``"local"`` (the product's default: each
click changes only the region under it) and ``"global"`` (the same, and beyond the click's window
what the model is sure of). Either way the mask becomes the next mask prompt. A ``corrector`` replaces the model, e.g. the reference rows of
:mod:`napari_cosas.interaction.references`.

Coordinates are ``(row, col)``; masks are ``(H, W)`` ``bool``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

from ..inference.focus import Focus
from ..inference.refine import (
    CLICK_MEMORY,
    CONFIDENT_MARGIN,
    FOCUS_MIN_SIDE,
    FOCUS_RESOLUTION,
    FOCUS_WINDOW,
    LOCAL_WINDOW,
    ClickEffect,
)
from ..interaction.clicks import Click, next_click
from ..interaction.correctors import FIRST_CLICK, Corrector, FirstClick, ModelCorrector, PromptModel
from ..interaction.engine import Interaction
from ..models.focus_refiner import FocusRefiner
from .metrics import iou, noc

__all__ = [
    "ClickModel",
    "EvalProtocol",
    "ObjectResult",
    "evaluate_image",
    "evaluate_object",
    "image_target",
    "instance_targets",
    "spc",
]

Init = Literal["empty", "auto"]


@dataclass(frozen=True)
class EvalProtocol:
    """The interactive protocol's settings: one object shared by :func:`evaluate_object`,
    :func:`evaluate_image`, ``batch.evaluate_folder``, ``demo.run_demo`` and the CLI.

    Attributes:
        init: ``"empty"`` or ``"auto"`` (see the module docstring).
        max_clicks: click budget.
        stop_iou: stop once the IoU reaches it; keep it at the highest of ``thresholds``, or the
            NoC of a higher threshold is undercounted as a failure.
        thresholds: targets of the per-object NoC.
        effect: ``"local"`` or ``"global"`` (see the module docstring); the time of
            ``refine.click_mask`` and of turning the mask into its prompt counts as decoder time.
        window: side of a local click's window as a fraction of the longer image side.
        memory: how many of the latest clicks the model is shown (``None``: all).
        first_click: what the first local click on the automatic mask may change
            (``correctors.ModelCorrector``).
        focus_window: the focus refiner's window (``focus.Focus``), a fraction of the longer side.
        focus_margin: how confident the refiner must be for a change away from the click
            (``focus.Focus.margin``).
        focus_resolution: the refiner's pixels per longer image side (``focus.Focus.resolution``).
        focus_min_side: the focus window's smallest side in pixels (``focus.Focus.min_side``).
    """

    init: Init = "empty"
    max_clicks: int = 20
    stop_iou: float = 0.90
    thresholds: tuple[float, ...] = (0.80, 0.85, 0.90)
    effect: ClickEffect = "local"
    window: float = LOCAL_WINDOW
    memory: int | None = CLICK_MEMORY
    first_click: FirstClick = FIRST_CLICK
    focus_window: float = FOCUS_WINDOW
    focus_margin: float = CONFIDENT_MARGIN
    focus_resolution: int = FOCUS_RESOLUTION
    focus_min_side: int = FOCUS_MIN_SIDE


class ClickModel(PromptModel, Protocol):
    """What the simulator needs from a click predictor (``predictor.ClickPredictor`` implements it):
    the logits and mask prompts of ``interaction.PromptModel``, and an image to predict on."""

    def set_image(self, image: np.ndarray) -> None:
        """Encode an ``(H, W, 3)`` ``uint8`` RGB image for the following calls."""


@dataclass
class ObjectResult:
    """Simulation record of one object.

    Attributes:
        name: object name (e.g. ``"instance_3"`` or ``"image"``).
        ious: IoU after each click, in order (shorter than ``max_clicks`` when stopped early).
        initial_iou: IoU of the starting mask (``auto`` only, else ``None``).
        clicks: the clicks made, in order.
        decoder_seconds: summed wall time of the ``predict`` calls.
        n_clicks: ``len(clicks)``.
        noc: NoC per threshold, keyed by ``round(100 t)`` as a string (``"80"``, ``"85"``, ``"90"``).
    """

    name: str
    ious: list[float]
    initial_iou: float | None
    clicks: list[Click]
    decoder_seconds: float
    n_clicks: int
    noc: dict[str, int] = field(default_factory=dict)


def evaluate_object(
    model: ClickModel | None,
    gt: np.ndarray,
    protocol: EvalProtocol = EvalProtocol(),
    *,
    name: str = "object",
    init_prob: np.ndarray | None = None,
    ignore: np.ndarray | None = None,
    focus: Focus | None = None,
    corrector: Corrector | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> ObjectResult:
    """Simulate clicks on one object of the image last given to ``model.set_image``.

    Args:
        model: the click predictor.
        gt: ``(H, W)`` ground-truth mask of the object.
        protocol: init, click budget, stop IoU, NoC thresholds and how clicks act (`EvalProtocol`).
        name: stored in the result.
        init_prob: ``(H, W)`` ``float32`` probabilities of the automatic segmenter; required for
            ``protocol.init == "auto"``.
        ignore: ``(H, W)`` mask of pixels left out of click errors and IoU.
        focus: the focus refiner on this image for local clicks (``focus.Focus``), or ``None``.
        corrector: how clicks change the mask instead of ``model`` with the protocol's effect,
            window, memory, first click and ``focus`` (``model`` may then be ``None``).
        clock: seconds counter used to time each click.
    """
    init, max_clicks, stop_iou = protocol.init, protocol.max_clicks, protocol.stop_iou
    gt = np.asarray(gt, dtype=bool)
    if gt.ndim != 2:
        raise ValueError(f"gt must be a 2-D (H, W) mask, got shape {gt.shape}")
    if max_clicks < 1:
        raise ValueError(f"max_clicks must be >= 1, got {max_clicks}")
    if init == "empty":
        interaction = Interaction(gt.shape)
    elif init == "auto":
        if init_prob is None:
            raise ValueError('init="auto" needs init_prob, the automatic segmenter\'s probabilities')
        init_prob = np.asarray(init_prob, dtype=np.float32)
        if init_prob.shape != gt.shape:
            raise ValueError(f"init_prob has shape {init_prob.shape}, expected {gt.shape}")
        interaction = Interaction(gt.shape, auto_prob=init_prob)
    else:
        raise ValueError(f'init must be "empty" or "auto", got {init!r}')
    if corrector is None:
        corrector = ModelCorrector(model, effect=protocol.effect, window=protocol.window, memory=protocol.memory,
                                   first_click=protocol.first_click, focus=focus)
    initial_iou = iou(interaction.mask, gt, ignore) if init == "auto" else None

    ious: list[float] = []
    if initial_iou is None or initial_iou < stop_iou:
        for _ in range(max_clicks):
            click = next_click(gt, interaction.mask, interaction.clicker.not_clicked_mask(gt.shape), ignore)
            interaction.apply(interaction.compute(corrector, click, clock))
            ious.append(iou(interaction.mask, gt, ignore))
            if ious[-1] >= stop_iou:
                break
    clicks = list(interaction.clicker.clicks)
    return ObjectResult(
        name=name,
        ious=ious,
        initial_iou=initial_iou,
        clicks=clicks,
        decoder_seconds=sum(r.latency_s for r in interaction.records),
        n_clicks=len(clicks),
        noc={f"{round(t * 100):d}": noc(ious, t, max_clicks, initial_iou) for t in protocol.thresholds},
    )


def evaluate_image(
    model: ClickModel | None,
    image: np.ndarray,
    targets: Sequence[tuple[str, np.ndarray]],
    protocol: EvalProtocol = EvalProtocol(),
    *,
    init_prob: np.ndarray | None = None,
    ignore: np.ndarray | None = None,
    refiner: FocusRefiner | None = None,
    reference: Callable[[np.ndarray, np.ndarray], Corrector] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[list[ObjectResult], float]:
    """Encode ``image`` once, then simulate every target on it.

    Args:
        image: ``(H, W, 3)`` ``uint8`` RGB.
        targets: ``(name, (H, W) bool mask)`` pairs, e.g. from :func:`instance_targets`.
        init_prob: the image's automatic probabilities for ``init="auto"``; every target starts
            from the same map (meant for ``image_target``: with instances, the other instances
            covered by the automatic mask count as false positives of each one).
        refiner: the focus refiner of the clicks (``focus.Focus`` in ``protocol.focus_window``),
            or ``None`` for none.
        reference: ``reference(image, gt)`` builds each target's corrector instead of the model
            (``references.OracleCorrector`` / ``WandCorrector``); the image is then not encoded.
        Other arguments: as in :func:`evaluate_object`.

    Returns:
        The per-target results and the seconds spent in ``model.set_image``.
    """
    start = clock()
    if reference is None:
        model.set_image(image)
    encode_seconds = clock() - start
    results = [
        evaluate_object(
            model,
            mask,
            protocol,
            name=name,
            init_prob=init_prob,
            ignore=ignore,
            focus=None if refiner is None else Focus(refiner, image, protocol.focus_window, margin=protocol.focus_margin,
                                                     resolution=protocol.focus_resolution,
                                                     min_side=protocol.focus_min_side),
            corrector=None if reference is None else reference(image, mask),
            clock=clock,
        )
        for name, mask in targets
    ]
    return results, encode_seconds


def spc(results: Sequence[ObjectResult], encode_seconds_total: float) -> tuple[float, float]:
    """Seconds per click: ``(decoder time / clicks, (encoder + decoder time) / clicks)``.

    Both are ``nan`` when no click was made.
    """
    n_clicks = sum(r.n_clicks for r in results)
    if n_clicks == 0:
        return float("nan"), float("nan")
    decoder = sum(r.decoder_seconds for r in results)
    return decoder / n_clicks, (encode_seconds_total + decoder) / n_clicks


def instance_targets(label_mask: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """One target per label id > 0 of an ``(H, W)`` integer label image: ``("instance_<id>", mask)``."""
    labels = np.asarray(label_mask)
    if labels.ndim != 2 or not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
        raise ValueError(f"label_mask must be a 2-D integer (H, W) array, got {labels.dtype} {labels.shape}")
    return [(f"instance_{int(i)}", labels == i) for i in np.unique(labels) if i > 0]


def image_target(mask: np.ndarray, name: str = "image") -> list[tuple[str, np.ndarray]]:
    """The whole foreground ``mask > 0`` as one target, as a list (``[]`` if it has no foreground,
    since NoC is undefined for an empty object)."""
    fg = np.asarray(mask) > 0
    if fg.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {fg.shape}")
    return [(name, fg)] if fg.any() else []
