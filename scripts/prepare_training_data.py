"""Split ../shared/data into per-split image / mask folders, the layout the training commands read.

    python scripts/prepare_training_data.py --data ../shared/data --out .devdata [--jpeg-quality 88]

Writes ``OUT/glas/{train,testA}/{images,masks}`` and ``OUT/ebhi/{train,val}/{images,masks}``
(splits from each dataset's metadata.csv). Images are re-encoded as JPEG at ``--jpeg-quality``
(88 for the default weights, to fit the 64 MiB that travels to the GPU machine); masks stay PNG.
``OUT`` must stay out of git: GlaS is research-only.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import imageio.v3 as iio

SPLITS = {"glas": ("train", "testA"), "ebhi": ("train", "val")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--out", default=".devdata")
    parser.add_argument("--jpeg-quality", type=int, default=88)
    args = parser.parse_args()
    src, dst = Path(args.data), Path(args.out)
    for dataset, splits in SPLITS.items():
        with open(src / dataset / "metadata.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        for split in splits:
            images, masks = dst / dataset / split / "images", dst / dataset / split / "masks"
            images.mkdir(parents=True, exist_ok=True)
            masks.mkdir(parents=True, exist_ok=True)
            for row in (r for r in rows if r["split"] == split):
                name = row["name"]
                image = iio.imread(src / dataset / "images" / f"{name}.png")[..., :3]
                iio.imwrite(images / f"{name}.jpg", image, quality=args.jpeg_quality)
                iio.imwrite(masks / f"{name}.png", iio.imread(src / dataset / "masks" / f"{name}.png"))


if __name__ == "__main__":
    main()
