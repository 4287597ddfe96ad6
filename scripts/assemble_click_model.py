"""Assemble a ConvNeXt click model from a trained segmenter and trained neck / decoder parts.

The default click model's image encoder trunk is the default segmenter's ConvNeXt (frozen during
click training), so a click-training run only needs to ship what it trained: the neck and the
mask decoder (``--parts``: files holding ``{"params": {name: tensor}}``). The result is saved in
float16 with ``save_click_model``.

    python scripts/assemble_click_model.py --segmenter weights/segmenter_default.pt \
        --decoder enhanced --parts run/neck.pt run/decoder.pt --out weights/click_default.pt
"""

from __future__ import annotations

import argparse

import torch

from napari_cosas.models.sam_models import build_click_model, save_click_model
from napari_cosas.training.click_training import init_trunk_from_segmenter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--segmenter", required=True)
    parser.add_argument("--decoder", choices=("plain", "enhanced"), required=True)
    parser.add_argument("--trunk", default="convnext_atto")
    parser.add_argument("--parts", nargs="+", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    config = {"arch": "convnext", "trunk": args.trunk, "decoder": args.decoder}
    model = build_click_model(config)
    init_trunk_from_segmenter(model, args.segmenter)
    trained = {}
    for part in args.parts:
        trained.update(torch.load(part, map_location="cpu", weights_only=True)["params"])
    unknown = set(trained) - set(model.state_dict())
    if unknown:
        raise KeyError(f"parts hold parameters this model does not have: {sorted(unknown)[:5]}")
    model.load_state_dict(trained, strict=False)
    save_click_model(model.half(), args.out, config)


if __name__ == "__main__":
    main()
