"""Shrink a napari-cosas checkpoint (segmenter or click model) for shipping.

    python scripts/compact_weights.py runs/seg_default/segmenter.pt weights/segmenter_default.pt
    python scripts/compact_weights.py --int8 runs/click/click.pt weights/click_default.pt

Floating-point tensors are stored in float16 (half the size); with ``--int8`` the weight matrices
are stored as int8 with per-row scales (a quarter), see `napari_cosas.models.compact_state`.
Loading restores float32 tensors.
"""

from __future__ import annotations

import argparse

import torch

from napari_cosas.models.compact_state import compact_state_dict, expand_state_dict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source")
    parser.add_argument("target")
    parser.add_argument("--int8", action="store_true", help="int8 weight matrices, float16 for the rest")
    args = parser.parse_args()
    payload = torch.load(args.source, map_location="cpu", weights_only=True)
    state = expand_state_dict(payload["state_dict"])
    if args.int8:
        payload["state_dict"] = compact_state_dict(state)
    else:
        payload["state_dict"] = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    torch.save(payload, args.target)


if __name__ == "__main__":
    main()
