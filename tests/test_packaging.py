"""The wheel a user installs from PyPI: every module, the napari manifest, the sample data and
the default weights (so the plugin works offline right after ``pip install``)."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_carries_modules_manifest_samples_and_default_weights(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    shutil.copytree(ROOT / "weights", source / "weights")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "dist"), str(source)],
        check=True, capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("napari_cosas-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        sizes = {info.filename: info.file_size for info in archive.infolist()}
    package = ROOT / "src" / "napari_cosas"
    expected = {
        f"napari_cosas/{path.relative_to(package).as_posix()}": path.stat().st_size
        for path in package.rglob("*")
        if path.is_file() and path.suffix in {".py", ".yaml", ".png"}
    }
    expected.update({
        f"napari_cosas/weights/{path.name}": path.stat().st_size
        for path in (ROOT / "weights").glob("*.pt")
    })
    assert len(expected) > 30 and "napari_cosas/weights/click_default.pt" in expected
    missing = sorted(set(expected) - set(sizes))
    assert not missing, f"not in the wheel: {missing}"
    assert {name: sizes[name] for name in expected} == expected

