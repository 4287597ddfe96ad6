"""Folder-level jobs behind the CLI: segment, score, evaluate.

Masks pair with images by file stem (see ``image_io.pair_images_and_masks``). Progress is
reported through a ``progress(done, total, name)`` callback so the CLI can show a bar and the
widget a progress signal.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Literal

import numpy as np

from . import metrics
from .evaluation import evaluate_image, image_target, instance_targets, spc
from .interaction import FIRST_CLICK, Corrector, FirstClick
from .image_io import list_images, load_image, load_mask, pair_images_and_masks, save_mask
from .predictor import ClickPredictor
from .refine import CLICK_MEMORY, LOCAL_WINDOW, PROB_THRESHOLD, ClickEffect

Progress = Callable[[int, int, str], None]
Reference = Literal["oracle", "wand"]


def segment_folder(
    segmenter, images_dir: str | Path, out_dir: str | Path, *, progress: Progress | None = None
) -> list[Path]:
    """Write ``<out_dir>/<stem>.png`` (0 / 255) with the automatic mask of every image.

    ``segmenter`` is a ``ReinSegmenter``; the mask is probability > 0.49.
    """
    out_dir = Path(out_dir)
    written = []
    files = list_images(images_dir)
    for i, path in enumerate(files):
        prob = segmenter.predict_proba(load_image(path))
        written.append(save_mask(out_dir / f"{path.stem}.png", prob > PROB_THRESHOLD))
        if progress is not None:
            progress(i + 1, len(files), path.name)
    return written


def score_folders(pred_dir: str | Path, masks_dir: str | Path, *, progress: Progress | None = None) -> dict:
    """Dice, Jaccard and COSAS score (0.5 Dice + 0.5 Jaccard) per image and their means.

    Predictions and ground-truth masks are both read as ``mask > 0`` and paired by stem.
    """
    pairs = pair_images_and_masks(pred_dir, masks_dir)
    per_image = {}
    for i, pair in enumerate(pairs):
        gt = load_mask(pair.mask) > 0
        pred = load_mask(pair.image, shape=gt.shape) > 0
        per_image[pair.name] = {
            "dice": metrics.dice(pred, gt),
            "jaccard": metrics.jaccard(pred, gt),
            "cosas_score": metrics.cosas_score(pred, gt),
        }
        if progress is not None:
            progress(i + 1, len(pairs), pair.name)
    keys = ("dice", "jaccard", "cosas_score")
    means = {k: float(np.mean([v[k] for v in per_image.values()])) for k in keys}
    return {"n_images": len(per_image), **means, "per_image": per_image}


def reference_corrector(
    reference: Reference, window: float, wand_tolerance: float | None = None
) -> Callable[[np.ndarray, np.ndarray], Corrector]:
    """``(image, gt) -> corrector`` for a reference row (``"oracle"`` or ``"wand"``)."""
    from .references import WAND_TOLERANCE, OracleCorrector, WandCorrector

    if reference == "oracle":
        return lambda _image, gt: OracleCorrector(gt)
    if reference == "wand":
        tolerance = WAND_TOLERANCE if wand_tolerance is None else wand_tolerance
        return lambda image, _gt: WandCorrector(image, tolerance=tolerance, window=window)
    raise ValueError(f'reference must be "oracle" or "wand", got {reference!r}')


def evaluate_folder(
    predictor: ClickPredictor,
    images_dir: str | Path,
    masks_dir: str | Path,
    *,
    init: str = "empty",
    objects: str = "image",
    segmenter=None,
    max_clicks: int = 20,
    effect: ClickEffect = "local",
    window: float = LOCAL_WINDOW,
    memory: int | None = CLICK_MEMORY,
    first_click: FirstClick = FIRST_CLICK,
    reference: Reference | None = None,
    wand_tolerance: float | None = None,
    progress: Progress | None = None,
) -> dict:
    """The interactive protocol (design.md) over a folder; returns the JSON-ready report.

    ``objects="image"`` treats ``mask > 0`` as one target, ``"instances"`` each label on its own.
    ``init="auto"`` starts every image target from ``segmenter``'s probabilities.
    ``reference`` (``"oracle"`` or ``"wand"``, :mod:`napari_cosas.references`) takes the clicks
    instead of ``predictor`` (which may then be ``None``), with ``window`` as the wand's window.
    """
    if init == "auto" and segmenter is None:
        raise ValueError("--init auto needs an automatic segmenter (--segmenter NAME).")
    if init == "auto" and objects == "instances":
        raise ValueError(
            "--init auto starts from one whole-image mask, which is not a mask of any single instance; "
            "use --objects image with --init auto."
        )
    pairs = pair_images_and_masks(images_dir, masks_dir)
    records, results_all, encode_total, auto_total = [], [], 0.0, 0.0
    for i, pair in enumerate(pairs):
        image = load_image(pair.image)
        labels = load_mask(pair.mask, shape=image.shape[:2])
        targets = instance_targets(labels) if objects == "instances" else image_target(labels)
        init_prob = None
        if init == "auto":
            start = time.perf_counter()
            init_prob = segmenter.predict_proba(image)
            auto_total += time.perf_counter() - start
        results, encode_seconds = evaluate_image(
            predictor, image, targets, init=init, init_prob=init_prob, max_clicks=max_clicks, effect=effect,
            window=window, memory=memory, first_click=first_click,
            reference=None if reference is None else reference_corrector(reference, window, wand_tolerance),
        )
        encode_total += encode_seconds
        results_all.extend(results)
        for r in results:
            record = asdict(r)
            record["image"] = pair.name
            record["clicks"] = [[c.row, c.col, c.is_positive] for c in r.clicks]
            records.append(record)
        if progress is not None:
            progress(i + 1, len(pairs), pair.name)
    summary = metrics.summarize(results_all, max_clicks=max_clicks)
    spc_decoder, spc_total = spc(results_all, encode_total)
    return {
        **summary,
        "spc_decoder_s": spc_decoder,
        "spc_total_s": spc_total,
        "encode_s_per_image": encode_total / max(1, len(pairs)),
        "auto_mask_s_per_image": auto_total / max(1, len(pairs)) if init == "auto" else None,
        "n_images": len(pairs),
        "init": init,
        "objects": objects,
        "max_clicks": max_clicks,
        "click_effect": effect,
        "click_window": window,
        "click_memory": memory,
        "first_click": first_click,
        "reference": reference,
        "wand_tolerance": wand_tolerance if reference == "wand" else None,
        "model_id": predictor.model_id if reference is None else reference,
        "device": str(predictor.device) if reference is None else "cpu",
        "objects_detail": records,
    }
