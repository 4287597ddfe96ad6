"""Summarise benchmarks/results/evaluate_focus_*.json (run_focus_quality.sh) into focus_quality.md."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from machine import cpu_model

HERE = Path(__file__).parent
DATASETS = {"glas": "GlaS testA", "ebhi": "EBHI val"}
#: (refiner, context margin, first click, focus margin, focus window, focus min side) -> the row's name.
VARIANTS = {
    ("cosas-default-focus", "8", "by-size", "1", "0.75", "512"): "focus refiner in a window of 0.75 of the side "
                                                                 "(at least 512 px: the whole of a smaller patch) "
                                                                 "seen at 192 px per image side, its confident "
                                                                 "changes kept, context margin 8, first click by "
                                                                 "size (default)",
    ("cosas-default-focus", "8", "by-size", "1", "0.75", "0"): "focus refiner in a window of 0.75 of the side seen "
                                                               "at 144 px, its confident changes kept, context "
                                                               "margin 8, first click by size",
    ("cosas-default-focus", "8", "by-size", "1", "0.5", "0"): "focus refiner in a window of 0.5 seen at 96 px, its "
                                                              "confident changes in the window kept (focus margin "
                                                              "1), context margin 8, first click by size",
    ("cosas-default-focus", "8", "by-size", "inf", "0.5", "0"): "focus refiner (window 0.5), only the change "
                                                                "connected to the click, context margin 8, first "
                                                                "click by size",
    ("cosas-default-focus", "8", "global", "inf", "0.5", "0"): "focus refiner (window 0.5), only the connected "
                                                               "change, context margin 8, first click global",
    ("cosas-default-focus", "none", "global", "inf", "0.5", "0"): "focus refiner (window 0.5), only the connected "
                                                                  "change, every token, first click global",
    ("none", "none", "global", "inf", "0.5", "0"): "none (plain local click), every token, first click global",
}
#: The widget's and ``evaluate``'s default clicks (``quality.md`` reports this row).
DEFAULT_VARIANT = next(iter(VARIANTS))


def result_path(variant: tuple[str, ...], ds: str) -> Path:
    """The ``evaluate --json`` report ``run_focus_quality.sh`` writes for ``variant`` on data set ``ds``."""
    refiner, margin, first, paste, window, side = variant
    return HERE / "results" / f"evaluate_focus_{refiner}_m{margin}_{first}_p{paste}_w{window}_s{side}_{ds}.json"


def main() -> None:
    lines = [
        "# The focus refiner on the test sets",
        "",
        f"Machine: {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, CPU, one torch thread per "
        "run, two runs at a time. Command: `bash benchmarks/run_focus_quality.sh`. `evaluate --init auto`, image "
        "targets, 20 local clicks (RITM placement), stop at IoU 0.90, default click model shown its last 5 clicks. "
        "The refiner was chosen on held-out training images (`focus_refiner.md`), its window and input scale "
        "(`focus_window_scaled.md`), the window's smallest side (`focus_min_side.md`), what it pastes back (`focus_paste.md`), the context "
        "margin (`attention_context.md`) and the first-click rule (`focus_first_click.md`) too; these sets are for reporting only. SPC: the decoder path's seconds "
        "per click (model, refiner, local update), two runs sharing the two cores. The default rows ran after the "
        "segmenter began to pad a patch smaller than its window with black, as in training (`segmenter_padding.md`); "
        "the other rows ran before, and on EBHI (224-px patches) start from the weaker automatic masks of the "
        "mirrored padding.",
        "",
        "| data | refiner | NoC@80 | NoC@85 | NoC@90 | NoF@85 | NoF@90 | IoU@1 | IoU@5 | IoU@20 | largest mean-IoU drop "
        "| SPC decoder ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for ds, label in DATASETS.items():
        for variant, name in VARIANTS.items():
            path = result_path(variant, ds)
            if not path.exists():
                continue
            r = json.loads(path.read_text())
            curve = r["mean_iou_per_click"]
            drop = max(0.0, *(a - b for a, b in zip(curve, curve[1:])))
            lines.append(
                f"| {label} ({r['n_images']}) | {name} | {r['noc80']:.2f} | {r['noc85']:.2f} | {r['noc90']:.2f} | "
                f"{r['nof85']} | {r['nof90']} | {curve[0]:.3f} | {curve[4]:.3f} | {curve[-1]:.3f} | {drop:.4f} | "
                f"{r['spc_decoder_s'] * 1000:.0f} |"
            )
    (HERE / "focus_quality.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
