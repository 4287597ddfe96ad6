"""Summarise a segmenter fine-tune (``segmenter_finetune.sh``) into benchmarks/segmenter_finetune.md:
the held-out validation history (step 0 = the starting model) and the test-set scores of the
default segmenter and of the kept model.

    python benchmarks/summarize_segmenter_finetune.py runs/segmenter_finetune/summary.json
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
from machine import cpu_model

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "segmenter_finetune"
TESTS = {"glas": "GlaS testA (60)", "ebhi": "EBHI val (86)"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("summary", type=Path, help="the run's summary.json")
    parser.add_argument("--md", type=Path, default=HERE / "segmenter_finetune.md")
    args = parser.parse_args()
    run = json.loads(args.summary.read_text())
    config = run["config"]
    history = run["history"]
    kept = max(history, key=lambda h: h["cosas_score"])
    scores = {(m, t): json.loads((RESULTS / f"{m}_{t}.json").read_text()) for m in ("default", "finetuned")
              for t in TESTS}
    lines = [
        "# Fine-tuning the default segmenter on a CPU (backbone frozen)",
        "",
        f"Command: `bash benchmarks/segmenter_finetune.sh`. Machine: {cpu_model()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, device `{os.environ.get('DEVICE', 'cpu')}`.",
        "",
        f"`train-segmenter --init-from cosas-default-segmenter`, backbone frozen: Rein and head learn "
        f"({run['trainable_parameters']:,} of {run['total_parameters']:,} parameters), {config['steps']} steps, "
        f"batch {config['batch_size']}, {config['crop']} crops, learning rate {config['lr']:g}, "
        f"{run['median_step_s']:.2f} s per step (median). Training data: the fit part of the GlaS and EBHI "
        "training splits. Validation: their held-out part (15 GlaS and 19 EBHI images, on which the default "
        "segmenter itself was trained, so its step-0 score is optimistic), every 100 steps; the best step is kept.",
        "",
        "| step | held-out Dice | held-out Jaccard | held-out COSAS score |",
        "| ---: | ---: | ---: | ---: |",
    ]
    for h in history:
        mark = " (kept)" if h is kept else ""
        lines.append(f"| {h['step']}{mark} | {h['dice']:.4f} | {h['jaccard']:.4f} | {h['cosas_score']:.4f} |")
    lines += [
        "",
        "Test sets (never used to choose), COSAS score (Dice / Jaccard):",
        "",
        "| model | " + " | ".join(TESTS.values()) + " |",
        "| --- | " + " | ".join("---:" for _ in TESTS) + " |",
    ]
    for model, label in (("default", "default segmenter"), ("finetuned", f"kept model (step {kept['step']})")):
        cells = [f"{scores[model, t]['cosas_score']:.4f} ({scores[model, t]['dice']:.4f} / "
                 f"{scores[model, t]['jaccard']:.4f})" for t in TESTS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    args.md.write_text("\n".join(lines) + "\n")
    print(args.md.read_text())


if __name__ == "__main__":
    main()
