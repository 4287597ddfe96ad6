"""How far around a click the click model's decoder looks, on held-out training images.

Runs the interactive protocol (``--init auto``, image targets, 20 local clicks, default click
model and focus refiner) on the held-out GlaS and EBHI training images
(``scripts/split_holdout.py``; never on GlaS testA or EBHI val) once per ``context_margin`` of
``ClickPredictor``: ``none`` is SAM's decoding (every token of the padded 64x64 grid); a number
``m`` confines the decoder's attention, for a click's window, to the window's tokens and ``m``
around them, inside the image. Writes ``benchmarks/results/attention_context.json`` and
``benchmarks/attention_context.md``; the margin with the lowest sum of the six NoC values is the
one to ship (``predictor.CONTEXT_MARGIN``), unless the mean IoU then falls from one click to the next.

    python benchmarks/attention_context.py --margins none 8 4 0 [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
from holdout import header, noc_sums, report_row

from napari_cosas.evaluation.batch import evaluate_folder
from napari_cosas.evaluation.evaluation import EvalProtocol
from napari_cosas.inference.predictor import ClickPredictor
from napari_cosas.models.registry import load_focus_refiner, load_segmenter

HERE = Path(__file__).parent
log = logging.getLogger("attention_context")


def _margin(text: str) -> int | None:
    return None if text == "none" else int(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--margins", nargs="+", type=_margin, default=[None, 8, 4, 0],
                        help="token margins, or 'none' for every token")
    parser.add_argument("--glas", type=Path, default=Path(".devdata/glas/holdout"))
    parser.add_argument("--ebhi", type=Path, default=Path(".devdata/ebhi/holdout"))
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (one torch thread each)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    jobs = [(name, folder, margin) for name, folder in (("GlaS held-out", args.glas), ("EBHI held-out", args.ebhi))
            for margin in args.margins]
    with ProcessPoolExecutor(args.jobs, initializer=_load_models) as pool:
        rows = list(pool.map(_evaluate, *zip(*jobs)))
    (HERE / "results" / "attention_context.json").write_text(json.dumps(rows, indent=2) + "\n")
    margins = " ".join("none" if m is None else str(m) for m in args.margins)
    lines = header("The decoder's attention context on held-out training images",
                   f"python benchmarks/attention_context.py --margins {margins} --jobs {args.jobs}",
                   "the margin") + [
        "Local clicks through the default focus refiner, the model shown its last 5. The margin is in image "
        "tokens (16 px of the 1024-px frame); `none`: every token of the padded grid. s / click is the "
        f"model's and the refiner's time per click, {args.jobs} evaluations running at once, one torch thread "
        "each. The largest mean-IoU drop is the largest fall of the mean IoU from one click to the next.",
        "",
        "| data | margin | NoC@80 | NoC@85 | NoC@90 | NoF@90 | IoU@1 | IoU@5 | IoU@20 | largest mean-IoU drop "
        "| s / click |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['data']} | {_label(r)} | {r['noc80']:.2f} | {r['noc85']:.2f} | {r['noc90']:.2f} | "
            f"{r['nof90']} | {r['iou_after_1']:.3f} | {r['iou_after_5']:.3f} | {r['iou_after_20']:.3f} | "
            f"{r['largest_mean_iou_drop']:.4f} | {r['spc_decoder_s']:.3f} |"
        )
    lines += noc_sums(rows, _label)
    (HERE / "attention_context.md").write_text("\n".join(lines) + "\n")


_MODELS: dict = {}


def _load_models() -> None:
    """Each worker process: one torch thread (``THREADS``), the default models."""
    torch.set_num_threads(int(os.environ.get("THREADS", 1)))
    _MODELS["segmenter"] = load_segmenter("cosas-default-segmenter", device="cpu")
    _MODELS["refiner"] = load_focus_refiner("cosas-default-focus")


def _evaluate(name: str, folder: Path, margin: int | None) -> dict:
    predictor = ClickPredictor.from_registry("cosas-default-click", device="cpu", context_margin=margin)
    report = evaluate_folder(predictor, folder / "images", folder / "masks", EvalProtocol(init="auto"),
                             segmenter=_MODELS["segmenter"], refiner=_MODELS["refiner"]).to_json()
    row = report_row(name, report, {"margin": margin})
    log.info("%s", json.dumps(row))
    return row


def _label(row: dict) -> str:
    return "none" if row["margin"] is None else str(row["margin"])


if __name__ == "__main__":
    main()
