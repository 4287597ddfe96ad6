"""The core never imports napari or Qt, opening a sidecar in napari does not load torch, the package
has no import cycle, and the widget hides triton only while it imports the model stack."""

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
    assert "napari_cosas.interaction.engine" in core and "napari_cosas.training.click_training" in core
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


def _package_imports() -> dict[str, set[str]]:
    """Each module of the package and the package modules it imports, at import time or inside a
    function (imports under ``if TYPE_CHECKING:`` are for type checkers only and left out)."""
    import ast
    from pathlib import Path

    root = Path(napari_cosas.__file__).parent
    files = {}
    for path in root.rglob("*.py"):
        parts = ("napari_cosas", *path.relative_to(root).with_suffix("").parts)
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        found: set[str] = set()
        stack = [ast.parse(path.read_text())]
        while stack:
            for node in ast.iter_child_nodes(stack.pop()):
                if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                    continue
                if isinstance(node, ast.ImportFrom):
                    base = ".".join([*package[: len(package) - node.level + 1], node.module or ""]).strip(".") \
                        if node.level else node.module or ""
                    found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names}
                elif isinstance(node, ast.Import):
                    found |= {a.name for a in node.names}
                stack.append(node)
        graph[name] = {m for m in found if m in files and m != name}
    return graph


def test_no_import_cycles_in_the_package() -> None:
    """No module of the package reaches itself through its imports (lazy ones included)."""
    graph = _package_imports()
    assert "napari_cosas.models.checkpoints" in graph["napari_cosas.models.segmenter"]
    cycles = []
    for start in graph:
        seen, frontier = set(), list(graph[start])
        while frontier:
            module = frontier.pop()
            if module == start:
                cycles.append(start)
                break
            if module not in seen:
                seen.add(module)
                frontier.extend(graph[module])
    assert cycles == []


def test_the_widget_hides_triton_only_while_it_imports_the_model_stack() -> None:
    """`_widget_process.import_model_stack` loads torch, timm and segment-anything without
    triton, and leaves ``import triton`` to work again afterwards (nothing hidden for good)."""
    import importlib.util

    has_triton = importlib.util.find_spec("triton") is not None
    statement = (
        "from napari_cosas._widget_process import import_model_stack\n"
        "import_model_stack()\n"
        "assert 'torch' in sys.modules and 'timm' in sys.modules and 'segment_anything' in sys.modules\n"
        "assert 'triton' not in sys.modules\n"
        + ("import triton\n" if has_triton else "")
    )
    assert ("triton" in _loaded_after(statement)) == has_triton


LAYERS = ["io", "models", "inference", "interaction", "evaluation", "training"]  # bottom to top


def test_each_core_layer_imports_only_the_layers_below_it() -> None:
    """`io` <- `models` <- `inference` <- `interaction` <- `evaluation` <- `training`; the front ends
    (top-level modules) sit above them all and no core module imports a front end."""
    def layer(module: str) -> int:
        parts = module.split(".")
        return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else len(LAYERS)

    graph = _package_imports()
    assert "napari_cosas.io.files" in graph["napari_cosas.models.segmenter"]
    upward = sorted((a, b) for a, deps in graph.items() for b in deps
                    if layer(a) < len(LAYERS) and layer(b) > layer(a))
    assert upward == []
