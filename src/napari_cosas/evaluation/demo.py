"""The headless main job: segment patches, refine them with simulated clicks, export, report.

It drives the same :class:`~napari_cosas.interaction.session.AnnotationSession` as the napari widget: the
automatic mask, then clicks placed by the RITM rule against the ground truth (standing in for a
pathologist), then the widget's export (mask, JSON sidecar, GeoJSON). It adds an overlay per
patch and a report (``report.json``, ``report.md``) with Dice, IoU, NoC and seconds per click.
A patch whose image or mask file cannot be used is listed in the report's ``skipped`` entries
and the others are still done.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from skimage.segmentation import find_boundaries

from ..inference.model_bundle import ModelBundle
from ..interaction.clicks import next_click
from ..interaction.session import AnnotationSession
from ..io.files import atomic_write
from ..io.image_io import encode_image, load_mask
from . import metrics
from .batch import BAD_FILE_ERRORS, skipped_entry
from .evaluation import EvalProtocol

#: Overlay colours (RGB): automatic mask, refined mask, ground truth.
COLOURS = {"auto": (255, 210, 0), "refined": (0, 220, 0), "truth": (40, 120, 255)}


def overlay(image: np.ndarray, masks: dict[str, np.ndarray]) -> np.ndarray:
    """``(H, W, 3)`` uint8 image with the outline of each named mask drawn in its ``COLOURS`` entry."""
    out = image.copy()
    for name, mask in masks.items():
        out[find_boundaries(mask, mode="thick")] = COLOURS[name]
    return out


def run_demo(
    pairs: Sequence[tuple[Path, Path]],
    out_dir: str | Path,
    *,
    models: ModelBundle,
    protocol: EvalProtocol = EvalProtocol(init="auto"),
    log: Callable[[str], None] = lambda _msg: None,
) -> dict:
    """Run the main job on ``(image, ground-truth mask)`` file pairs; return the report.

    Of ``protocol`` (`evaluation.EvalProtocol`) the job uses the click budget (0: the automatic
    mask only), the stop IoU, the click effect and the first-click rule; it always starts from
    the automatic mask, clicks act as in the widget's session (its click window, memory and focus
    window), and the report's NoC is at 0.80 / 0.85 / 0.90. ``ValueError`` before any work for a negative
    ``max_clicks`` or ``stop_iou`` outside ``[0, 1]``.
    """
    max_clicks, stop_iou = protocol.max_clicks, protocol.stop_iou
    if max_clicks < 0:
        raise ValueError(f"--max-clicks {max_clicks}: give 0 (no clicks, the automatic mask only) or more")
    if not 0.0 <= stop_iou <= 1.0:
        raise ValueError(f"stop_iou {stop_iou} is not in [0, 1]")
    out_dir = Path(out_dir)
    session = AnnotationSession(models, click_effect=protocol.effect, first_click=protocol.first_click)
    patches = session.add_files([image for image, _ in pairs])
    records, skipped = [], []
    for patch, (image_path, mask_path) in zip(patches, pairs):
        try:
            gt = load_mask(mask_path, shape=patch.shape) > 0  # patch.shape reads the image
        except BAD_FILE_ERRORS as exc:
            log(f"skipping {patch.name}: {exc}")
            skipped.append(skipped_entry(mask_path if patch.image is not None else image_path, exc))
            continue
        start = time.perf_counter()
        session.apply_segmentation(patch, session.compute_segmentation(patch))
        auto_s = time.perf_counter() - start
        start = time.perf_counter()
        session.prepare_embedding(patch)
        embed_s = time.perf_counter() - start
        auto = patch.auto_mask
        ious: list[float] = []
        latencies: list[float] = []
        initial_iou = metrics.iou(auto, gt)
        if initial_iou < stop_iou:
            for _ in range(max_clicks):
                click = next_click(gt, patch.mask, patch.clicker.not_clicked_mask(patch.shape))
                result = session.click(patch, click.row, click.col, click.is_positive)
                latencies.append(result.latency_s)
                ious.append(metrics.iou(patch.mask, gt))
                if ious[-1] >= stop_iou:
                    break
        exported = session.export(patch, out_dir)
        overlay_path = out_dir / "overlays" / f"{patch.name}.png"
        atomic_write(
            overlay_path,
            encode_image(overlay(patch.load(), {"truth": gt, "auto": auto, "refined": patch.mask}), ".png"),
        )
        records.append(
            {
                "patch": patch.name,
                "size": list(patch.shape),
                "dice_auto": metrics.dice(auto, gt),
                "dice_refined": metrics.dice(patch.mask, gt),
                "iou_auto": initial_iou,
                "iou_refined": metrics.iou(patch.mask, gt),
                "clicks": len(latencies),
                "noc80": metrics.noc(ious, 0.80, max_clicks, initial_iou),
                "noc85": metrics.noc(ious, 0.85, max_clicks, initial_iou),
                "noc90": metrics.noc(ious, 0.90, max_clicks, initial_iou),
                "auto_mask_s": auto_s,
                "embedding_s": embed_s,
                "click_latency_s": latencies,
                "mask_file": str(exported.mask),
                "overlay_file": str(overlay_path),
            }
        )
        log(
            f"{patch.name}: Dice {records[-1]['dice_auto']:.3f} -> {records[-1]['dice_refined']:.3f} "
            f"with {len(latencies)} clicks"
        )
    n_clicks = sum(r["clicks"] for r in records)
    click_s = sum(sum(r["click_latency_s"]) for r in records)
    embed_s = sum(r["embedding_s"] for r in records)

    def mean(key: str) -> float | None:
        return float(np.mean([r[key] for r in records])) if records else None

    report = {
        "segmenter": models.segmenter_id,
        "click_model": models.click_id,
        "click_effect": session.click_effect,
        "focus_refiner": models.focus_name,
        "device": str(models.predictor().device) if records else models.device,
        "n_patches": len(records),
        "mean_dice_auto": mean("dice_auto"),
        "mean_dice_refined": mean("dice_refined"),
        "noc80": mean("noc80"),
        "noc85": mean("noc85"),
        "noc90": mean("noc90"),
        "total_clicks": n_clicks,
        "spc_decoder_s": click_s / n_clicks if n_clicks else None,
        "spc_total_s": (click_s + embed_s) / n_clicks if n_clicks else None,
        "patches": records,
        "skipped": skipped,
    }
    atomic_write(out_dir / "report.json", json.dumps(report, indent=2).encode())
    atomic_write(out_dir / "report.md", report_markdown(report).encode())
    return report


def report_markdown(report: dict) -> str:
    """A short human-readable version of the report."""
    spc = report["spc_decoder_s"]
    lines = [
        "# napari-cosas demo report",
        "",
        f"Segmenter `{report['segmenter']}`, click model `{report['click_model']}` ({report['click_effect']} "
        f"clicks{f', focus refiner `' + report['focus_refiner'] + '`' if report.get('focus_refiner') else ''}), "
        f"device {report['device']}.",
    ]
    if report["n_patches"]:
        lines.append(
            f"{report['n_patches']} patches; mean Dice {report['mean_dice_auto']:.3f} (automatic) -> "
            f"{report['mean_dice_refined']:.3f} (refined); NoC@80/85/90 {report['noc80']:.2f} / "
            f"{report['noc85']:.2f} / {report['noc90']:.2f}; "
            + (f"{spc * 1000:.0f} ms per click (decoder path)." if spc else "no clicks were needed.")
        )
    else:
        lines.append("No patch could be processed.")
    lines += [
        "",
        "| patch | Dice auto | Dice refined | clicks | NoC@90 | auto mask s | embedding s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["patches"]:
        lines.append(
            f"| {r['patch']} | {r['dice_auto']:.3f} | {r['dice_refined']:.3f} | {r['clicks']} | {r['noc90']} | "
            f"{r['auto_mask_s']:.2f} | {r['embedding_s']:.2f} |"
        )
    lines += ["", "Outlines in overlays/: yellow automatic, green refined, blue ground truth."]
    if report["skipped"]:
        lines += ["", f"Skipped {len(report['skipped'])} patches:", ""]
        lines += [f"- {Path(s['file']).name}: {s['reason']}" for s in report["skipped"]]
    return "\n".join(lines) + "\n"
