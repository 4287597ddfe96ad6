"""Summarise benchmarks/results/*.json (written by run_quality.sh) into benchmarks/quality.md."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from machine import cpu_model
from summarize_focus_quality import DEFAULT_VARIANT, result_path

RESULTS = Path(__file__).parent / "results"
DATASETS = {"glas": "GlaS testA (60)", "ebhi": "EBHI val (86)"}


def main() -> None:
    lines = [
        "# Quality of the default weights",
        "",
        f"Machines: 2-core CPUs, CPU only (this summary written on {cpu_model()}, {os.cpu_count()} cores, torch "
        f"{torch.__version__}); NoC does not depend on the machine but through `--click-precision auto` (below). "
        "Command: `bash benchmarks/run_quality.sh runs/click_plain.pt` (the plain decoder is trained by the "
        "command in weights/README.md with `--decoder plain`). Images are the original PNGs from ../shared/data.",
        "",
        "## Automatic masks (`segment` + `score`, probability > 0.49)",
        "",
        "Rerun by `bash benchmarks/segmenter_padding.sh` (the same `segment` and `score` commands) after the "
        "segmenter began to pad a patch smaller than its window with black, as in training "
        "(`segmenter_padding.md`). The interactive rows below the next heading ran before that change: on "
        "EBHI (224-px patches) they start from the weaker automatic masks of the mirrored padding.",
        "",
        "| data | Dice | Jaccard | COSAS score |",
        "|---|---:|---:|---:|",
    ]
    for ds, label in DATASETS.items():
        path = RESULTS / f"segment_{ds}.json"
        if path.exists():
            r = json.loads(path.read_text())
            lines.append(f"| {label} | {r['dice']:.4f} | {r['jaccard']:.4f} | {r['cosas_score']:.4f} |")
    lines += [
        "",
        "## Interactive refinement (`evaluate`, image targets, 20 clicks, stop at IoU 0.90)",
        "",
        "| decoder / reference | click effect | clicks shown | init | data | NoC@80 | NoC@85 | NoC@90 | NoF@85 | NoF@90 | IoU@1 | IoU@5 | IoU@20 | SPC decoder ms | SPC total ms |",
        "|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    runs = [p for p in RESULTS.glob("evaluate_*.json") if not p.stem.startswith("evaluate_focus_")]
    for path in sorted(runs, key=lambda p: (p.stem.split("_")[2] != "local", p.stem)):
        _, decoder, effect, init, ds = path.stem.split("_")
        r = json.loads(path.read_text())
        curve = r["mean_iou_per_click"]
        shown = "" if r.get("reference") else r.get("click_memory") or "all"
        lines.append(
            f"| {decoder} | {effect} | {shown} | {init} | {DATASETS[ds]} | {r['noc80']:.2f} | {r['noc85']:.2f} | {r['noc90']:.2f} | "
            f"{r['nof85']} | {r['nof90']} | {curve[0]:.3f} | {curve[4]:.3f} | {curve[-1]:.3f} | "
            f"{r['spc_decoder_s'] * 1000:.1f} | {r['spc_total_s'] * 1000:.1f} |"
        )
    lines += [
        "",
        "Click effect (`--click-effect`, `napari_cosas.inference.refine.mask_after_click`): `local`, the widget's default, "
        "changes only the connected region under each click after the first (inside a square of side 0.18 of "
        "the longer image side, with the threshold moved to the clicked pixel's logit when the model did not "
        "flip it); `global` makes the mask the model's whole prediction (RITM's protocol). Clicks shown "
        "(`--click-memory`, `napari_cosas.inference.refine.CLICK_MEMORY`): how many of the latest clicks the model "
        "sees, 5 in the widget and for the local rows, all (RITM) for the global rows, which come from a run "
        "before the setting existed. "
        "Reference rows (`--reference`, `napari_cosas.interaction.references`, same automatic masks and RITM-placed "
        "clicks): `oracle`, the perfect local corrector, flips the whole 8-connected error region under each "
        "click; `wand`, a colour flood fill from the clicked pixel in CIE-Lab (Gaussian blur 1.5 px, tolerance "
        "`references.WAND_TOLERANCE` chosen on held-out training images, `benchmarks/click_effects.md`) inside "
        "the click window, positive adds and negative removes, no model. "
        "Each row is the last run that wrote its JSON file: the plain rows and the global rows come from "
        "earlier runs of this script (the plain checkpoint `runs/click_plain.pt` is not kept in the "
        "repository); the enhanced local rows, rerun on the interaction engine (`napari_cosas.interaction.engine`), "
        "reproduced the earlier run's NoC exactly. "
        "NoC counts 0 for an object whose automatic mask already reaches the threshold (`--init auto`). "
        "SPC here comes from whole-dataset runs on a shared 2-core machine; `benchmarks/click.md` has "
        "controlled per-click timings.",
        "",
        "## The product's default clicks",
        "",
        "The rows above predate the focus refiner. The widget's and `evaluate`'s default clicks (local, "
        "focus-refined, the decoder attending to the tokens around the click, the first click by patch size) "
        "on the same sets, from `bash benchmarks/run_focus_quality.sh` (all its rows in `focus_quality.md`), "
        "with the automatic masks above:",
        "",
        "| data | NoC@80 | NoC@85 | NoC@90 | NoF@85 | NoF@90 | IoU@1 | IoU@5 | IoU@20 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for ds, label in DATASETS.items():
        path = result_path(DEFAULT_VARIANT, ds)
        if path.exists():
            r = json.loads(path.read_text())
            curve = r["mean_iou_per_click"]
            lines.append(f"| {label} | {r['noc80']:.2f} | {r['noc85']:.2f} | {r['noc90']:.2f} | {r['nof85']} | "
                         f"{r['nof90']} | {curve[0]:.3f} | {curve[4]:.3f} | {curve[-1]:.3f} |")
    lines += _precision_section()
    lines += _decoder_section()
    (Path(__file__).parent / "quality.md").write_text("\n".join(lines) + "\n")


def _precision_section() -> list[str]:
    """How the default clicks change with the decoder's products in bf16 instead of fp32, from
    ``click_precision.sh``'s test-set runs (the default clicks of their time)."""
    runs = RESULTS / "click_precision"
    sets = {"glas": "glas_testA", "ebhi": "ebhi_val"}
    if not all((runs / f"{p}_{name}.json").exists() for p in ("fp32", "bf16") for name in sets.values()):
        return []
    changed, parts = 0, []
    for ds, name in sets.items():
        fp32, bf16 = (json.loads((runs / f"{p}_{name}.json").read_text()) for p in ("fp32", "bf16"))
        nocs = [{(o["image"], o["name"]): o["noc"] for o in r["objects_detail"]} for r in (fp32, bf16)]
        changed += sum(nocs[0][k] != nocs[1][k] for k in nocs[0])
        parts.append(f"{DATASETS[ds]} {fp32['noc80']:.2f} / {fp32['noc85']:.2f} / {fp32['noc90']:.2f} in fp32, "
                     f"{bf16['noc80']:.2f} / {bf16['noc85']:.2f} / {bf16['noc90']:.2f} in bf16")
    return [
        "",
        "On a CPU that multiplies bf16 natively (this one) the decoder's products are bf16 (`--click-precision "
        "auto`, the widget's and `evaluate`'s default), as in the rows above. `bash benchmarks/click_precision.sh` "
        "ran the default clicks of its time (before the focus refiner's confident changes were kept) in both "
        f"precisions: NoC@80/85/90 {'; '.join(parts)}; {changed} object(s) needed a different number of clicks "
        "(`click_precision.md`).",
    ]


def _decoder_section() -> list[str]:
    """Enhanced vs plain decoder on the product's default clicks, from ``decoder_ablation.py --split test``."""
    path = RESULTS / "decoder_ablation_test.json"
    if not path.exists():
        return []
    rows = json.loads(path.read_text())["rows"]
    lines = [
        "",
        "## Enhanced vs plain decoder (the product's default clicks of the time: focus window 0.5, only the "
        "change connected to the click)",
        "",
        "`bash benchmarks/decoder_ablation.sh` fine-tunes the default click model's decoder on this CPU twice, "
        "with the same data, steps (150), seed and recipe: as it is (enhanced) and with the added parts dropped "
        "(plain); `python benchmarks/decoder_ablation.py --split test` evaluates them, the shipped model they "
        "started from, and the enhanced ones with every gate at zero (the ablation). Held-out rows, gates "
        "and step times: `decoder_ablation.md`.",
        "",
        "| data | decoder | NoC@80 | NoC@85 | NoC@90 | NoF@90 | IoU@1 | IoU@20 |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {r['data']} | {r['variant']} | {r['noc80']:.2f} | {r['noc85']:.2f} | {r['noc90']:.2f} | "
              f"{r['nof90']} | {r['iou_after_1']:.3f} | {r['iou_after_20']:.3f} |" for r in rows]
    return lines


if __name__ == "__main__":
    main()
