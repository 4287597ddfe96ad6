"""Choose the local click window (``refine.LOCAL_WINDOW``) on held-out training images.

Runs the interactive protocol (``--init auto``, image targets, 20 clicks) with the global click
effect and with the local one at several window sizes, on the held-out GlaS and EBHI training
images (``scripts/split_holdout.py``; never on GlaS testA or EBHI val), and writes
``benchmarks/results/click_window.json`` and ``benchmarks/click_window.md``.

    python benchmarks/click_window.py [--glas .devdata/glas/holdout] [--ebhi .devdata/ebhi/holdout]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
from machine import cpu_model

from napari_cosas.batch import evaluate_folder
from napari_cosas.predictor import ClickPredictor
from napari_cosas.refine import LOCAL_WINDOW
from napari_cosas.registry import load_segmenter

HERE = Path(__file__).parent
WINDOWS = (0.12, 0.18, 0.25, 0.35)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--glas", type=Path, default=Path(".devdata/glas/holdout"), help="images/ and masks/")
    parser.add_argument("--ebhi", type=Path, default=Path(".devdata/ebhi/holdout"), help="images/ and masks/")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    segmenter = load_segmenter("cosas-default-segmenter", device="cpu")
    predictor = ClickPredictor.from_registry("cosas-default-click", device="cpu")
    rows = []
    for name, folder in (("GlaS held-out", args.glas), ("EBHI held-out", args.ebhi)):
        settings = [("global", LOCAL_WINDOW)] + [("local", w) for w in WINDOWS]
        for effect, window in settings:
            report = evaluate_folder(predictor, folder / "images", folder / "masks", init="auto",
                                     segmenter=segmenter, effect=effect, window=window)
            curve = report["mean_iou_per_click"]
            rows.append({
                "data": f"{name} ({report['n_images']})", "effect": effect,
                "window": window if effect == "local" else None,
                **{k: report[k] for k in ("noc80", "noc85", "noc90", "nof90")},
                "iou_after_1": curve[0], "iou_after_5": curve[4], "iou_after_20": curve[-1],
            })
    (HERE / "results" / "click_window.json").write_text(json.dumps(rows, indent=2) + "\n")
    write_markdown(rows)


def write_markdown(rows: list[dict]) -> None:
    """``benchmarks/click_window.md`` from the rows of ``results/click_window.json``."""
    lines = [
        "# Choosing the local click window",
        "",
        f"Machine: {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, CPU. "
        "Command: `python benchmarks/click_window.py`. Default weights, `--init auto`, image targets, "
        "20 clicks, stop at IoU 0.90. Data: the held-out training images of `scripts/split_holdout.py` "
        "(15 GlaS, 19 EBHI; see weights/README.md). The default models were trained on these images too, "
        "so the absolute numbers are optimistic; they serve only to choose the window, which the test "
        "sets never did.",
        "",
        "| data | click effect | window | NoC@80 | NoC@85 | NoC@90 | NoF@90 | IoU@1 | IoU@5 | IoU@20 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        window = "" if r["window"] is None else f"{r['window']:.2f}"
        lines.append(
            f"| {r['data']} | {r['effect']} | {window} | {r['noc80']:.2f} | {r['noc85']:.2f} | {r['noc90']:.2f} | "
            f"{r['nof90']} | {r['iou_after_1']:.3f} | {r['iou_after_5']:.3f} | {r['iou_after_20']:.3f} |"
        )
    sums = {}
    for r in rows:
        if r["effect"] == "local":
            sums[r["window"]] = sums.get(r["window"], 0.0) + r["noc80"] + r["noc85"] + r["noc90"]
    best = min(sums, key=sums.get)
    lines += [
        "",
        "Sum of the six NoC values (both sets, NoC@80/85/90) per window: "
        + ", ".join(f"{w:.2f}: {total:.2f}" for w, total in sums.items())
        + f". Lowest: {best:.2f}; `refine.LOCAL_WINDOW` is {LOCAL_WINDOW}.",
    ]
    (HERE / "click_window.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
