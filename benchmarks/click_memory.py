"""Choose how many of the latest clicks the click model is shown (``refine.CLICK_MEMORY``).

Every click is a token of the decoder, and the default click model was trained on sessions of at
most 5 clicks (``--max-rounds 4``), while reaching IoU 0.90 takes 12-19 clicks; the earlier
clicks are kept by the mask prompt in any case. This runs the interactive protocol (``--init
auto``, local clicks, image targets, 20 clicks) showing the model the last 1, 3, 5, 8 or all
clicks, on the held-out GlaS and EBHI training images (``scripts/split_holdout.py``; never on
GlaS testA or EBHI val), and writes ``benchmarks/results/click_memory.json`` and
``benchmarks/click_memory.md``.

    python benchmarks/click_memory.py [--glas .devdata/glas/holdout] [--ebhi .devdata/ebhi/holdout]
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
from napari_cosas.refine import CLICK_MEMORY
from napari_cosas.registry import load_segmenter

HERE = Path(__file__).parent
MEMORIES = (1, 3, 5, 8, None)


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
        for memory in MEMORIES:
            report = evaluate_folder(predictor, folder / "images", folder / "masks", init="auto",
                                     segmenter=segmenter, effect="local", memory=memory)
            curve = report["mean_iou_per_click"]
            rows.append({
                "data": f"{name} ({report['n_images']})", "memory": memory,
                **{k: report[k] for k in ("noc80", "noc85", "noc90", "nof90", "spc_decoder_s")},
                "iou_after_5": curve[4], "iou_after_20": curve[-1],
            })
    (HERE / "results" / "click_memory.json").write_text(json.dumps(rows, indent=2) + "\n")
    write_markdown(rows)


def write_markdown(rows: list[dict]) -> None:
    """``benchmarks/click_memory.md`` from the rows of ``results/click_memory.json``."""
    lines = [
        "# Choosing how many clicks the click model is shown",
        "",
        f"Machine: {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, CPU. "
        "Command: `python benchmarks/click_memory.py`. Default weights, `--init auto`, local clicks, image "
        "targets, 20 clicks, stop at IoU 0.90. Data: the held-out training images of `scripts/split_holdout.py` "
        "(15 GlaS, 19 EBHI; see weights/README.md). The default models were trained on these images too, "
        "so the absolute numbers are optimistic; they serve only to choose the setting, which the test "
        "sets never did. SPC: seconds per click of the decoder path, these (small) images.",
        "",
        "| data | clicks shown | NoC@80 | NoC@85 | NoC@90 | NoF@90 | IoU@5 | IoU@20 | SPC s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        shown = "all" if r["memory"] is None else str(r["memory"])
        lines.append(
            f"| {r['data']} | {shown} | {r['noc80']:.2f} | {r['noc85']:.2f} | {r['noc90']:.2f} | {r['nof90']} | "
            f"{r['iou_after_5']:.3f} | {r['iou_after_20']:.3f} | {r['spc_decoder_s']:.3f} |"
        )
    sums: dict[str, float] = {}
    for r in rows:
        shown = "all" if r["memory"] is None else str(r["memory"])
        sums[shown] = sums.get(shown, 0.0) + r["noc80"] + r["noc85"] + r["noc90"]
    best = min(sums, key=sums.get)
    lines += [
        "",
        "Sum of the six NoC values (both sets, NoC@80/85/90) per setting: "
        + ", ".join(f"{shown}: {total:.2f}" for shown, total in sums.items())
        + f". Lowest: {best}; `refine.CLICK_MEMORY` is {CLICK_MEMORY}.",
    ]
    (HERE / "click_memory.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
