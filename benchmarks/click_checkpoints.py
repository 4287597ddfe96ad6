"""Held-out NoC of click-training checkpoints against the default click model.

Each checkpoint (a ``train-decoder`` run's ``last.pt``, or a copy of it taken at some step)
holds the parameters the run trained; they are loaded onto the default click model, and the
interactive protocol (``--init auto``, image targets, 20 local clicks) runs on the held-out GlaS
and EBHI training images (``scripts/split_holdout.py``; never on the test sets). Writes
``benchmarks/results/click_checkpoints.json`` and ``benchmarks/click_checkpoints.md``: the
checkpoint with the lowest sum of the six NoC values is the one to ship, and only if it beats the
default's.

    THREADS=1 python benchmarks/click_checkpoints.py runs/click_cpu/snap_*.pt
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
from holdout import header, noc_sums

from napari_cosas.evaluation.batch import evaluate_folder
from napari_cosas.evaluation.evaluation import EvalProtocol
from napari_cosas.inference.predictor import ClickPredictor
from napari_cosas.models.registry import load_click_model, load_segmenter

HERE = Path(__file__).parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--glas", type=Path, default=Path(".devdata/glas/holdout"))
    parser.add_argument("--ebhi", type=Path, default=Path(".devdata/ebhi/holdout"))
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("THREADS", os.cpu_count() or 1)))
    segmenter = load_segmenter("cosas-default-segmenter", device="cpu")
    models: dict[str, ClickPredictor] = {"default": ClickPredictor.from_registry("cosas-default-click", device="cpu")}
    for path in args.checkpoints:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        model, model_id = load_click_model("cosas-default-click", device="cpu")
        unknown = set(checkpoint["params"]) - set(model.state_dict())
        if unknown:
            raise KeyError(f"{path} holds parameters the default click model does not have: {sorted(unknown)[:5]}")
        model.load_state_dict(checkpoint["params"], strict=False)
        models[f"step {checkpoint['step']}"] = ClickPredictor(model, f"{model_id}+{path.name}", device="cpu")
    rows = []
    for name, folder in (("GlaS held-out", args.glas), ("EBHI held-out", args.ebhi)):
        for label, predictor in models.items():
            report = evaluate_folder(predictor, folder / "images", folder / "masks", EvalProtocol(init="auto"),
                                     segmenter=segmenter).to_json()
            curve = report["mean_iou_per_click"]
            rows.append({"data": f"{name} ({report['n_images']})", "model": label,
                         **{k: report[k] for k in ("noc80", "noc85", "noc90", "nof90")},
                         "iou_after_1": curve[0], "iou_after_20": curve[-1]})
    (HERE / "results" / "click_checkpoints.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = header("Click-training checkpoints on held-out training images",
                   "THREADS=1 python benchmarks/click_checkpoints.py " + " ".join(str(p) for p in args.checkpoints),
                   "the checkpoint") + [
        "Checkpoints of `bash benchmarks/click_cpu_training.sh` (the default click model's decoder "
        "fine-tuned on the fit part of the training splits), local clicks.",
        "",
        "| data | model | NoC@80 | NoC@85 | NoC@90 | NoF@90 | IoU@1 | IoU@20 |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['data']} | {r['model']} | {r['noc80']:.2f} | {r['noc85']:.2f} | {r['noc90']:.2f} | "
                     f"{r['nof90']} | {r['iou_after_1']:.3f} | {r['iou_after_20']:.3f} |")
    lines += noc_sums(rows, lambda r: r["model"])
    (HERE / "click_checkpoints.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
