"""The ``napari-cosas`` command line: its parser and entry point (the commands are in
``cli_commands``, the training ones in ``training.cli``): the same core functions as the napari widget.

Exit status: 0 when everything was done; 1 when the job finished but skipped files it could not
use (each is reported with its reason, and the results of the others are written); 2 for an
error that stopped it (a message naming the problem and the fix, no traceback).
"""

from __future__ import annotations

import argparse
import logging
import pickle
import sys
import warnings
from collections.abc import Sequence

from .cli_commands import cmd_demo, cmd_evaluate, cmd_score, cmd_segment
from .evaluation.evaluate_report import EvaluateReport
from .inference.heap import keep_freed_heap_memory
from .inference.refine import (
    CLICK_MEMORY,
    CONFIDENT_MARGIN,
    CONTEXT_MARGIN,
    FOCUS_MIN_SIDE,
    FOCUS_RESOLUTION,
    FOCUS_WINDOW,
    LOCAL_WINDOW,
)
from .interaction.correctors import FIRST_CLICK, GLOBAL_FIRST_CLICK_MAX_SIDE
from .models.registry import DEFAULT_CLICK, DEFAULT_FOCUS, DEFAULT_SEGMENTER

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
        epilog=EvaluateReport.help_text(),
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
        "region under it, within a window; global: the same, and beyond it the pixels the model is sure of "
        "(|logit| >= GLOBAL_MARGIN) take its prediction",
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
        help=f"what the first click on the automatic mask may change: the model's whole prediction "
        f"(global), only the region under it (local), or global on patches of longer side at most "
        f"{GLOBAL_FIRST_CLICK_MAX_SIDE} px and local on larger ones (by-size) (default {FIRST_CLICK}, as in the "
        f"widget)",
    )
    p.add_argument(
        "--refiner",
        default=DEFAULT_FOCUS,
        help=f"focus refiner of the clicks, a registered name or a file, or none (default {DEFAULT_FOCUS}, "
        "as in the widget): every click but a first one taking the whole prediction is re-predicted in its "
        "focus window; the change connected to the click and the refiner's confident changes in the window are kept",
    )
    p.add_argument(
        "--focus-margin",
        type=float,
        default=CONFIDENT_MARGIN,
        help=f"the refiner's changes away from the click are kept where its logit is at least this far from "
        f"the threshold (default {CONFIDENT_MARGIN}, as in the widget; inf: only the change connected to the click)",
    )
    p.add_argument(
        "--focus-window",
        type=float,
        default=FOCUS_WINDOW,
        help=f"side of the refiner's window as a fraction of the longer image side (default {FOCUS_WINDOW})",
    )
    p.add_argument(
        "--focus-resolution",
        type=int,
        default=FOCUS_RESOLUTION,
        help=f"the refiner's pixels per longer image side: it sees a focus window of w of the side as about "
        f"this times w pixels (default {FOCUS_RESOLUTION}, as in the widget)",
    )
    p.add_argument(
        "--focus-min-side",
        type=_non_negative_int,
        default=FOCUS_MIN_SIDE,
        help=f"the focus window's smallest side in pixels: on a patch whose longer side is at most this, the "
        f"window is the whole patch (default {FOCUS_MIN_SIDE}, as in the widget; 0: the window alone decides)",
    )
    p.add_argument(
        "--context-margin",
        type=_context_margin,
        default=CONTEXT_MARGIN,
        help=f"for a local click, the decoder attends to the image tokens under its window and this many "
        f"around them, or to every token with none (default {CONTEXT_MARGIN}, as in the widget)",
    )
    p.add_argument(
        "--click-precision",
        default="auto",
        choices=("auto", "fp32", "bf16"),
        help="the click decoder's image-sized matrix products: bf16 on a CPU that multiplies it natively "
        "(AVX512-BF16, AMX), else fp32 (auto, the default, as in the widget), or always fp32 / bf16",
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
