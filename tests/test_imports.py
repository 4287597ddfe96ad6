"""The core never imports napari or Qt, and opening a sidecar in napari does not load torch."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import napari_cosas

FRONT_END = {"_widget", "_reader", "_writer", "_sample_data"}  # and the widget's parts, `_widget_*`


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint(' '.join(sorted(m.split('.')[0] for m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_the_core_loads_neither_napari_nor_qt() -> None:
    core = [m.name for m in pkgutil.walk_packages(napari_cosas.__path__, "napari_cosas.")
            if m.name.rsplit(".", 1)[-1] not in FRONT_END and not m.name.rsplit(".", 1)[-1].startswith("_widget_")]
    assert "napari_cosas.interaction" in core and "napari_cosas.training.click_training" in core
    loaded = _loaded_after("\n".join(f"import {name}" for name in core))
    assert not loaded & {"napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "vispy"}


def test_the_reader_does_not_load_torch() -> None:
    assert "torch" not in _loaded_after("import napari_cosas._reader")


def test_score_does_not_load_torch(tmp_path) -> None:
    """``napari-cosas score`` is pure numpy: scoring a folder loads no torch."""
    import imageio.v3 as iio
    import numpy as np

    for folder in ("pred", "gt"):
        (tmp_path / folder).mkdir()
        mask = np.zeros((16, 16), np.uint8)
        mask[4:12, 4:12 if folder == "gt" else 10] = 255
        iio.imwrite(tmp_path / folder / "a.png", mask)
    statement = (
        "from napari_cosas.cli import main\n"
        f"assert main(['score', '--pred', {str(tmp_path / 'pred')!r}, '--masks', {str(tmp_path / 'gt')!r}, "
        f"'--json', {str(tmp_path / 's.json')!r}]) == 0"
    )
    assert "torch" not in _loaded_after(statement)
    assert (tmp_path / "s.json").exists()
