"""Focus refiners against the plain local click, on held-out training images.

Runs the interactive protocol (``--init auto``, image targets, 20 local clicks, default click model)
on the held-out GlaS and EBHI training images (``scripts/split_holdout.py``; never on GlaS testA
or EBHI val) without a refiner and with each refiner file at each focus window, and writes
``benchmarks/results/focus_refiner.json`` and ``benchmarks/focus_refiner.md``. The setting with the
lowest sum of the six NoC values is the one to ship (``focus.FOCUS_WINDOW``, the bundled refiner),
and only if it beats the plain local click.

    python benchmarks/focus_refiner.py runs/focus/train1/refiner.pt [--windows 0.25 0.35 0.5] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import torch
from holdout import header, noc_sums, report_row

from napari_cosas.evaluation.batch import evaluate_folder
from napari_cosas.evaluation.evaluation import EvalProtocol
from napari_cosas.inference.predictor import ClickPredictor
from napari_cosas.models.registry import load_focus_refiner, load_segmenter

HERE = Path(__file__).parent
log = logging.getLogger("focus_refiner")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("refiners", nargs="*", help="refiner files or registered names")
    parser.add_argument("--windows", nargs="+", type=float, default=[0.35])
    parser.add_argument("--first-click", nargs="+", default=["global"], choices=("global", "local", "by-size"))
    parser.add_argument("--glas", type=Path, default=Path(".devdata/glas/holdout"))
    parser.add_argument("--ebhi", type=Path, default=Path(".devdata/ebhi/holdout"))
    parser.add_argument("--out", default="focus_refiner", help="name of the .md / .json written")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (one torch thread each)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    settings: list[dict] = [{"refiner": None, "focus_window": None, "first_click": f} for f in args.first_click]
    settings += [{"refiner": r, "focus_window": w, "first_click": f}
                 for r in args.refiners for w in args.windows for f in args.first_click]
    jobs = [(name, folder, setting) for name, folder in (("GlaS held-out", args.glas), ("EBHI held-out", args.ebhi))
            for setting in settings]
    with ProcessPoolExecutor(args.jobs, initializer=_load_models) as pool:
        rows = list(pool.map(_evaluate, *zip(*jobs)))
    (HERE / "results" / f"{args.out}.json").write_text(json.dumps(rows, indent=2) + "\n")
    command = "python benchmarks/focus_refiner.py " + " ".join(
        [*args.refiners, "--windows", *map(str, args.windows), "--first-click", *args.first_click])
    lines = header("Focus refiners on held-out training images", command, "the refiner and its window") + [
        "Local clicks, the model shown its last 5. `none`: the plain local click (`refine.local_click`); "
        "otherwise every click but a first one taking the whole prediction is refined in its focus window "
        "(`napari_cosas.inference.focus`). The largest mean-IoU drop is the largest fall of the mean IoU from one click to "
        "the next (0 when it never falls).",
        "",
        "| data | refiner | focus window | first click | NoC@80 | NoC@85 | NoC@90 | NoF@90 | IoU@1 | IoU@5 | IoU@20 "
        "| largest mean-IoU drop | s / click |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        window = "" if r["focus_window"] is None else f"{r['focus_window']:g}"
        lines.append(
            f"| {r['data']} | {r['refiner'] or 'none'} | {window} | {r['first_click']} | {r['noc80']:.2f} | "
            f"{r['noc85']:.2f} | {r['noc90']:.2f} | {r['nof90']} | {r['iou_after_1']:.3f} | {r['iou_after_5']:.3f} | "
            f"{r['iou_after_20']:.3f} | {r['largest_mean_iou_drop']:.4f} | {r['spc_decoder_s']:.3f} |"
        )
    lines += noc_sums(rows, _label)
    (HERE / f"{args.out}.md").write_text("\n".join(lines) + "\n")


_MODELS: dict = {}


def _load_models() -> None:
    """Each worker process: one torch thread (``THREADS``), the default models."""
    torch.set_num_threads(int(os.environ.get("THREADS", 1)))
    _MODELS["segmenter"] = load_segmenter("cosas-default-segmenter", device="cpu")
    _MODELS["predictor"] = ClickPredictor.from_registry("cosas-default-click", device="cpu")


def _evaluate(name: str, folder: Path, setting: dict) -> dict:
    protocol = EvalProtocol(init="auto", first_click=setting["first_click"])
    refiner = None
    if setting["refiner"] is not None:
        refiner = load_focus_refiner(setting["refiner"])
        protocol = replace(protocol, focus_window=setting["focus_window"])
    report = evaluate_folder(_MODELS["predictor"], folder / "images", folder / "masks", protocol,
                             segmenter=_MODELS["segmenter"], refiner=refiner).to_json()
    row = report_row(name, report, setting)
    log.info("%s", json.dumps(row))
    return row


def _label(row: dict) -> str:
    if row["refiner"] is None:
        return f"none, first click {row['first_click']}"
    return f"{row['refiner']} at {row['focus_window']:g}, first click {row['first_click']}"


if __name__ == "__main__":
    main()
