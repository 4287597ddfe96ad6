"""Folder-level jobs behind the CLI: segment, score, evaluate.

Masks pair with images by file stem (see ``image_io.pair_images_and_masks``). Progress is
reported through a ``progress(done, total, name)`` callback so the CLI can show a bar and the
widget a progress signal.

A file that cannot be used (unreadable, damaged, wrong size) does not stop a job: it is listed
in the result's ``skipped`` entries (``{"file", "reason"}``) and the job carries on; the CLI
reports them and exits non-zero. Problems with the models or the output folder do stop it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from ..interaction.correctors import Corrector
from ..io.image_io import (
    ImageFormatError,
    files_by_stem,
    load_image,
    load_mask,
    masks_by_name,
    pair_images_and_masks,
    save_mask,
)
from ..models.click_decoding import PROB_THRESHOLD
from . import metrics
from .evaluate_report import EvaluateReport

if TYPE_CHECKING:  # torch loads only for the jobs that run a model (score is pure numpy)
    from ..inference.model_bundle import Segmenter
    from ..inference.predictor import ClickPredictor
    from ..models.focus_refiner import FocusRefiner
    from .evaluation import EvalProtocol

log = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]
Reference = Literal["oracle", "wand"]

#: What makes a single input file unusable (and skipped), as opposed to a failure of the job.
BAD_FILE_ERRORS = (ImageFormatError, OSError)


def skipped_entry(path: Path, exc: BaseException) -> dict[str, str]:
    """A ``skipped`` record: the file and why it was not used."""
    return {"file": str(path), "reason": str(exc)}


def _shown(names: list[str]) -> str:
    return ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")


@dataclass
class SegmentResult:
    """Masks written by :func:`segment_folder` and the images skipped (``{"file", "reason"}``)."""

    written: list[Path] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)


def segment_folder(
    segmenter: Segmenter,
    images_dir: str | Path,
    out_dir: str | Path,
    *,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> SegmentResult:
    """Write ``<out_dir>/<stem>.png`` (0 / 255) with the automatic mask of every image.

    ``segmenter`` is a ``ReinSegmenter`` (any `model_bundle.Segmenter`); the mask is probability
    > 0.49. Before any work this refuses (``FileExistsError`` / ``ValueError`` naming the
    files): ``out_dir`` being the images folder, two images sharing a stem, and, unless
    ``overwrite``, masks that already exist in ``out_dir`` (a ground-truth folder given as
    ``--out`` stays intact). An input image is never replaced, even with ``overwrite``.
    """
    images_dir, out_dir = Path(images_dir), Path(out_dir)
    files = list(files_by_stem(images_dir).values())
    if out_dir.resolve() == images_dir.resolve():
        raise ValueError(
            f"--out {out_dir} is the images folder: masks would be written among (and over) the input images. "
            "Choose another output folder."
        )
    inputs = {p.resolve() for p in files}
    targets = {path: out_dir / f"{path.stem}.png" for path in files}
    clobbered = [t.name for t in targets.values() if t.resolve() in inputs]
    if clobbered:
        raise ValueError(f"writing masks to {out_dir} would replace input images: {_shown(clobbered)}")
    existing = [t.name for t in targets.values() if t.exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{len(existing)} of the masks to write already exist in {out_dir}: {_shown(existing)}. "
            "Nothing was written. Choose another --out, or pass --overwrite to replace them."
        )
    result = SegmentResult()
    for i, path in enumerate(files):
        try:
            image = load_image(path)
        except BAD_FILE_ERRORS as exc:
            log.warning("skipping %s: %s", path.name, exc)
            result.skipped.append(skipped_entry(path, exc))
        else:
            prob = segmenter.predict_proba(image)
            result.written.append(save_mask(targets[path], prob > PROB_THRESHOLD, overwrite=overwrite))
        if progress is not None:
            progress(i + 1, len(files), path.name)
    return result


def score_folders(
    pred_dir: str | Path,
    masks_dir: str | Path,
    *,
    allow_lossy_masks: bool = False,
    progress: Progress | None = None,
) -> dict:
    """Dice, Jaccard and COSAS score (0.5 Dice + 0.5 Jaccard) per image and their means.

    Predictions and ground-truth masks are both read as ``mask > 0`` and paired by stem. The
    report lists the ground-truth masks with no prediction (``masks_without_prediction``, also
    logged as a warning) and the pairs skipped for an unusable file (``skipped``).
    """
    pairs = pair_images_and_masks(pred_dir, masks_dir, allow_lossy_masks=allow_lossy_masks)
    uncovered = sorted(set(masks_by_name(masks_dir)) - {p.name for p in pairs})
    if uncovered:
        log.warning(
            "%d of the %d ground-truth masks in %s have no prediction in %s and are not scored: %s",
            len(uncovered), len(uncovered) + len(pairs), masks_dir, pred_dir, _shown(uncovered),
        )
    per_image, skipped = {}, []
    for i, pair in enumerate(pairs):
        try:
            gt = load_mask(pair.mask) > 0
            pred = load_mask(pair.image, shape=gt.shape) > 0
        except BAD_FILE_ERRORS as exc:
            log.warning("skipping %s: %s", pair.name, exc)
            skipped.append(skipped_entry(pair.image, exc))
        else:
            per_image[pair.name] = {
                "dice": metrics.dice(pred, gt),
                "jaccard": metrics.jaccard(pred, gt),
                "cosas_score": metrics.cosas_score(pred, gt),
            }
        if progress is not None:
            progress(i + 1, len(pairs), pair.name)
    keys = ("dice", "jaccard", "cosas_score")
    means = {k: float(np.mean([v[k] for v in per_image.values()])) if per_image else None for k in keys}
    return {
        "n_images": len(per_image),
        **means,
        "masks_without_prediction": uncovered,
        "skipped": skipped,
        "per_image": per_image,
    }


def reference_corrector(
    reference: Reference, window: float, wand_tolerance: float | None = None
) -> Callable[[np.ndarray, np.ndarray], Corrector]:
    """``(image, gt) -> corrector`` for a reference row (``"oracle"`` or ``"wand"``)."""
    from ..interaction.references import WAND_TOLERANCE, OracleCorrector, WandCorrector

    if reference == "oracle":
        return lambda _image, gt: OracleCorrector(gt)
    if reference == "wand":
        tolerance = WAND_TOLERANCE if wand_tolerance is None else wand_tolerance
        return lambda image, _gt: WandCorrector(image, tolerance=tolerance, window=window)
    raise ValueError(f'reference must be "oracle" or "wand", got {reference!r}')


def evaluate_folder(
    predictor: ClickPredictor | None,
    images_dir: str | Path,
    masks_dir: str | Path,
    protocol: EvalProtocol,
    *,
    objects: str = "image",
    segmenter: Segmenter | None = None,
    refiner: FocusRefiner | None = None,
    reference: Reference | None = None,
    wand_tolerance: float | None = None,
    allow_lossy_masks: bool = False,
    progress: Progress | None = None,
) -> EvaluateReport:
    """The interactive protocol (design.md) over a folder; returns its report (``refiner`` and
    ``context_margin`` left for the caller, which knows their names).

    ``protocol``: the interactive protocol (`evaluation.EvalProtocol`). ``objects="image"``
    treats ``mask > 0`` as one target, ``"instances"`` each label on its own. ``init="auto"``
    starts every image target from ``segmenter``'s probabilities. Images whose image or mask
    file cannot be used are listed in ``skipped``.
    ``reference`` (``"oracle"`` or ``"wand"``, :mod:`napari_cosas.interaction.references`) takes the clicks
    instead of ``predictor`` (which may then be ``None``), with the protocol's ``window`` as the
    wand's window. ``refiner`` refines every click but a first one taking the whole
    prediction in its focus window (``protocol.focus_window`` of the longer side;
    :mod:`napari_cosas.inference.focus`).
    """
    from .evaluation import evaluate_image, image_target, instance_targets, spc

    init, max_clicks = protocol.init, protocol.max_clicks

    if init == "auto" and segmenter is None:
        raise ValueError("--init auto needs an automatic segmenter (--segmenter NAME).")
    if init == "auto" and objects == "instances":
        raise ValueError(
            "--init auto starts from one whole-image mask, which is not a mask of any single instance; "
            "use --objects image with --init auto."
        )
    pairs = pair_images_and_masks(images_dir, masks_dir, allow_lossy_masks=allow_lossy_masks)
    records, results_all, skipped, encode_total, auto_total = [], [], [], 0.0, 0.0
    for i, pair in enumerate(pairs):
        try:
            image = load_image(pair.image)
            labels = load_mask(pair.mask, shape=image.shape[:2])
        except BAD_FILE_ERRORS as exc:
            log.warning("skipping %s: %s", pair.name, exc)
            skipped.append(skipped_entry(pair.image, exc))
            if progress is not None:
                progress(i + 1, len(pairs), pair.name)
            continue
        targets = instance_targets(labels) if objects == "instances" else image_target(labels)
        init_prob = None
        if init == "auto":
            start = time.perf_counter()
            init_prob = segmenter.predict_proba(image)
            auto_total += time.perf_counter() - start
        results, encode_seconds = evaluate_image(
            predictor, image, targets, protocol, init_prob=init_prob, refiner=refiner,
            reference=None if reference is None else reference_corrector(reference, protocol.window, wand_tolerance),
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
    if not results_all and skipped:
        raise ImageFormatError(f"none of the {len(pairs)} images could be evaluated; the first: "
                               f"{Path(skipped[0]['file']).name}: {skipped[0]['reason']}")
    n_images = len(pairs) - len(skipped)
    summary = metrics.summarize(results_all, max_clicks=max_clicks)
    spc_decoder, spc_total = spc(results_all, encode_total)
    focused = refiner is not None and reference is None  # the focus settings applied
    return EvaluateReport(
        **summary,
        spc_decoder_s=spc_decoder,
        spc_total_s=spc_total,
        encode_s_per_image=encode_total / max(1, n_images),
        auto_mask_s_per_image=auto_total / max(1, n_images) if init == "auto" else None,
        n_images=n_images,
        init=init,
        objects=objects,
        max_clicks=max_clicks,
        click_effect=protocol.effect,
        click_window=protocol.window,
        click_memory=protocol.memory,
        first_click=protocol.first_click,
        focus_window=protocol.focus_window if focused else None,
        focus_margin=protocol.focus_margin if focused else None,
        focus_resolution=protocol.focus_resolution if focused else None,
        focus_min_side=protocol.focus_min_side if focused else None,
        reference=reference,
        wand_tolerance=wand_tolerance if reference == "wand" else None,
        model_id=predictor.model_id if reference is None else reference,
        device=str(predictor.device) if reference is None else "cpu",
        click_precision=predictor.precision if reference is None else None,
        skipped=skipped,
        objects_detail=records,
    )
