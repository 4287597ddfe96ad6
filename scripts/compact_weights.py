"""Store a napari-cosas checkpoint's floating-point tensors in float16 (half the file size).

    python scripts/half_precision.py runs/seg_default/segmenter.pt weights/segmenter_default.pt

Loading casts them back to the model's float32 parameters.
"""

from __future__ import annotations

import argparse

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source")
    parser.add_argument("target")
    args = parser.parse_args()
    payload = torch.load(args.source, map_location="cpu", weights_only=True)
    payload["state_dict"] = {k: v.half() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
    torch.save(payload, args.target)


if __name__ == "__main__":
    main()
