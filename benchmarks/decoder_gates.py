"""How much do the enhanced decoder's added parts contribute in the default click model?

The global-attention block and the extra two-way layers enter through per-channel gates that start
at zero. This prints the trained gates' magnitudes and runs the interactive protocol (`--init auto`,
image targets, 20 clicks, global click effect) on GlaS testA and EBHI val twice: with the model as
shipped and with every gate set to zero (the plain decoder's computation on the same trained
weights). Results: benchmarks/decoder_gates.md and benchmarks/results/decoder_gates.json.

    python benchmarks/decoder_gates.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import tempfile
from pathlib import Path

import torch
from machine import cpu_model
from link_test_splits import TEST_SPLITS, link_test_split

from napari_cosas.evaluation.batch import evaluate_folder
from napari_cosas.evaluation.evaluation import EvalProtocol
from napari_cosas.inference.predictor import ClickPredictor
from napari_cosas.models.registry import load_click_model, load_segmenter

HERE = Path(__file__).parent


def gate_statistics(decoder: torch.nn.Module) -> dict[str, dict[str, float]]:
    return {
        name: {"mean_abs": float(p.detach().abs().mean()), "max_abs": float(p.detach().abs().max())}
        for name, p in decoder.named_parameters()
        if name.endswith("gate")
    }


def with_gates_zero(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of a click model with every gate of its enhanced decoder at zero (the plain decoder's
    computation on the same trained weights)."""
    model = copy.deepcopy(model)
    with torch.no_grad():
        for name, p in model.mask_decoder.named_parameters():
            if name.endswith("gate"):
                p.zero_()
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    shipped, model_id = load_click_model("cosas-default-click")
    gates_off = with_gates_zero(shipped)
    segmenter = load_segmenter("cosas-default-segmenter")
    result: dict = {"model_id": model_id, "gates": gate_statistics(shipped.mask_decoder), "protocol": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for dataset in TEST_SPLITS:
            folder = link_test_split(args.data, dataset, Path(tmp) / dataset)
            for variant, model in (("shipped", shipped), ("gates_zero", gates_off)):
                predictor = ClickPredictor(model, f"{model_id}-{variant}", device="cpu")
                report = evaluate_folder(predictor, folder / "images", folder / "masks",
                                         EvalProtocol(init="auto", effect="global"), segmenter=segmenter).to_json()
                curve = report["mean_iou_per_click"]
                result["protocol"][f"{dataset}_{variant}"] = {
                    **{k: report[k] for k in ("noc80", "noc85", "noc90", "nof90")},
                    "iou_after_1": curve[0], "iou_after_20": curve[-1],
                }
    result["machine"] = f"{cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}"
    (HERE / "results" / "decoder_gates.json").write_text(json.dumps(result, indent=2) + "\n")
    (HERE / "decoder_gates.md").write_text(to_markdown(result))


def to_markdown(r: dict) -> str:
    gate_rows = [f"| `{n}` | {g['mean_abs']:.4f} | {g['max_abs']:.4f} |" for n, g in r["gates"].items()]
    rows = [
        f"| {key.split('_', 1)[0]} | {key.split('_', 1)[1]} | {v['noc80']:.2f} | {v['noc85']:.2f} | "
        f"{v['noc90']:.2f} | {v['nof90']} | {v['iou_after_1']:.3f} | {v['iou_after_20']:.3f} |"
        for key, v in r["protocol"].items()
    ]
    return "\n".join([
        "# The enhanced decoder's added parts in the default click model",
        "",
        f"Command: `python benchmarks/decoder_gates.py`. Model `{r['model_id']}`. Machine: {r['machine']}.",
        "",
        "Trained gates (all start at zero; the added parts' output is scaled by them per channel):",
        "",
        "| gate | mean abs | max abs |",
        "|---|---:|---:|",
        *gate_rows,
        "",
        "Interactive protocol from the automatic mask (image targets, 20 clicks, global click effect), "
        "shipped vs every gate set to zero (the plain decoder's computation with the same trained weights):",
        "",
        "| data | variant | NoC@80 | NoC@85 | NoC@90 | NoF@90 | IoU@1 | IoU@20 |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
    ])


if __name__ == "__main__":
    main()
