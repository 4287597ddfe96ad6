"""Enhanced vs plain mask decoder on the product's click path (issue 13, item 5).

Evaluates the click models that ``benchmarks/decoder_ablation.sh`` fine-tuned (same data, steps,
seed and recipe; ``enhanced`` keeps the global attention and the gated extra layers, ``plain``
drops them; ``gate lr x30`` is the enhanced run with its gates learning 30 times faster), the
shipped default they started from, and each enhanced model with every gate set to
zero (the ablation: its plain decoder's computation on the same trained weights). Every row runs
the product's protocol (``--init auto``, local clicks, the default focus refiner and first-click
rule, image targets, 20 clicks), each on the same data:

- ``--split holdout`` (default): the held-out training images (``scripts/split_holdout.py``), to
  choose by;
- ``--split test``: GlaS testA and EBHI val (``../shared/data``, linked, never copied), to report.

Also lists each enhanced model's gates (mean and largest absolute value; all start at zero in a
decoder made enhanced, and the shipped model's gates are where its GPU training left them).

    python benchmarks/decoder_ablation.py [--split holdout|test] [--variants NAME ...] [--jobs 2]

Writes ``benchmarks/results/decoder_ablation_<split>.json`` (the rows of the variants run replace
their earlier rows; the others are kept) and ``benchmarks/decoder_ablation.md`` (from whichever of
the two JSON files exist).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
from decoder_gates import gate_statistics, with_gates_zero
from holdout import report_row
from link_test_splits import TEST_SPLITS, link_test_split
from machine import cpu_model

from napari_cosas.evaluation.batch import evaluate_folder
from napari_cosas.evaluation.evaluation import EvalProtocol
from napari_cosas.models.enhanced_decoder import EnhancedMaskDecoder
from napari_cosas.inference.predictor import ClickPredictor
from napari_cosas.models.registry import DEFAULT_CLICK, DEFAULT_FOCUS, load_click_model, load_focus_refiner, load_segmenter

HERE = Path(__file__).parent
RUNS = Path("runs/decoder_ablation")
#: Variant name -> click model (a registry name or a file) and whether its gates are zeroed.
VARIANTS: dict[str, tuple[str, bool]] = {
    "shipped": (DEFAULT_CLICK, False),
    "shipped, gates zero": (DEFAULT_CLICK, True),
    "enhanced (fine-tuned)": (str(RUNS / "enhanced" / "click.pt"), False),
    "enhanced (fine-tuned), gates zero": (str(RUNS / "enhanced" / "click.pt"), True),
    "plain (fine-tuned)": (str(RUNS / "plain" / "click.pt"), False),
    "enhanced, gate lr x30 (fine-tuned)": (str(RUNS / "enhanced_gate_lr30" / "click.pt"), False),
    "enhanced, gate lr x30 (fine-tuned), gates zero": (str(RUNS / "enhanced_gate_lr30" / "click.pt"), True),
}
log = logging.getLogger("decoder_ablation")
_MODELS: dict = {}


def _predictor(variant: str) -> ClickPredictor:
    """The variant's click model (gates zeroed for an ablation row) behind a `ClickPredictor`."""
    name, gates_zero = VARIANTS[variant]
    model, model_id = load_click_model(name, device="cpu")
    if gates_zero:
        model, model_id = with_gates_zero(model), f"{model_id}-gates-zero"
    return ClickPredictor(model, model_id, device="cpu")


def _load_models() -> None:
    """Each worker process: one torch thread (``THREADS``), the default segmenter and refiner."""
    torch.set_num_threads(int(os.environ.get("THREADS", 1)))
    _MODELS["segmenter"] = load_segmenter("cosas-default-segmenter", device="cpu")
    _MODELS["refiner"] = load_focus_refiner(DEFAULT_FOCUS)


def _evaluate(name: str, folder: Path, variant: str) -> dict:
    report = evaluate_folder(_predictor(variant), folder / "images", folder / "masks", EvalProtocol(init="auto"),
                             segmenter=_MODELS["segmenter"], refiner=_MODELS["refiner"]).to_json()
    row = report_row(name, report, {"variant": variant})
    log.info("%s", json.dumps(row))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="holdout", choices=("holdout", "test"))
    parser.add_argument("--data", type=Path, default=Path("../shared/data"), help="for --split test")
    parser.add_argument("--dev", type=Path, default=Path(".devdata"), help="for --split holdout")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS),
                        help="default: every variant whose model file exists")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (one torch thread each)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    variants = [v for v in args.variants if not VARIANTS[v][0].endswith(".pt") or Path(VARIANTS[v][0]).exists()]
    out = HERE / "results" / f"decoder_ablation_{args.split}.json"
    earlier = json.loads(out.read_text()) if out.exists() else {"rows": [], "gates": {}, "training": {}}
    with tempfile.TemporaryDirectory() as tmp:
        if args.split == "holdout":
            folders = {"GlaS held-out": args.dev / "glas" / "holdout", "EBHI held-out": args.dev / "ebhi" / "holdout"}
        else:
            folders = {f"{d} {split}": link_test_split(args.data, d, Path(tmp) / d) for d, split in TEST_SPLITS.items()}
            folders = {name.replace("glas", "GlaS").replace("ebhi", "EBHI"): f for name, f in folders.items()}
        jobs = [(name, folder, v) for name, folder in folders.items() for v in variants]
        with ProcessPoolExecutor(args.jobs, initializer=_load_models) as pool:
            rows = list(pool.map(_evaluate, *zip(*jobs)))
    gates = {}
    for v in variants:
        name, gates_zero = VARIANTS[v]
        decoder = load_click_model(name, device="cpu")[0].mask_decoder
        if not gates_zero and isinstance(decoder, EnhancedMaskDecoder):
            gates[v] = gate_statistics(decoder)
    summaries = {v: json.loads((Path(VARIANTS[v][0]).parent / "summary.json").read_text())
                 for v in variants if v.endswith("(fine-tuned)") and (Path(VARIANTS[v][0]).parent / "summary.json").exists()}
    training = {v: {k: s.get(k) for k in ("steps", "median_step_s", "final_loss", "precision", "trainable_parameters")}
                for v, s in summaries.items()}
    kept = [r for r in earlier["rows"] if r["variant"] not in variants]
    order = list(VARIANTS)
    result = {"machine": f"{cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, CPU",
              "split": args.split,
              "rows": sorted(kept + rows, key=lambda r: (r["data"].split(" ")[0] != "GlaS", order.index(r["variant"]))),
              "gates": {**earlier["gates"], **gates}, "training": {**earlier["training"], **training}}
    out.write_text(json.dumps(result, indent=2) + "\n")
    (HERE / "decoder_ablation.md").write_text(to_markdown())


def to_markdown() -> str:
    """The report, from the held-out and test JSON files that exist."""
    lines = [
        "# Enhanced vs plain mask decoder",
        "",
        "Training: `DECODER=enhanced bash benchmarks/decoder_ablation.sh` and `DECODER=plain bash "
        "benchmarks/decoder_ablation.sh` (the default click model's decoder fine-tuned on the fit part of the "
        "GlaS and EBHI training splits, same data, steps, seed and recipe; bf16 autocast; one torch thread "
        "each); `gate lr x30`: `DECODER=enhanced GATE_LR_SCALE=30 bash benchmarks/decoder_ablation.sh`, the "
        "same run with the gates learning at 30 times the learning rate (`train-decoder --gate-lr-scale 30`). "
        "Evaluation: `python benchmarks/decoder_ablation.py --split holdout` and `--split test`: the "
        "product's protocol (`--init auto`, local clicks, the default focus refiner and first-click rule, "
        "image targets, 20 clicks). `gates zero`: the same model with every gate of the added parts at zero, "
        "i.e. its plain decoder's computation.",
    ]
    for split, title in (("holdout", "Held-out training images (to choose by)"), ("test", "Test sets (to report)")):
        path = HERE / "results" / f"decoder_ablation_{split}.json"
        if not path.exists():
            continue
        result = json.loads(path.read_text())
        lines += ["", f"## {title}", "", f"Machine: {result['machine']}.", "",
                  "| data | variant | NoC@80 | NoC@85 | NoC@90 | NoF@90 | IoU@1 | IoU@5 | IoU@20 | largest mean-IoU drop |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {r['data']} | {r['variant']} | {r['noc80']:.2f} | {r['noc85']:.2f} | {r['noc90']:.2f} | "
                  f"{r['nof90']} | {r['iou_after_1']:.3f} | {r['iou_after_5']:.3f} | {r['iou_after_20']:.3f} | "
                  f"{r['largest_mean_iou_drop']:.4f} |" for r in result["rows"]]
        sums: dict[str, float] = {}
        for r in result["rows"]:
            sums[r["variant"]] = sums.get(r["variant"], 0.0) + r["noc80"] + r["noc85"] + r["noc90"]
        lines += ["", "Sum of the six NoC values: " + ", ".join(f"{v}: {s:.2f}" for v, s in sums.items()) + "."]
        if split == "holdout":
            lines += ["", "Gates (mean / largest absolute value):", "", "| model | gate | mean abs | max abs |",
                      "|---|---|---:|---:|"]
            lines += [f"| {v} | `{g}` | {s['mean_abs']:.4f} | {s['max_abs']:.4f} |"
                      for v, gs in result["gates"].items() for g, s in gs.items()]
            lines += ["", "Training runs:", "", "| run | steps | median s / step | final loss | precision | trained parameters |",
                      "|---|---:|---:|---:|---|---:|"]
            lines += [f"| {v} | {t['steps']} | {t['median_step_s']:.2f} | {t['final_loss']:.4f} | {t['precision']} | "
                      f"{t['trainable_parameters']:,} |" for v, t in result["training"].items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
