"""Shared by the scripts that choose a click setting on the held-out training images.

`click_window.py` and `click_memory.py` run the interactive protocol (``--init auto``, image
targets, 20 clicks, default weights) on the held-out GlaS and EBHI training images
(``scripts/split_holdout.py``; never on GlaS testA or EBHI val) once per setting, and choose the
setting with the lowest sum of the six NoC values (both sets, NoC@80/85/90).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from machine import cpu_model

from napari_cosas.evaluation.batch import evaluate_folder
from napari_cosas.evaluation.evaluation import EvalProtocol
from napari_cosas.inference.predictor import ClickPredictor
from napari_cosas.models.registry import load_segmenter

#: The keys of a setting that are `EvalProtocol` fields (the others go to `evaluate_folder`).
PROTOCOL_FIELDS = {f.name for f in fields(EvalProtocol)}


def parse_folders(description: str) -> argparse.Namespace:
    """``--glas`` and ``--ebhi``: folders with ``images/`` and ``masks/``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--glas", type=Path, default=Path(".devdata/glas/holdout"), help="images/ and masks/")
    parser.add_argument("--ebhi", type=Path, default=Path(".devdata/ebhi/holdout"), help="images/ and masks/")
    return parser.parse_args()


def evaluate_settings(args: argparse.Namespace, settings: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (data set, setting): the setting's `EvalProtocol` fields and ``evaluate_folder``
    keywords, NoC@80/85/90, NoF@90, decoder SPC and the mean IoU after clicks 1, 5 and 20."""
    torch.set_num_threads(int(os.environ.get("THREADS", os.cpu_count() or 1)))
    segmenter = load_segmenter("cosas-default-segmenter", device="cpu")
    predictor = ClickPredictor.from_registry("cosas-default-click", device="cpu")
    rows = []
    for name, folder in (("GlaS held-out", args.glas), ("EBHI held-out", args.ebhi)):
        for setting in settings:
            protocol = EvalProtocol(init="auto", **{k: v for k, v in setting.items() if k in PROTOCOL_FIELDS})
            others = {k: v for k, v in setting.items() if k not in PROTOCOL_FIELDS}
            report = evaluate_folder(predictor, folder / "images", folder / "masks", protocol,
                                     segmenter=segmenter, **others).to_json()
            rows.append(report_row(name, report, setting))
    return rows


def report_row(name: str, report: dict[str, Any], setting: dict[str, Any]) -> dict[str, Any]:
    """One table row of an ``evaluate_folder`` report on the data set ``name``: the setting,
    NoC@80/85/90, NoF@90, decoder SPC, the mean IoU after clicks 1, 5 and 20 and the largest fall
    of the mean IoU from one click to the next (0 when it never falls)."""
    curve = report["mean_iou_per_click"]
    return {
        "data": f"{name} ({report['n_images']})", **setting,
        **{k: report[k] for k in ("noc80", "noc85", "noc90", "nof90", "spc_decoder_s")},
        "iou_after_1": curve[0], "iou_after_5": curve[4], "iou_after_20": curve[-1],
        "largest_mean_iou_drop": max([0.0, *(a - b for a, b in zip(curve, curve[1:]))]),
    }


def header(title: str, command: str, chosen: str) -> list[str]:
    """The first lines of the markdown report: machine, command, data and their caveat."""
    return [
        f"# {title}",
        "",
        f"Machine: {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, CPU. "
        f"Command: `{command}`. Default weights, `--init auto`, image targets, 20 clicks, stop at IoU "
        "0.90. Data: the held-out training images of `scripts/split_holdout.py` (15 GlaS, 19 EBHI; see "
        "weights/README.md). The default models were trained on these images too, so the absolute "
        f"numbers are optimistic; they serve only to choose {chosen}, which the test sets never did.",
        "",
    ]


def noc_sums(rows: Sequence[dict[str, Any]], label: Callable[[dict[str, Any]], str | None]) -> list[str]:
    """The closing line: the sum of the six NoC values per setting (rows whose ``label`` is
    ``None`` are left out) and the lowest."""
    sums: dict[str, float] = {}
    for r in rows:
        key = label(r)
        if key is not None:
            sums[key] = sums.get(key, 0.0) + r["noc80"] + r["noc85"] + r["noc90"]
    best = min(sums, key=sums.get)
    return [
        "",
        "Sum of the six NoC values (both sets, NoC@80/85/90) per setting: "
        + ", ".join(f"{key}: {total:.2f}" for key, total in sums.items())
        + f". Lowest: {best}.",
    ]
