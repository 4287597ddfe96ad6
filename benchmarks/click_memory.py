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

import json
from pathlib import Path

from holdout import evaluate_settings, header, noc_sums, parse_folders

from napari_cosas.inference.refine import CLICK_MEMORY

HERE = Path(__file__).parent
MEMORIES = (1, 3, 5, 8, None)


def main() -> None:
    args = parse_folders(__doc__.splitlines()[0])
    rows = evaluate_settings(args, [{"effect": "local", "memory": m} for m in MEMORIES])
    (HERE / "results" / "click_memory.json").write_text(json.dumps(rows, indent=2) + "\n")
    write_markdown(rows)


def _shown(row: dict) -> str:
    return "all" if row["memory"] is None else str(row["memory"])


def write_markdown(rows: list[dict]) -> None:
    """``benchmarks/click_memory.md`` from the rows of ``results/click_memory.json``."""
    lines = header("Choosing how many clicks the click model is shown", "python benchmarks/click_memory.py",
                   "the setting") + [
        "Local clicks. SPC: seconds per click of the decoder path, on these (small) images.",
        "",
        "| data | clicks shown | NoC@80 | NoC@85 | NoC@90 | NoF@90 | IoU@5 | IoU@20 | SPC s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['data']} | {_shown(r)} | {r['noc80']:.2f} | {r['noc85']:.2f} | {r['noc90']:.2f} | {r['nof90']} | "
            f"{r['iou_after_5']:.3f} | {r['iou_after_20']:.3f} | {r['spc_decoder_s']:.3f} |"
        )
    lines += noc_sums(rows, _shown)
    lines[-1] += f" `refine.CLICK_MEMORY` is {CLICK_MEMORY}."
    (HERE / "click_memory.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
