"""Split a training folder pair into ``fit`` and ``holdout`` folders of symlinks, for validation
without touching a test set.

    python scripts/split_holdout.py .devdata/glas/train .devdata/glas --every 6

Every ``--every``-th image (sorted by name, starting with the first) and its mask go to
``OUT/holdout/{images,masks}``, the rest to ``OUT/fit/{images,masks}``. Masks pair with images by
file stem (``napari_cosas.io.image_io.pair_images_and_masks``). Existing output folders are replaced.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from napari_cosas.io.image_io import pair_images_and_masks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("split", type=Path, help="folder holding images/ and masks/")
    parser.add_argument("out", type=Path, help="where fit/ and holdout/ are written")
    parser.add_argument("--every", type=int, default=6)
    args = parser.parse_args()
    pairs = sorted(pair_images_and_masks(args.split / "images", args.split / "masks"), key=lambda p: p.name)
    for part in ("fit", "holdout"):
        shutil.rmtree(args.out / part, ignore_errors=True)
        for kind in ("images", "masks"):
            (args.out / part / kind).mkdir(parents=True)
    for i, pair in enumerate(pairs):
        part = "holdout" if i % args.every == 0 else "fit"
        for kind, path in (("images", pair.image), ("masks", pair.mask)):
            (args.out / part / kind / path.name).symlink_to(path.resolve())
    held = len(range(0, len(pairs), args.every))
    print(f"{len(pairs) - held} fit, {held} holdout pairs in {args.out}")


if __name__ == "__main__":
    main()
