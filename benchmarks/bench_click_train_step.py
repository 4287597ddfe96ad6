"""Seconds per click-training step on this CPU: the decoder's image context once per step vs per round.

The default click model (``cosas-default-click``), ``--train decoder`` (the image encoder frozen,
its output cached per view), batch 8, up to 4 no-gradient click rounds. Four ways to run the
same step (``napari_cosas.training.click_training.train_step``), interleaved step by step so that
whatever else runs on the machine slows them alike, each from the same optimiser state and the
same random session:

- ``per round``: the enhanced decoder's global attention recomputed for every decoder call (the
  trainer before this benchmark);
- ``shared``: the image context computed once per step and shared by the rounds (the trainer now);
- ``shared, bf16``: the same with bfloat16 autocast (``train-decoder --precision bf16``; it pays
  where the CPU has native bfloat16 matrix instructions);
- ``plain, bf16``: the same model with the enhanced decoder's added parts dropped
  (``models.sam_models.convert_decoder``), what the plain decoder of ``decoder_ablation.sh`` costs.

    python benchmarks/bench_click_train_step.py [--steps 5] [--threads 1]

Writes ``benchmarks/click_train_step.json`` and ``benchmarks/click_train_step.md``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from machine import cpu_model

from napari_cosas.io.image_io import load_image, load_mask, pair_images_and_masks
from napari_cosas.models.enhanced_decoder import EnhancedMaskDecoder
from napari_cosas.models.sam_models import convert_decoder
from napari_cosas.models.registry import load_click_model
from napari_cosas.training.click_simulation import ClickSimulator
from napari_cosas.training.click_training import (
    ClickTrainConfig,
    EncoderSplit,
    build_views,
    set_trainable,
    train_step,
)

HERE = Path(__file__).parent


class PerRoundContext(ClickSimulator):
    """The simulator as it was: every decoder call recomputes the global attention."""

    def context(self, embedding: torch.Tensor) -> torch.Tensor:
        return embedding

    def decode(self, context, points, mask_input):
        """``context`` is the embedding here: the global attention runs again for this call."""
        image_context = self.model.mask_decoder.image_context(context, self.model.prompt_encoder.get_dense_pe())
        return super().decode(image_context, points, mask_input)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=Path(".devdata/ebhi/fit/images"))
    parser.add_argument("--masks", type=Path, default=Path(".devdata/ebhi/fit/masks"))
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--others", default="", help="what else ran on the machine, for the report")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, _model_id = load_click_model("cosas-default-click", device="cpu")
    config = ClickTrainConfig(train="decoder", batch_size=args.batch_size, max_rounds=4)
    pairs = pair_images_and_masks(args.images, args.masks)[: args.batch_size]
    data = [(load_image(p.image), load_mask(p.mask) > 0) for p in pairs]
    split = EncoderSplit(model.image_encoder, "decoder")
    model.eval()
    views = build_views(data, model, split, views_per_image=1, rng=np.random.default_rng(1), device=torch.device("cpu"))
    plain, _ = convert_decoder(copy.deepcopy(model), {"arch": "convnext", "decoder": "enhanced"}, "plain")
    # batched over images as train_click_model trains a plain decoder: no added parts
    plain.mask_decoder = EnhancedMaskDecoder.from_sam(plain.mask_decoder, num_extra_layers=0, global_attention=False)
    variants = {  # name -> (model, simulator, bf16)
        "per round": (model, PerRoundContext, False),
        "shared": (model, ClickSimulator, False),
        "shared, bf16": (model, ClickSimulator, True),
        "plain, bf16": (plain, ClickSimulator, True),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    losses: dict[str, list[float]] = {name: [] for name in variants}
    for step in range(args.steps + 1):  # step 0 warms up and is not counted
        for name, (start_model, simulator, bf16) in variants.items():
            trained = copy.deepcopy(start_model)
            params = set_trainable(trained, "decoder")
            optimizer = torch.optim.AdamW(params, lr=1e-5)
            sim = simulator(trained, EncoderSplit(trained.image_encoder, "decoder"), config, np.random.default_rng(step))
            start = time.perf_counter()
            loss = train_step(sim, views, optimizer, params, bf16=bf16)
            if step:
                times[name].append(time.perf_counter() - start)
                losses[name].append(loss)
    reference = float(np.median(times["per round"]))
    rows = [
        {
            "variant": name,
            "median_step_s": float(np.median(t)),
            "samples_per_s": args.batch_size / float(np.median(t)),
            "speedup_vs_per_round": reference / float(np.median(t)),
            "losses": losses[name],
        }
        for name, t in times.items()
    ]
    machine = f"{cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, {args.threads} torch thread(s)"
    (HERE / "click_train_step.json").write_text(json.dumps({"machine": machine, "others": args.others, "rows": rows}, indent=2) + "\n")
    lines = [
        "# Click-training step time on the CPU",
        "",
        f"Machine: {machine}. Command: `python benchmarks/bench_click_train_step.py --steps {args.steps} "
        f"--threads {args.threads}`. Default click model, `--train decoder` (encoder output cached), batch "
        f"{args.batch_size} EBHI views in SAM's 1024 frame, up to 4 no-gradient rounds; median of {args.steps} "
        "steps per variant, interleaved. What else ran: " + (args.others or "nothing else") + ".",
        "",
        "| variant | median s / step | samples / s | speed-up vs per round |",
        "|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['median_step_s']:.2f} | {r['samples_per_s']:.2f} | {r['speedup_vs_per_round']:.2f}x |")
    lines += [
        "",
        "`per round` is the trainer before the image context was shared (every decoder call recomputed the "
        "enhanced decoder's global attention over the 64x64 image tokens); the losses of `per round` and "
        "`shared` are the same session's (same clicks) and equal up to float rounding; `bf16` is bfloat16 "
        "autocast (`train-decoder --precision bf16`), `plain` the decoder without the added parts "
        "(`train-decoder --decoder plain`).",
    ]
    (HERE / "click_train_step.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
