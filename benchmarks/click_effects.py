"""Reference rows and the first click, chosen on held-out training images.

Runs the interactive protocol (``--init auto``, image targets, 20 clicks, local clicks) on the
held-out GlaS and EBHI training images (``scripts/split_holdout.py``; never on GlaS testA or EBHI
val) for

- the default click model with the first click on the automatic mask taking the model's whole
  prediction (``--first-click global``) or only the region under it (``local``);
- the reference rows of ``napari_cosas.interaction.references``: ``oracle`` (each click flips the whole
  connected error region under it) and ``wand`` (colour flood fill, no model) at several CIE-Lab
  tolerances,

and writes ``benchmarks/results/click_effects.json`` and ``benchmarks/click_effects.md``, which
name the first-click rule (``correctors.FIRST_CLICK``) and the wand tolerance
(``references.WAND_TOLERANCE``) with the lowest sum of the six NoC values.

    THREADS=1 python benchmarks/click_effects.py [--glas .devdata/glas/holdout] [--ebhi .devdata/ebhi/holdout]
"""

from __future__ import annotations

import json
from pathlib import Path

from holdout import evaluate_settings, header, noc_sums, parse_folders

from napari_cosas.interaction.correctors import FIRST_CLICK
from napari_cosas.interaction.references import WAND_TOLERANCE

HERE = Path(__file__).parent
TOLERANCES = (10.0, 15.0, 25.0, 35.0, 50.0)


def main() -> None:
    args = parse_folders(__doc__.splitlines()[0])
    settings = [{"first_click": "global"}, {"first_click": "local"}, {"reference": "oracle"}]
    settings += [{"reference": "wand", "wand_tolerance": t} for t in TOLERANCES]
    rows = evaluate_settings(args, settings)
    (HERE / "results" / "click_effects.json").write_text(json.dumps(rows, indent=2) + "\n")
    write_markdown(rows)


def _name(row: dict) -> str:
    if row.get("reference") == "wand":
        return f"wand, tolerance {row['wand_tolerance']:g}"
    if row.get("reference") == "oracle":
        return "oracle"
    return f"model, first click {row['first_click']}"


def write_markdown(rows: list[dict]) -> None:
    """``benchmarks/click_effects.md`` from the rows of ``results/click_effects.json``."""
    lines = header("Reference rows and the first click", "THREADS=1 python benchmarks/click_effects.py",
                   "the first-click rule and the wand's tolerance") + [
        "Local clicks (the model shown its last 5). `oracle` and `wand` take the same RITM-placed clicks on "
        "the same automatic masks (`napari_cosas.interaction.references`); the wand blurs with a Gaussian of 1.5 px and "
        "fills inside the click window (0.18 of the longer side).",
        "",
        "| data | corrector | NoC@80 | NoC@85 | NoC@90 | NoF@90 | IoU@1 | IoU@5 | IoU@20 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['data']} | {_name(r)} | {r['noc80']:.2f} | {r['noc85']:.2f} | {r['noc90']:.2f} | {r['nof90']} | "
            f"{r['iou_after_1']:.3f} | {r['iou_after_5']:.3f} | {r['iou_after_20']:.3f} |"
        )
    lines += noc_sums(rows, lambda r: _name(r) if r.get("reference") is None else None)
    lines[-1] += f" `correctors.FIRST_CLICK` is {FIRST_CLICK!r}."
    lines += noc_sums(rows, lambda r: _name(r) if r.get("reference") == "wand" else None)[1:]
    lines[-1] += f" `references.WAND_TOLERANCE` is {WAND_TOLERANCE:g}."
    (HERE / "click_effects.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
