"""The CLI end to end on a tiny generated dataset with tiny random models."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from napari_cosas.cli import build_parser, main
from napari_cosas.models.sam_models import build_tiny_sam, save_click_model
from napari_cosas.models.segmenter import SegmenterConfig, build_segmenter


@pytest.fixture
def dataset(tmp_path):
    rng = np.random.default_rng(0)
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for i in range(2):
        image = rng.integers(0, 255, (80, 100, 3), dtype=np.uint8)
        labels = np.zeros((80, 100), np.uint8)
        labels[10:40, 10:50] = 1
        labels[50:70, 60:90] = 2
        iio.imwrite(images / f"patch{i}.png", image)
        iio.imwrite(masks / f"patch{i}.png", labels)
    return images, masks


@pytest.fixture
def models(tmp_path):
    click = save_click_model(build_tiny_sam(decoder="enhanced"), tmp_path / "click.pt",
                             {"arch": "tiny", "decoder": "enhanced", "seed": 0})
    segmenter = tmp_path / "segmenter.pt"
    build_segmenter(SegmenterConfig(backbone="test_convnext", crop=64, stride=43, head_dim=32, neck_dim=32)).save(segmenter)
    return click, segmenter


def test_evaluate_writes_the_documented_fields(dataset, models, tmp_path):
    images, masks = dataset
    click, segmenter = models
    out = tmp_path / "eval.json"
    plot = tmp_path / "curve.png"
    args = ["evaluate", "--images", str(images), "--masks", str(masks), "--model", str(click),
            "--init", "auto", "--segmenter", str(segmenter), "--max-clicks", "3", "--json", str(out),
            "--plot", str(plot), "--device", "cpu", "--cache-dir", str(tmp_path / "cache")]
    assert main(args) == 0
    report = json.loads(out.read_text())
    for key in ("noc80", "noc85", "noc90", "nof85", "nof90", "spc_decoder_s", "spc_total_s",
                "mean_iou_per_click", "n_objects", "objects_detail"):
        assert key in report
    assert report["n_objects"] == 2 and len(report["mean_iou_per_click"]) == 3
    assert all(0 <= r["noc"]["90"] <= 3 for r in report["objects_detail"])
    assert plot.stat().st_size > 0


def test_evaluate_instances_counts_each_label(dataset, models, tmp_path):
    images, masks = dataset
    out = tmp_path / "inst.json"
    assert main(["evaluate", "--images", str(images), "--masks", str(masks), "--model", str(models[0]),
                 "--objects", "instances", "--max-clicks", "2", "--json", str(out), "--device", "cpu",
                 "--no-cache"]) == 0
    assert json.loads(out.read_text())["n_objects"] == 4


def test_segment_then_score(dataset, models, tmp_path):
    images, masks = dataset
    pred = tmp_path / "pred"
    assert main(["segment", "--images", str(images), "--out", str(pred), "--model", str(models[1]),
                 "--device", "cpu"]) == 0
    assert sorted(p.name for p in pred.iterdir()) == ["patch0.png", "patch1.png"]
    out = tmp_path / "score.json"
    assert main(["score", "--pred", str(pred), "--masks", str(masks), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["n_images"] == 2 and 0 <= report["cosas_score"] <= 1


def test_missing_and_mismatched_masks_are_named(dataset, models, tmp_path, capsys):
    images, masks = dataset
    (masks / "patch1.png").unlink()
    with pytest.raises(SystemExit):
        main(["evaluate", "--images", str(images), "--masks", str(masks), "--model", str(models[0]),
              "--json", str(tmp_path / "x.json"), "--device", "cpu", "--no-cache"])
    assert "patch1.png" in capsys.readouterr().err
    iio.imwrite(masks / "patch1.png", np.zeros((10, 10), np.uint8))
    # a mask of the wrong size is skipped with its reason; the other image is still evaluated
    assert main(["evaluate", "--images", str(images), "--masks", str(masks), "--model", str(models[0]),
                 "--json", str(tmp_path / "x.json"), "--device", "cpu", "--no-cache", "--max-clicks", "2"]) == 1
    assert "10x10" in capsys.readouterr().err
    report = json.loads((tmp_path / "x.json").read_text())
    assert report["n_images"] == 1 and [Path(s["file"]).name for s in report["skipped"]] == ["patch1.png"]


def test_evaluate_help_documents_every_option_and_field():
    help_text = build_parser()._subparsers._group_actions[0].choices["evaluate"].format_help()
    for text in ("--init", "--objects", "--max-clicks", "--json", "--plot", "--click-effect", "--click-window",
                 "--click-memory", "noc90", "nof90", "spc_decoder_s", "spc_total_s", "mean_iou_per_click",
                 "click_memory"):
        assert text in help_text


def test_evaluate_help_lists_every_report_field_and_the_json_holds_them(dataset, models, tmp_path):
    """``evaluate --help`` is generated from `EvaluateReport`: every field is listed with its help,
    and the JSON that ``evaluate`` writes has exactly the report's fields, in order."""
    import dataclasses

    from napari_cosas.evaluation.evaluate_report import EvaluateReport

    help_text = build_parser()._subparsers._group_actions[0].choices["evaluate"].format_help()
    listed = [line.split()[0] for line in help_text.splitlines() if line.startswith("  ") and not line.startswith("   ")]
    names = [f.name for f in dataclasses.fields(EvaluateReport)]
    assert all(f.metadata["help"] for f in dataclasses.fields(EvaluateReport))
    assert [n for n in listed if n in names] == names
    images, masks = dataset
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--images", str(images), "--masks", str(masks), "--model", str(models[0]),
                 "--max-clicks", "2", "--json", str(out), "--device", "cpu", "--no-cache"]) == 0
    assert list(json.loads(out.read_text())) == names


def test_click_memory_zero_means_every_click_and_negative_is_refused(dataset, models, tmp_path, capsys):
    images, masks = dataset
    click, _ = models
    out = tmp_path / "eval.json"
    base = ["evaluate", "--images", str(images), "--masks", str(masks), "--model", str(click), "--max-clicks", "2",
            "--json", str(out), "--device", "cpu", "--no-cache"]
    assert main([*base, "--click-memory", "0"]) == 0
    assert json.loads(out.read_text())["click_memory"] is None
    assert main([*base, "--click-memory", "3"]) == 0
    assert json.loads(out.read_text())["click_memory"] == 3
    with pytest.raises(SystemExit):
        main([*base, "--click-memory", "-1"])
    assert "positive number of clicks" in capsys.readouterr().err
