"""Seconds to open a 1500x1500 patch with the default weights on this CPU.

Opening = the automatic mask (sliding window, crop 512, stride 341) plus the click embedding
(no cache), the work the widget does after "Segment". The patch tiles a bundled EBHI sample.

    python benchmarks/bench_open_patch.py --json benchmarks/open_patch.json --md benchmarks/open_patch.md
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from machine import cpu_model

from napari_cosas._sample_data import sample_path
from napari_cosas.io.image_io import load_image
from napari_cosas.inference.predictor import ClickPredictor
from napari_cosas.models.registry import load_segmenter

SIDE = 1500


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", required=True)
    parser.add_argument("--md", required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tile = load_image(sample_path(0))
    reps = -(-SIDE // tile.shape[0])
    patch = np.ascontiguousarray(np.tile(tile, (reps, reps, 1))[:SIDE, :SIDE])
    segmenter = load_segmenter("cosas-default-segmenter", device="cpu")
    predictor = ClickPredictor.from_registry("cosas-default-click", device="cpu", cache=None)
    segmenter.predict_proba(patch[:512, :512])
    auto, embed = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        segmenter.predict_proba(patch)
        auto.append(time.perf_counter() - start)
        start = time.perf_counter()
        predictor.set_image(patch)
        embed.append(time.perf_counter() - start)
    load = os.getloadavg()
    result = {
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "threads": args.threads, "torch": torch.__version__},
        "load_average_after": load,
        "automatic_mask_s": statistics.median(auto),
        "click_embedding_s": statistics.median(embed),
        "open_patch_s": statistics.median(a + e for a, e in zip(auto, embed)),
        "repeats": args.repeats,
    }
    Path(args.json).write_text(json.dumps(result, indent=2))
    Path(args.md).write_text(
        "# Opening a 1500x1500 patch (default weights, CPU)\n\n"
        f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores, {args.threads} torch threads, "
        f"torch {torch.__version__}; load average after: {', '.join(f'{x:.2f}' for x in load)}. "
        f"Median of {args.repeats}.\n\n"
        "Command: `python benchmarks/bench_open_patch.py --json benchmarks/open_patch.json --md benchmarks/open_patch.md`\n\n"
        "| automatic mask s | click embedding s | open a patch s |\n|---:|---:|---:|\n"
        f"| {result['automatic_mask_s']:.2f} | {result['click_embedding_s']:.2f} | {result['open_patch_s']:.2f} |\n"
    )


if __name__ == "__main__":
    main()
