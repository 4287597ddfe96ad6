"""Link the test splits of ../shared/data (GlaS testA, EBHI val) into image / mask folders.

    python benchmarks/link_test_splits.py OUT [--data ../shared/data]

Writes symlinks ``OUT/{glas,ebhi}/{images,masks}/<name>.png`` to the original PNGs, chosen by the
``split`` column of each dataset's metadata.csv; nothing is copied (GlaS stays out of the project).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

TEST_SPLITS = {"glas": "testA", "ebhi": "val"}


def link_test_split(data: Path, dataset: str, out: Path) -> Path:
    """Symlink ``dataset``'s test split into ``out/{images,masks}``; returns ``out``."""
    for kind in ("images", "masks"):
        (out / kind).mkdir(parents=True)
    with open(data / dataset / "metadata.csv", newline="") as fh:
        names = [row["name"] for row in csv.DictReader(fh) if row["split"] == TEST_SPLITS[dataset]]
    for name in names:
        for kind in ("images", "masks"):
            (out / kind / f"{name}.png").symlink_to((data / dataset / kind / f"{name}.png").resolve())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    args = parser.parse_args()
    for dataset in TEST_SPLITS:
        link_test_split(args.data, dataset, args.out / dataset)


if __name__ == "__main__":
    main()
