"""Closing the viewer while the widget's worker runs (in a subprocess: a crash kills it)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = [pytest.mark.gui, pytest.mark.slow]

SCRIPT = textwrap.dedent(
    """
    import sys, time
    import numpy as np, napari, torch
    from qtpy.QtWidgets import QApplication
    from napari_cosas._widget import CosasWidget
    from napari_cosas.models.sam_models import build_tiny_sam
    from napari_cosas.models.segmenter import SegmenterConfig, build_segmenter
    from napari_cosas.inference.predictor import ClickPredictor
    from napari_cosas.inference.model_bundle import ModelBundle

    torch.manual_seed(0)
    segmenter = build_segmenter(SegmenterConfig(backbone="test_convnext", crop=128, stride=85)).eval()
    predictor = ClickPredictor(build_tiny_sam(decoder="enhanced"), "tiny", device="cpu")
    viewer = napari.Viewer(show=True)
    w = CosasWidget(viewer, models=ModelBundle(segmenter=segmenter, predictor=predictor))
    viewer.window.add_dock_widget(w)
    image = np.random.default_rng(0).integers(0, 256, (1024, 1024, 3), dtype=np.uint8)
    viewer.add_image(image, name="patch", rgb=True)
    w.add_viewer_images()  # segments it in a worker (81 windows)
    assert w.busy, "the segmentation should still run"
    viewer.close()
    for _ in range(50):  # deliver whatever the worker signalled
        QApplication.processEvents()
        time.sleep(0.02)
    print("closed cleanly", flush=True)
    """
)


def test_closing_the_viewer_while_a_patch_segments_does_not_crash(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src"), "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-c", SCRIPT], check=False, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "closed cleanly" in run.stdout
