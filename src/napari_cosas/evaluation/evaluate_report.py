"""The report of ``napari-cosas evaluate`` (``batch.evaluate_folder``) as one typed object.

Each field of `EvaluateReport` carries its help text; `EvaluateReport.help_text` is the epilog of
``evaluate --help`` and `EvaluateReport.to_json` the JSON file the command writes (one key per
field, in field order). The benchmarks read these keys: rename none. Pure Python, no torch.
"""

from __future__ import annotations

import dataclasses
import textwrap
from dataclasses import dataclass, field
from typing import Any

from ..models.click_decoding import PROB_THRESHOLD

__all__ = ["EvaluateReport"]

_NO_DEFAULT = dataclasses.MISSING


def _field(help: str, default: Any = _NO_DEFAULT) -> Any:
    """A report field with its help text (``metadata["help"]``)."""
    if default is _NO_DEFAULT:
        return field(metadata={"help": help})
    return field(default=default, metadata={"help": help})


def _noc(threshold: str) -> str:
    return (f"mean number of clicks to reach IoU {threshold} (the click budget if never; 0 when an --init auto "
            "mask already reaches it)")


def _nof(threshold: str) -> str:
    return f"number of objects that never reach IoU {threshold} within the click budget (failures)"


@dataclass(frozen=True)
class EvaluateReport:
    """What one ``evaluate`` run measured, and under which protocol and model."""

    n_objects: int = _field("number of objects evaluated (an image's mask > 0, or each instance label)")
    noc80: float = _field(_noc("0.80"))
    nof80: int = _field(_nof("0.80"))
    noc85: float = _field(_noc("0.85"))
    nof85: int = _field(_nof("0.85"))
    noc90: float = _field(_noc("0.90"))
    nof90: int = _field(_nof("0.90"))
    mean_iou_per_click: list[float] = _field(
        "list: mean IoU after click 1..max_clicks (finished objects keep their last IoU)")
    spc_decoder_s: float = _field(
        "seconds per click of the decoder path (prompt encoding, decoding, upsampling to full resolution, "
        "thresholding; a local click after the first upsamples only its window, and its time includes the local "
        "update, the focus refiner and turning the mask into the next prompt)")
    spc_total_s: float = _field("seconds per click end to end, image encoding included")
    encode_s_per_image: float = _field("mean seconds to encode (or load from cache) one image")
    auto_mask_s_per_image: float | None = _field(
        "mean seconds of the automatic segmenter (--init auto only, else null)")
    n_images: int = _field("number of images evaluated (the skipped ones left out)")
    init: str = _field("--init: empty or auto")
    objects: str = _field("--objects: image or instances")
    max_clicks: int = _field("--max-clicks: the click budget per object")
    click_effect: str = _field("--click-effect: local or global")
    click_window: float = _field("--click-window: a local click's window, a fraction of the longer side")
    click_memory: int | None = _field("--click-memory: the latest clicks the model is shown (null: all)")
    first_click: str = _field("--first-click: global, local or by-size")
    focus_window: float | None = _field("--focus-window (null without a refiner)")
    focus_margin: float | None = _field("--focus-margin (null without a refiner; Infinity: only the change "
                                        "connected to the click)")
    focus_resolution: int | None = _field("--focus-resolution: the refiner's pixels per longer image side "
                                          "(null without a refiner)")
    focus_min_side: int | None = _field("--focus-min-side: the focus window's smallest side in pixels, the whole "
                                        "patch where that is smaller (null without a refiner)")
    reference: str | None = _field("--reference: oracle or wand (null: the click model)")
    wand_tolerance: float | None = _field("--wand-tolerance (null unless --reference wand)")
    model_id: str = _field("the click model's id (its name and the hash of its file), or the reference's name")
    device: str = _field("the device the click model ran on")
    skipped: list[dict[str, str]] = _field("the images that could not be used: [{file, reason}, ...]")
    objects_detail: list[dict[str, Any]] = _field(
        'per object: image, name, ious, initial_iou, clicks [[row, col, positive], ...], decoder_seconds, '
        'n_clicks, noc {"80", "85", "90"}')
    refiner: str | None = _field("--refiner: the focus refiner's name or file (null without one)", None)
    context_margin: int | None = _field("--context-margin (null: every token, or a reference row)", None)
    click_precision: str | None = _field(
        "the click decoder's product precision used, fp32 or bf16 (--click-precision; null for a reference row)",
        None)

    def to_json(self) -> dict[str, Any]:
        """The JSON object ``evaluate --json`` writes: one key per field, in field order."""
        return dataclasses.asdict(self)

    @classmethod
    def help_text(cls, width: int = 100) -> str:
        """Every field and its help, one entry each (wrapped to ``width`` columns): the epilog of
        ``evaluate --help``."""
        names = [f.name for f in dataclasses.fields(cls)]
        column = max(map(len, names)) + 4
        lines = ["JSON fields written by evaluate:"]
        for f in dataclasses.fields(cls):
            lines += textwrap.wrap(f.metadata["help"], width, initial_indent=f"  {f.name:<{column - 2}}",
                                   subsequent_indent=" " * column)
        lines.append(f"Protocol: RITM's next-click rule, prediction = probability > {PROB_THRESHOLD}, "
                     "stop at IoU >= 0.90.")
        return "\n".join(lines) + "\n"
