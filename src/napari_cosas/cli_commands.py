"""The ``napari-cosas`` commands ``segment``, ``score``, ``evaluate`` and ``demo`` (``cli`` parses
their arguments): each takes the parsed ``argparse.Namespace`` and returns the exit status (0 done,
1 done with skipped files). torch loads inside the commands that run a model only.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

log = logging.getLogger(__name__)


def _progress_bar(desc: str) -> tuple[Callable[[int, int, str], None], Callable[[], None]]:
    bar: list[tqdm] = []

    def update(done: int, total: int, name: str) -> None:
        if not bar:
            bar.append(tqdm(total=total, desc=desc, unit="img", file=sys.stderr))
        bar[0].set_postfix_str(name, refresh=False)
        bar[0].update(done - bar[0].n)

    def close() -> None:
        if bar:
            bar[0].close()

    return update, close


def _write_json(path: str | Path, data: dict) -> None:
    from .io.files import atomic_write

    atomic_write(path, json.dumps(data, indent=2).encode())


def _check_writable(path: str | Path, option: str, *, folder: bool = False) -> None:
    """Refuse, before any work, an output that cannot be written: a file option naming a folder
    (or a folder option naming a file), or a location without write permission."""
    path = Path(path)
    if path.exists() and path.is_dir() != folder:
        kind = "a file" if path.is_file() else "a folder"
        want = "a folder" if folder else "a file name"
        raise ValueError(f"{option} {path} is {kind}; give {want}")
    existing = path if folder and path.is_dir() else path.parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{option} {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(13, "no permission to write there", str(existing))


def _report_skipped(skipped: list[dict[str, str]]) -> int:
    """Print the files a job skipped; the exit status (1 if any)."""
    if not skipped:
        return 0
    print(f"skipped {len(skipped)} file(s) that could not be used:", file=sys.stderr)
    for entry in skipped:
        print(f"  {entry['file']}: {entry['reason']}", file=sys.stderr)
    return 1


def cmd_segment(args: argparse.Namespace) -> int:
    from .evaluation.batch import segment_folder
    from .models.registry import load_segmenter

    _check_writable(args.out, "--out", folder=True)
    segmenter = load_segmenter(args.model, weights=args.weights, device=args.device)
    update, close = _progress_bar("segment")
    try:
        result = segment_folder(segmenter, args.images, args.out, overwrite=args.overwrite, progress=update)
    finally:
        close()
    log.info("wrote %d masks to %s", len(result.written), args.out)
    return _report_skipped(result.skipped)


def cmd_score(args: argparse.Namespace) -> int:
    from .evaluation.batch import score_folders

    _check_writable(args.json, "--json")
    update, close = _progress_bar("score")
    try:
        report = score_folders(args.pred, args.masks, allow_lossy_masks=args.allow_jpeg_masks, progress=update)
    finally:
        close()
    _write_json(args.json, report)
    if report["n_images"]:
        print(
            f"{report['n_images']} images: Dice {report['dice']:.4f}  Jaccard {report['jaccard']:.4f}  "
            f"COSAS score {report['cosas_score']:.4f}"
        )
    if report["masks_without_prediction"]:
        n = len(report["masks_without_prediction"])
        print(f"{n} ground-truth masks have no prediction and were not scored (listed in {args.json})")
    return _report_skipped(report["skipped"])


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluation.batch import evaluate_folder
    from .evaluation.evaluation import EvalProtocol
    from .inference.embedding_cache import EmbeddingCache
    from .inference.predictor import ClickPredictor
    from .models.registry import load_focus_refiner, load_segmenter

    _check_writable(args.json, "--json")
    if args.plot:
        _check_writable(args.plot, "--plot")
    predictor = refiner = None
    if args.reference is None:
        cache = None if args.no_cache else EmbeddingCache(args.cache_dir)
        predictor = ClickPredictor.from_registry(args.model, weights=args.weights, device=args.device, cache=cache,
                                                 context_margin=args.context_margin, precision=args.click_precision)
        if args.refiner != "none":
            refiner = load_focus_refiner(args.refiner)
    segmenter = None
    if args.init == "auto":
        segmenter = load_segmenter(args.segmenter, weights=args.segmenter_weights, device=args.device)
    update, close = _progress_bar(f"evaluate ({args.init})")
    try:
        report = evaluate_folder(
            predictor,
            args.images,
            args.masks,
            EvalProtocol(init=args.init, max_clicks=args.max_clicks, effect=args.click_effect,
                         window=args.click_window, memory=args.click_memory or None,
                         first_click=args.first_click, focus_window=args.focus_window,
                         focus_margin=args.focus_margin, focus_resolution=args.focus_resolution,
                         focus_min_side=args.focus_min_side),
            objects=args.objects,
            segmenter=segmenter,
            refiner=refiner,
            reference=args.reference,
            wand_tolerance=args.wand_tolerance,
            allow_lossy_masks=args.allow_jpeg_masks,
            progress=update,
        )
    finally:
        close()
    report = dataclasses.replace(report, refiner=args.refiner if refiner is not None else None,
                                 context_margin=args.context_margin if predictor is not None else None)
    _write_json(args.json, report.to_json())
    if args.plot:
        from .evaluation.plots import plot_iou_curves

        plot_iou_curves({f"{report.model_id} ({args.init})": report.mean_iou_per_click}, args.plot)
    print(
        f"{report.n_objects} objects: NoC@80 {report.noc80:.2f}  NoC@85 {report.noc85:.2f}  "
        f"NoC@90 {report.noc90:.2f}  NoF@90 {report.nof90}  "
        f"SPC decoder {report.spc_decoder_s * 1000:.1f} ms  total {report.spc_total_s * 1000:.1f} ms"
    )
    return _report_skipped(report.skipped)


def cmd_demo(args: argparse.Namespace) -> int:
    from ._sample_data import SAMPLE_DIR, SAMPLES
    from .evaluation.demo import run_demo
    from .evaluation.evaluation import EvalProtocol
    from .inference.model_bundle import ModelBundle
    from .io.image_io import pair_images_and_masks

    _check_writable(args.out, "--out", folder=True)
    if args.images or args.masks:
        if not (args.images and args.masks):
            raise ValueError("give both --images and --masks, or neither (to use the bundled sample patches)")
        pairs = [(p.image, p.mask) for p in pair_images_and_masks(
            args.images, args.masks, allow_lossy_masks=args.allow_jpeg_masks)]
    else:
        pairs = [(SAMPLE_DIR / f"{name}.png", SAMPLE_DIR / f"{name}_mask.png") for name in SAMPLES]
    models = ModelBundle(args.segmenter, args.model, device=args.device)
    report = run_demo(pairs, args.out, models=models, protocol=EvalProtocol(init="auto", max_clicks=args.max_clicks),
                      log=log.info)
    print(Path(args.out, "report.md").read_text())
    return 1 if report["skipped"] or not report["n_patches"] else 0
