"""The ``napari-cosas`` command line: the same core functions as the napari widget.

Exit status: 0 when everything was done; 1 when the job finished but skipped files it could not
use (each is reported with its reason, and the results of the others are written); 2 for an
error that stopped it (a message naming the problem and the fix, no traceback).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pickle
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from tqdm import tqdm

from .heap import keep_freed_heap_memory
from .interaction import FIRST_CLICK, GLOBAL_FIRST_CLICK_MAX_SIDE
from .refine import CLICK_MEMORY, CONTEXT_MARGIN, FOCUS_WINDOW, LOCAL_WINDOW
from .registry import DEFAULT_CLICK, DEFAULT_FOCUS, DEFAULT_SEGMENTER

EVALUATE_EPILOG = """\
JSON fields written by evaluate:
  noc80, noc85, noc90      mean number of clicks to reach IoU 0.80 / 0.85 / 0.90 (20 if never;
                           0 when an --init auto mask already reaches it)
  nof80, nof85, nof90      number of objects whose NoC is the click budget (failures)
  mean_iou_per_click       list: mean IoU after click 1..max_clicks (finished objects keep
                           their last IoU)
  spc_decoder_s            seconds per click of the decoder path (prompt encoding, decoding,
                           upsampling to full resolution, thresholding; a local click after the
                           first upsamples only its window, and its time includes the local
                           update, the focus refiner and turning the mask into the next prompt)
  spc_total_s              seconds per click end to end, image encoding included
  encode_s_per_image       mean seconds to encode (or load from cache) one image
  auto_mask_s_per_image    mean seconds of the automatic segmenter (--init auto only)
  n_objects, n_images, init, objects, max_clicks, click_effect, click_window, click_memory,
  first_click, refiner and focus_window (null without a refiner), context_margin, reference,
  wand_tolerance, model_id, device
  objects_detail           per object: image, name, ious, initial_iou, clicks [[row, col,
                           positive], ...], decoder_seconds, n_clicks, noc {"80", "85", "90"}
Protocol: RITM's next-click rule, prediction = probability > 0.49, stop at IoU >= 0.90.
"""


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


log = logging.getLogger(__name__)


def _write_json(path: str | Path, data: dict) -> None:
    from .files import atomic_write

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
    from .batch import segment_folder
    from .registry import load_segmenter

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
    from .batch import score_folders

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
    from .batch import evaluate_folder
    from .embedding_cache import EmbeddingCache
    from .evaluation import EvalProtocol
    from .predictor import ClickPredictor
    from .registry import load_focus_refiner, load_segmenter

    _check_writable(args.json, "--json")
    if args.plot:
        _check_writable(args.plot, "--plot")
    predictor = refiner = None
    if args.reference is None:
        cache = None if args.no_cache else EmbeddingCache(args.cache_dir)
        predictor = ClickPredictor.from_registry(args.model, weights=args.weights, device=args.device, cache=cache,
                                                 context_margin=args.context_margin)
        if args.refiner != "none" and args.click_effect == "local":
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
                         first_click=args.first_click, focus_window=args.focus_window),
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
    report["refiner"] = args.refiner if refiner is not None else None
    report["context_margin"] = args.context_margin if predictor is not None else None
    _write_json(args.json, report)
    if args.plot:
        from .plots import plot_iou_curves

        plot_iou_curves({f"{report['model_id']} ({args.init})": report["mean_iou_per_click"]}, args.plot)
    print(
        f"{report['n_objects']} objects: NoC@80 {report['noc80']:.2f}  NoC@85 {report['noc85']:.2f}  "
        f"NoC@90 {report['noc90']:.2f}  NoF@90 {report['nof90']}  "
        f"SPC decoder {report['spc_decoder_s'] * 1000:.1f} ms  total {report['spc_total_s'] * 1000:.1f} ms"
    )
    return _report_skipped(report["skipped"])


def cmd_demo(args: argparse.Namespace) -> int:
    from ._sample_data import SAMPLE_DIR, SAMPLES
    from .demo import run_demo
    from .evaluation import EvalProtocol
    from .image_io import pair_images_and_masks
    from .model_bundle import ModelBundle

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


def _non_negative_int(text: str) -> int:
    """A count that may be 0 (``--max-clicks`` of ``demo``)."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value}: give 0 or a positive number")
    return value


def _click_memory(text: str) -> int:
    """``--click-memory``: 0 (every click) or a positive number of clicks."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} clicks: give 0 (every click) or a positive number of clicks")
    return value


def _context_margin(text: str) -> int | None:
    """``--context-margin``: ``none`` (every token) or a number of tokens, at least 0."""
    if text == "none":
        return None
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} tokens: give none (every token) or a number at least 0")
    return value


def _add_model_args(p: argparse.ArgumentParser, default: str, what: str) -> None:
    p.add_argument("--model", default=default, help=f"{what}: a registry name or a checkpoint path (default: {default})")
    p.add_argument("--weights", default=None, help="explicit local weights file; skips any download")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="default: cuda when available")


def _add_jpeg_masks_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-jpeg-masks", action="store_true",
                   help="accept ground-truth masks saved as JPEG, thresholded at 128 (refused by default: "
                        "compression noise would count as tumour)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-cosas",
        description="Annotate adenocarcinoma in H&E patches: automatic Rein segmentation and SAM click refinement.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("segment", help="automatic tumour masks for a folder of patches (PNG, 0/255)")
    p.add_argument("--images", required=True, help="folder of RGB patches")
    p.add_argument("--out", required=True, help="folder for <stem>.png masks (not the images folder)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace masks already in --out (default: refuse, writing nothing); input images are never replaced")
    _add_model_args(p, DEFAULT_SEGMENTER, "segmenter")
    p.set_defaults(func=cmd_segment)

    p = sub.add_parser("score", help="Dice, Jaccard and COSAS score of predicted masks against ground truth")
    p.add_argument("--pred", required=True, help="folder of predicted masks (mask > 0 is tumour)")
    p.add_argument("--masks", required=True, help="folder of ground-truth masks, same file stems")
    p.add_argument("--json", required=True, help="output JSON: per image and mean dice, jaccard, cosas_score, "
                   "masks_without_prediction, skipped")
    _add_jpeg_masks_arg(p)
    p.set_defaults(func=cmd_score)

    p = sub.add_parser(
        "evaluate",
        help="simulated interactive refinement: NoC@80/85/90, NoF, SPC",
        epilog=EVALUATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--images", required=True, help="folder of RGB patches")
    p.add_argument("--masks", required=True, help="folder of ground-truth masks paired by file stem")
    _add_model_args(p, DEFAULT_CLICK, "click model")
    p.add_argument(
        "--init",
        default="empty",
        choices=("empty", "auto"),
        help="empty: first click on an empty prediction (RITM protocol); auto: start from the automatic mask",
    )
    p.add_argument("--segmenter", default=DEFAULT_SEGMENTER, help="segmenter for --init auto (name or path)")
    p.add_argument("--segmenter-weights", default=None, help="explicit local weights for --segmenter")
    p.add_argument(
        "--objects",
        default="image",
        choices=("image", "instances"),
        help="image: mask > 0 is one target; instances: each label id is its own target",
    )
    p.add_argument("--max-clicks", type=int, default=20, help="click budget per object (default 20)")
    p.add_argument(
        "--click-effect",
        default="local",
        choices=("local", "global"),
        help="local (default, as in the widget): after the first click each click changes only the connected "
        "region under it, within a window; global: the mask is the model's whole prediction (RITM)",
    )
    p.add_argument(
        "--click-window",
        type=float,
        default=LOCAL_WINDOW,
        help=f"side of a local click's window as a fraction of the longer image side (default {LOCAL_WINDOW})",
    )
    p.add_argument(
        "--click-memory",
        type=_click_memory,
        default=CLICK_MEMORY,
        help=f"how many of the latest clicks the model is shown; earlier ones live on in the mask prompt "
        f"(default {CLICK_MEMORY}, as in the widget; 0: all clicks)",
    )
    p.add_argument(
        "--first-click",
        default=FIRST_CLICK,
        choices=("global", "local", "by-size"),
        help=f"what the first local click on the automatic mask may change: the model's whole prediction "
        f"(global), only the region under it (local), or global on patches of longer side at most "
        f"{GLOBAL_FIRST_CLICK_MAX_SIDE} px and local on larger ones (by-size) (default {FIRST_CLICK}, as in the "
        f"widget)",
    )
    p.add_argument(
        "--refiner",
        default=DEFAULT_FOCUS,
        help=f"focus refiner of local clicks, a registered name or a file, or none (default {DEFAULT_FOCUS}, "
        "as in the widget): every click but a first one taking the whole prediction is re-predicted in its "
        "focus window and only the change connected to the click is kept",
    )
    p.add_argument(
        "--focus-window",
        type=float,
        default=FOCUS_WINDOW,
        help=f"side of the refiner's window as a fraction of the longer image side (default {FOCUS_WINDOW})",
    )
    p.add_argument(
        "--context-margin",
        type=_context_margin,
        default=CONTEXT_MARGIN,
        help=f"for a local click, the decoder attends to the image tokens under its window and this many "
        f"around them, or to every token with none (default {CONTEXT_MARGIN}, as in the widget)",
    )
    p.add_argument(
        "--reference",
        default=None,
        choices=("oracle", "wand"),
        help="a reference row instead of the click model: oracle (each click flips the whole connected error "
        "region under it) or wand (a colour flood fill in CIE-Lab inside the click window, no model)",
    )
    p.add_argument(
        "--wand-tolerance",
        type=float,
        default=None,
        help="the wand's CIE-Lab tolerance (default: references.WAND_TOLERANCE, chosen on held-out training images)",
    )
    _add_jpeg_masks_arg(p)
    p.add_argument("--json", required=True, help="output JSON (fields below)")
    p.add_argument("--plot", default=None, help="optional PNG: mean IoU against clicks")
    p.add_argument("--cache-dir", default=None, help="embedding cache folder (default: $NAPARI_COSAS_CACHE/embeddings)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the embedding cache")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "demo",
        help="the main job, headless: segment patches, refine with simulated clicks, export, report",
    )
    p.add_argument("--out", required=True, help="output folder: masks/, sidecars/, geojson/, overlays/, report.md")
    p.add_argument("--images", default=None, help="folder of patches (default: the bundled EBHI sample patches)")
    p.add_argument("--masks", default=None, help="ground-truth masks for --images, paired by file stem")
    p.add_argument("--segmenter", default=DEFAULT_SEGMENTER, help="segmenter name or checkpoint path")
    p.add_argument("--model", default=DEFAULT_CLICK, help="click model name or checkpoint path")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--max-clicks", type=_non_negative_int, default=20, help="click budget per patch (default 20)")
    _add_jpeg_masks_arg(p)
    p.set_defaults(func=cmd_demo)

    from .training.cli import add_training_commands

    add_training_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    keep_freed_heap_memory()  # a short-lived process: reuse freed tensors instead of new pages per click
    warnings.showwarning = _show_warning  # this process is the CLI: "warning: ..." without source lines
    try:
        return args.func(args)
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, KeyError, RuntimeError) as exc:
        parser.exit(2, f"napari-cosas {args.command}: error: {_describe(exc)}\n")


def _describe(exc: BaseException) -> str:
    """An exception as one message naming the file and what is wrong, with no traceback."""
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    if isinstance(exc, OSError) and exc.strerror and exc.filename:
        text = f"{exc.filename}: {exc.strerror}"
        return text + (" (check the folder's permissions or choose another one)" if isinstance(exc, PermissionError) else "")
    if isinstance(exc, (EOFError, pickle.UnpicklingError)):
        return f"a file ended early or is not what it should be ({type(exc).__name__}: {exc})"
    return str(exc) or type(exc).__name__


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
