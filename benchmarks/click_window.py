"""Choose the local click window (``refine.LOCAL_WINDOW``) on held-out training images.

Runs the interactive protocol (``--init auto``, image targets, 20 clicks) with the global click
effect (RITM: every click shown to the model) and with the local one at several window sizes
(the model shown its last ``refine.CLICK_MEMORY`` clicks), on the held-out GlaS and EBHI
training images (``scripts/split_holdout.py``; never on GlaS testA or EBHI val), and writes
``benchmarks/results/click_window.json`` and ``benchmarks/click_window.md``.

    python benchmarks/click_window.py [--glas .devdata/glas/holdout] [--ebhi .devdata/ebhi/holdout]
"""

from __future__ import annotations

import json
from pathlib import Path

from holdout import evaluate_settings, header, noc_sums, parse_folders

from napari_cosas.inference.refine import CLICK_MEMORY, LOCAL_WINDOW

HERE = Path(__file__).parent
WINDOWS = (0.12, 0.18, 0.25, 0.35)


def main() -> None:
    args = parse_folders(__doc__.splitlines()[0])
    settings = [{"effect": "global", "window": LOCAL_WINDOW, "memory": None}]
    settings += [{"effect": "local", "window": w, "memory": CLICK_MEMORY} for w in WINDOWS]
    rows = evaluate_settings(args, settings)
    (HERE / "results" / "click_window.json").write_text(json.dumps(rows, indent=2) + "\n")
    write_markdown(rows)


def write_markdown(rows: list[dict]) -> None:
    """``benchmarks/click_window.md`` from the rows of ``results/click_window.json``."""
    lines = header("Choosing the local click window", "python benchmarks/click_window.py", "the window") + [
        f"Local rows: the model is shown the last {CLICK_MEMORY} clicks (`refine.CLICK_MEMORY`); the global "
        "row is RITM's protocol (every click shown).",
        "",
        "| data | click effect | window | NoC@80 | NoC@85 | NoC@90 | NoF@90 | IoU@1 | IoU@5 | IoU@20 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        window = f"{r['window']:.2f}" if r["effect"] == "local" else ""
        lines.append(
            f"| {r['data']} | {r['effect']} | {window} | {r['noc80']:.2f} | {r['noc85']:.2f} | {r['noc90']:.2f} | "
            f"{r['nof90']} | {r['iou_after_1']:.3f} | {r['iou_after_5']:.3f} | {r['iou_after_20']:.3f} |"
        )
    lines += noc_sums(rows, lambda r: f"{r['window']:.2f}" if r["effect"] == "local" else None)
    lines[-1] += f" `refine.LOCAL_WINDOW` is {LOCAL_WINDOW}."
    (HERE / "click_window.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
