"""Summarise benchmarks/results/cross_domain/*.json (written by cross_domain.sh) into
benchmarks/cross_domain.md: COSAS score of each training recipe on each test set, and what
cross-task pretraining recovers of the cross-domain gap."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from machine import cpu_model

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "cross_domain"
TESTS = {"glas": "GlaS testA (60)", "ebhi": "EBHI val (86)"}
RECIPES = {
    "glas": "GlaS only",
    "ebhi": "EBHI only",
    "union": "GlaS + EBHI (union)",
    "ebhi_then_glas": "EBHI, then fine-tune on GlaS",
    "glas_then_ebhi": "GlaS, then fine-tune on EBHI",
    "glas_2x": "GlaS only, 2x steps",
    "ebhi_2x": "EBHI only, 2x steps",
}
OTHER = {"glas": "ebhi", "ebhi": "glas"}


def score(recipe: str, test: str) -> float:
    return json.loads((RESULTS / f"{recipe}_{test}.json").read_text())["cosas_score"]


def main() -> None:
    steps, batch, crop = os.environ["STEPS"], os.environ["BATCH"], os.environ["CROP"]
    lines = [
        "# Cross-domain segmenter experiment",
        "",
        f"Command: `STEPS={steps} BATCH={batch} CROP={crop} bash benchmarks/cross_domain.sh`. "
        f"Machine: {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}.",
        "",
        f"Every recipe trains ConvNeXt-atto + Rein + head from the same random initialisation for {steps} "
        f"steps of {batch} crops of {crop}x{crop} (fine-tuning: {steps} more steps from the source-only run; "
        f"\"2x steps\": {2 * int(steps)} steps, the compute of pretraining + fine-tuning). "
        "Score: COSAS score (mean of Dice and Jaccard per image, probability > 0.49) on the untouched test splits.",
        "",
        "| training recipe | " + " | ".join(TESTS.values()) + " |",
        "|---|" + "---:|" * len(TESTS),
    ]
    for recipe, label in RECIPES.items():
        lines.append(f"| {label} | " + " | ".join(f"{score(recipe, t):.4f}" for t in TESTS) + " |")
    lines += ["", "## Cross-domain gap and what cross-task pretraining recovers", ""]
    lines += [
        "| target | in-domain (target only) | cross-domain (other only) | gap | pretrain on other, fine-tune on target "
        "| target only, 2x steps | union |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for target, label in TESTS.items():
        source = OTHER[target]
        own, cross = score(target, target), score(source, target)
        tuned, union = score(f"{source}_then_{target}", target), score("union", target)
        longer = score(f"{target}_2x", target)
        lines.append(
            f"| {label} | {own:.4f} | {cross:.4f} | {own - cross:+.4f} | {tuned:.4f} ({tuned - own:+.4f}) | "
            f"{longer:.4f} ({longer - own:+.4f}) | {union:.4f} ({union - own:+.4f}) |"
        )
    lines += [
        "",
        "Differences are against the in-domain column. One seed per recipe: differences of a point or two "
        "are within what another seed could change.",
    ]
    (HERE / "cross_domain.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
