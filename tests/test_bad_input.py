"""The bad-input suite (issue 15): faults and careless inputs a user meets, each handled without
losing or silently corrupting anything. Every case states what the user relies on.

Tiny images and tiny random models keep it fast; subprocesses stand in for a second process
exporting at the same moment and for a process killed midway through an export.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import logging
import math
import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
import torch

import napari_cosas
from napari_cosas.models import checkpoints
from napari_cosas.models import registry
from napari_cosas.models.checkpoints import ChecksumMismatchError, WeightsError
from napari_cosas.cli import main
from napari_cosas.inference.embedding_cache import CachedEmbedding, CacheKey, EmbeddingCache
from napari_cosas.io.exports import (
    SIDECARS_DIR,
    export_problem,
    latest_exports,
    safe_stem,
    write_export,
)
from napari_cosas.io.files import atomic_write
from napari_cosas.io.image_io import (
    DataWarning,
    ImageFormatError,
    as_rgb_uint8,
    encode_image,
    image_sha256,
    load_image,
    load_mask,
    pair_images_and_masks,
    save_mask,
)
from napari_cosas.inference.model_bundle import ModelBundle
from napari_cosas.models.sam_models import build_tiny_sam, save_click_model
from napari_cosas.models.segmenter import (
    ModelOutputError,
    SegmenterConfig,
    build_segmenter,
)
from napari_cosas.inference.predictor import ClickPredictor
from napari_cosas.models.registry import ModelSpec
from napari_cosas.interaction.session import AnnotationSession

SRC = str(Path(napari_cosas.__file__).resolve().parents[1])
TINY_SEGMENTER = SegmenterConfig(backbone="test_convnext", crop=64, stride=43, head_dim=32, neck_dim=32)


# ----------------------------------------------------------------------------- fixtures


def _images(folder: Path, names=("patch0", "patch1"), shape=(48, 64)) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        iio.imwrite(folder / f"{name}.png", rng.integers(0, 256, (*shape, 3), dtype=np.uint8))
    return folder


def _masks(folder: Path, names=("patch0", "patch1"), shape=(48, 64)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        mask = np.zeros(shape, bool)
        mask[10:30, 10:40] = True
        save_mask(folder / f"{name}.png", mask)
    return folder


@pytest.fixture(scope="module")
def model_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    segmenter = folder / "segmenter.pt"
    build_segmenter(TINY_SEGMENTER).save(segmenter)
    click = save_click_model(build_tiny_sam(decoder="enhanced"), folder / "click.pt",
                             {"arch": "tiny", "decoder": "enhanced", "seed": 0})
    other = save_click_model(build_tiny_sam(decoder="enhanced", seed=1), folder / "click_other.pt",
                             {"arch": "tiny", "decoder": "enhanced", "seed": 1})
    return {"segmenter": segmenter, "click": click, "click_other": other}


@pytest.fixture(scope="module")
def bundle() -> ModelBundle:
    torch.manual_seed(0)
    segmenter = build_segmenter(TINY_SEGMENTER).eval()
    predictor = ClickPredictor(build_tiny_sam(decoder="enhanced"), "tiny", device="cpu")
    return ModelBundle(segmenter=segmenter, predictor=predictor, segmenter_id="tiny-segmenter")


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def _run_python(code: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


# ----------------------------------------------------------------------------- 1. segment never overwrites


def test_segment_refuses_to_write_into_the_images_folder(tmp_path, model_files, capsys):
    images = _images(tmp_path / "images")
    before = _digests(images)
    with pytest.raises(SystemExit) as err:
        main(["segment", "--images", str(images), "--out", str(images), "--model", str(model_files["segmenter"]),
              "--device", "cpu"])
    assert err.value.code == 2 and "images folder" in capsys.readouterr().err
    assert _digests(images) == before


def test_segment_keeps_existing_masks_unless_overwrite(tmp_path, model_files, capsys):
    images, truth = _images(tmp_path / "images"), _masks(tmp_path / "truth")
    before = _digests(truth)
    args = ["segment", "--images", str(images), "--out", str(truth), "--model", str(model_files["segmenter"]),
            "--device", "cpu"]
    with pytest.raises(SystemExit):
        main(args)
    err = capsys.readouterr().err
    assert "--overwrite" in err and "patch0.png" in err
    assert _digests(truth) == before  # the ground truth is intact
    assert main([*args, "--overwrite"]) == 0  # asked for: replaced
    assert _digests(truth) != before


def test_segment_refuses_two_images_with_one_stem(tmp_path, model_files, capsys):
    images = _images(tmp_path / "images", names=("a",))
    iio.imwrite(images / "a.jpg", np.full((48, 64, 3), 128, np.uint8))
    out = tmp_path / "out"
    with pytest.raises(SystemExit):
        main(["segment", "--images", str(images), "--out", str(out), "--model", str(model_files["segmenter"]),
              "--device", "cpu"])
    assert "a.jpg and a.png" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())


def test_atomic_write_never_replaces_when_asked_not_to(tmp_path):
    target = tmp_path / "x.bin"
    atomic_write(target, b"first", overwrite=False)
    with pytest.raises(FileExistsError):
        atomic_write(target, b"second", overwrite=False)
    assert target.read_bytes() == b"first" and sorted(p.name for p in tmp_path.iterdir()) == ["x.bin"]


# ----------------------------------------------------------------------------- 2. concurrent exports

EXPORT_WORKER = """
import sys, time
import numpy as np
from napari_cosas.inference.model_bundle import ModelBundle
from napari_cosas.interaction.session import AnnotationSession

out, writer, rounds, start = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
session = AnnotationSession(ModelBundle(segmenter_id="none"))
while time.time() < start:
    pass
for r in range(rounds):
    patch = session.add_array("patch", np.full((16, 16, 3), 16 * writer + r, np.uint8))
    session.sync_mask(patch, np.kron(np.unpackbits(np.array([[writer], [r]], np.uint8), axis=1), np.ones((8, 2))))
    session.export(patch, out)
"""


def test_two_processes_exporting_one_patch_lose_nothing(tmp_path):
    out, rounds = tmp_path / "out", 15
    start = time.time() + 4.0
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", EXPORT_WORKER, str(out), str(w), str(rounds), str(start)],
                              env=env, stderr=subprocess.PIPE, text=True) for w in (1, 2)]
    for proc in procs:
        assert proc.wait(timeout=120) == 0, proc.stderr.read()
    seen = set()
    sidecars = sorted((out / SIDECARS_DIR).glob("*.json"))
    assert len(sidecars) == 2 * rounds
    for path in sidecars:
        data = json.loads(path.read_text())
        mask = load_mask(path.parent / data["mask_file"])[::8, ::2] > 0
        writer, r = (int(v) for v in np.packbits(mask, axis=1)[:, 0])
        image = np.full((16, 16, 3), 16 * writer + r, np.uint8)
        assert data["image"]["sha256"] == image_sha256(image)  # the sidecar describes its own mask
        assert export_problem(path) is None
        seen.add((writer, r))
    assert seen == {(w, r) for w in (1, 2) for r in range(rounds)}


# ----------------------------------------------------------------------------- 3. killed exports

KILLED_EXPORT = """
import json, os, sys
import numpy as np
from napari_cosas.io import exports
from napari_cosas.io.image_io import encode_image

out, survive = sys.argv[1], int(sys.argv[2])
real, done = exports.atomic_write, []

def dying(path, data, **kwargs):
    if len(done) == survive:
        os._exit(9)  # killed: no clean-up runs
    real(path, data, **kwargs)
    done.append(path)

exports.atomic_write = dying
mask = np.ones((8, 8), np.uint8) * 255
exports.write_export(out, "x", mask=encode_image(mask, ".png"), suffix=".png", geojson=b"{}",
                     sidecar={"format": "napari-cosas-sidecar/1", "image": {"name": "x"}})
"""


def test_an_export_killed_midway_is_never_taken_for_a_complete_one(tmp_path, caplog):
    out = tmp_path / "out"
    images = _images(tmp_path / "images", names=("x",), shape=(8, 8))
    good = np.zeros((8, 8), np.uint8)
    first = write_export(out, "x", mask=encode_image(good, ".png"), suffix=".png", geojson=b"{}",
                         sidecar={"format": "napari-cosas-sidecar/1", "image": {"name": "x"}})
    for survive in (0, 1, 2):  # killed after the claim, after the mask, after the GeoJSON
        assert _run_python(KILLED_EXPORT, str(out), str(survive)).returncode == 9
    (out / "masks" / ".x_v9.png.0123abcd.tmp").write_bytes(b"partial")  # a rename that never happened
    with caplog.at_level(logging.WARNING):
        latest = latest_exports(out / "masks")
    assert latest["x"].mask == first.mask.resolve()
    assert "x_v3.png" in caplog.text and "x_v4.png" in caplog.text  # the orphans are named
    (pair,) = pair_images_and_masks(images, out / "masks")
    assert pair.mask == first.mask.resolve()
    later = write_export(out, "x", mask=encode_image(good, ".png"), suffix=".png", geojson=b"{}",
                         sidecar={"format": "napari-cosas-sidecar/1", "image": {"name": "x"}})
    assert later.mask.name == "x_v5.png"  # interrupted stems stay claimed, nothing is overwritten
    assert latest_exports(out / "masks")["x"].mask == later.mask.resolve()


def test_a_damaged_exported_mask_is_not_complete(tmp_path, bundle):
    session = AnnotationSession(bundle)
    patch = session.add_array("p", np.zeros((16, 16, 3), np.uint8))
    session.sync_mask(patch, np.eye(16, dtype=bool))
    result = session.export(patch, tmp_path)
    assert export_problem(result.sidecar) is None
    result.mask.write_bytes(result.mask.read_bytes()[:-8])
    assert "damaged" in export_problem(result.sidecar)


def test_output_files_follow_the_umask(tmp_path, bundle, model_files):
    old = os.umask(0o022)
    try:
        session = AnnotationSession(bundle)
        patch = session.add_array("p", np.zeros((16, 16, 3), np.uint8))
        session.sync_mask(patch, np.eye(16, dtype=bool))
        result = session.export(patch, tmp_path / "export")
        build_segmenter(TINY_SEGMENTER).save(tmp_path / "seg.pt")
        save_click_model(build_tiny_sam(decoder="plain"), tmp_path / "click.pt", {"arch": "tiny", "decoder": "plain"})
        cache = EmbeddingCache(tmp_path / "cache")
        entry = cache.put(CacheKey("a", "b", "c"), CachedEmbedding(np.zeros((1, 2, 2, 2), np.float32), (8, 8)))
        files = [result.mask, result.sidecar, result.geojson, save_mask(tmp_path / "m.png", np.eye(4)),
                 tmp_path / "seg.pt", tmp_path / "click.pt"]
        for path in files:
            assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
        assert stat.S_IMODE(entry.stat().st_mode) == 0o755
    finally:
        os.umask(old)


# ----------------------------------------------------------------------------- 4. silently wrong results


def test_weights_override_gets_the_model_id_of_its_own_bytes(tmp_path, model_files, monkeypatch, register):
    cache = tmp_path / "cache"
    cache.mkdir()
    registered = cache / "registered.pt"
    registered.write_bytes(model_files["click"].read_bytes())
    digest = hashlib.sha256(registered.read_bytes()).hexdigest()
    monkeypatch.setenv("NAPARI_COSAS_CACHE", str(cache))
    register(ModelSpec(
        name="test-click", architecture="convnext_sam", description="", licence="", filename="registered.pt",
        url="http://127.0.0.1:9/registered.pt", known_hash=f"sha256:{digest}"))
    _, registered_id = registry.load_click_model("test-click")
    _, other_id = registry.load_click_model("test-click", weights=model_files["click_other"])
    assert registered_id == f"test-click-{digest[:16]}"
    assert other_id != registered_id
    assert other_id.endswith(hashlib.sha256(model_files["click_other"].read_bytes()).hexdigest()[:16])


def test_bundled_weights_carry_a_checked_sha256(tmp_path, monkeypatch):
    for name in ("cosas-default-segmenter", "cosas-default-click"):
        spec = registry.get_spec(name)
        assert spec.known_hash and spec.known_hash.startswith("sha256:")
        shipped = Path(SRC).parent / "weights" / spec.filename
        if shipped.is_file():  # the repository's copy is the registered one
            assert hashlib.sha256(shipped.read_bytes()).hexdigest() == spec.known_hash.split(":")[1]
    spec = registry.get_spec("cosas-default-segmenter")
    flipped = tmp_path / spec.filename
    flipped.write_bytes(b"\x00" * 64)
    monkeypatch.delenv("NAPARI_COSAS_WEIGHTS", raising=False)
    monkeypatch.setattr(checkpoints, "weights_dirs", lambda: [tmp_path])
    with pytest.raises(ChecksumMismatchError, match="reinstall"):
        registry.fetch_weights("cosas-default-segmenter")


def test_nan_weights_and_nan_output_are_refused(tmp_path):
    model = build_segmenter(TINY_SEGMENTER)
    with torch.no_grad():
        next(model.head.parameters()).view(-1)[0] = float("nan")
    model.save(tmp_path / "nan.pt")
    with pytest.raises(WeightsError, match="nan.pt.*NaN"):
        registry.load_segmenter(tmp_path / "nan.pt")
    with pytest.raises(ModelOutputError, match="NaN"):
        model.predict_proba(np.zeros((64, 64, 3), np.uint8))
    click = build_tiny_sam(decoder="plain")
    with torch.no_grad():
        click.mask_decoder.iou_token.weight[0, 0] = float("inf")
    save_click_model(click, tmp_path / "inf.pt", {"arch": "tiny", "decoder": "plain"})
    with pytest.raises(WeightsError, match="inf.pt.*infinite"):
        registry.load_click_model(tmp_path / "inf.pt")


def test_names_ending_in_vn_pair_with_their_own_masks(tmp_path):
    images = _images(tmp_path / "images", names=("slide", "slide_v2"), shape=(8, 8))
    masks = tmp_path / "masks"
    masks.mkdir()
    save_mask(masks / "slide.png", np.eye(8, dtype=bool))
    save_mask(masks / "slide_v2.png", np.ones((8, 8), bool))
    assert {p.name: p.mask.name for p in pair_images_and_masks(images, masks)} == {
        "slide": "slide.png", "slide_v2": "slide_v2.png"}
    out = tmp_path / "scores.json"
    assert main(["score", "--pred", str(masks), "--masks", str(masks), "--json", str(out)]) == 0
    assert {k: v["cosas_score"] for k, v in json.loads(out.read_text())["per_image"].items()} == {
        "slide": 1.0, "slide_v2": 1.0}
    # in an export folder the sidecars say which file is which patch's latest version
    export = tmp_path / "export"
    for name, fill in (("slide", 0), ("slide", 1), ("slide_v2", 2)):
        write_export(export, name, mask=encode_image(np.full((8, 8), fill, np.uint8), ".png"), suffix=".png",
                     geojson=b"{}", sidecar={"format": "napari-cosas-sidecar/1", "image": {"name": name}})
    pairs = {p.name: load_mask(p.mask)[0, 0] for p in pair_images_and_masks(images, export / "masks")}
    assert pairs == {"slide": 1, "slide_v2": 2}


def test_jpeg_ground_truth_is_refused_unless_asked(tmp_path, capsys):
    truth = tmp_path / "truth"
    truth.mkdir()
    mask = np.zeros((32, 32), np.uint8)
    mask[8:24, 8:24] = 255
    iio.imwrite(truth / "a.jpg", mask, quality=60)
    pred = _masks(tmp_path / "pred", names=("a",), shape=(32, 32))
    save_mask(pred / "a.png", mask > 0)
    out = tmp_path / "s.json"
    with pytest.raises(SystemExit):
        main(["score", "--pred", str(pred), "--masks", str(truth), "--json", str(out)])
    assert "--allow-jpeg-masks" in capsys.readouterr().err and not out.exists()
    assert main(["score", "--pred", str(pred), "--masks", str(truth), "--json", str(out), "--allow-jpeg-masks"]) == 0
    assert json.loads(out.read_text())["cosas_score"] == 1.0  # noise thresholded away, not counted as tumour


def test_score_says_when_predictions_cover_only_some_masks(tmp_path, caplog):
    truth = _masks(tmp_path / "truth", names=("a", "b", "c"))
    pred = _masks(tmp_path / "pred", names=("a",))
    out = tmp_path / "s.json"
    with caplog.at_level(logging.WARNING):
        assert main(["score", "--pred", str(pred), "--masks", str(truth), "--json", str(out)]) == 0
    assert "2 of the 3 ground-truth masks" in caplog.text
    assert json.loads(out.read_text())["masks_without_prediction"] == ["b", "c"]


# ----------------------------------------------------------------------------- 5. robust batches


def test_segment_reports_a_bad_image_and_does_the_others(tmp_path, model_files, capsys):
    images = _images(tmp_path / "images", names=("a", "c"))
    (images / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n-- truncated")
    out = tmp_path / "out"
    assert main(["segment", "--images", str(images), "--out", str(out), "--model", str(model_files["segmenter"]),
                 "--device", "cpu"]) == 1
    assert "b.png" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "c.png"]


def test_demo_reports_a_bad_patch_and_writes_its_report(tmp_path, model_files, capsys):
    images, masks = _images(tmp_path / "images", names=("a", "b")), _masks(tmp_path / "masks", names=("a", "b"))
    (masks / "b.png").write_bytes(b"")  # an empty mask file
    out = tmp_path / "demo"
    assert main(["demo", "--images", str(images), "--masks", str(masks), "--out", str(out), "--segmenter",
                 str(model_files["segmenter"]), "--model", str(model_files["click"]), "--device", "cpu",
                 "--max-clicks", "1"]) == 1
    report = json.loads((out / "report.json").read_text())
    assert report["n_patches"] == 1 and Path(report["skipped"][0]["file"]).name == "b.png"
    assert "empty file" in report["skipped"][0]["reason"]
    assert "b.png" in (out / "report.md").read_text()
    assert report["focus_refiner"] == "cosas-default-focus" and "focus refiner" in (out / "report.md").read_text()


def test_evaluate_reports_a_bad_image_and_keeps_its_json(tmp_path, model_files, capsys):
    images, masks = _images(tmp_path / "images", names=("a", "b")), _masks(tmp_path / "masks", names=("a", "b"))
    (images / "b.png").write_text("not an image")
    out = tmp_path / "e.json"
    assert main(["evaluate", "--images", str(images), "--masks", str(masks), "--model", str(model_files["click"]),
                 "--max-clicks", "1", "--json", str(out), "--device", "cpu", "--no-cache"]) == 1
    report = json.loads(out.read_text())
    assert report["n_images"] == 1 and Path(report["skipped"][0]["file"]).name == "b.png"


def test_a_json_path_that_is_a_folder_fails_before_the_run(tmp_path, model_files, capsys):
    images, masks = _images(tmp_path / "images"), _masks(tmp_path / "masks")
    with pytest.raises(SystemExit):
        main(["evaluate", "--images", str(images), "--masks", str(masks), "--model", str(model_files["click"]),
              "--json", str(tmp_path), "--device", "cpu", "--no-cache"])
    assert "is a folder" in capsys.readouterr().err


ENTRY = CachedEmbedding(np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4), (64, 48))


def test_cache_concurrent_writers_of_one_entry(tmp_path):
    cache = EmbeddingCache(tmp_path)
    key = CacheKey("img", "model", "v")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        paths = list(pool.map(lambda _: cache.put(key, ENTRY), range(40)))
    assert all(p == cache.path(key) for p in paths)
    assert cache.get(key).input_size == (64, 48)
    assert [p.name for p in tmp_path.iterdir()] == [cache.path(key).name]  # no temporary folder left


def test_cache_that_cannot_be_written_only_warns(tmp_path, monkeypatch, caplog):
    import napari_cosas.inference.embedding_cache as cache_mod

    def denied(parent, name):
        raise PermissionError(13, "Permission denied", str(parent))

    monkeypatch.setattr(cache_mod, "make_temporary_dir", denied)
    predictor = ClickPredictor(build_tiny_sam(), "tiny", device="cpu", cache=EmbeddingCache(tmp_path / "ro"))
    with caplog.at_level(logging.WARNING):
        predictor.set_image(np.zeros((32, 32, 3), np.uint8))
    assert predictor.is_image_set and "Permission denied" in caplog.text


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_cache_folder_only_warns(tmp_path, caplog):
    root = tmp_path / "ro"
    root.mkdir()
    root.chmod(0o555)
    try:
        assert EmbeddingCache(root).put(CacheKey("a", "b", "c"), ENTRY) is None
    finally:
        root.chmod(0o755)


def test_cache_stray_file_at_an_entry_path(tmp_path):
    cache = EmbeddingCache(tmp_path)
    key = CacheKey("img", "model", "v")
    cache.path(key).write_text("stray")
    assert cache.get(key) is None
    cache.path(key).write_text("stray")
    assert cache.put(key, ENTRY) == cache.path(key)
    assert cache.get(key).input_size == (64, 48)


def test_cache_variable_pointing_at_a_file(tmp_path, monkeypatch, caplog):
    afile = tmp_path / "afile"
    afile.write_text("")
    monkeypatch.setenv("NAPARI_COSAS_CACHE", str(afile))
    with caplog.at_level(logging.WARNING):
        assert EmbeddingCache().put(CacheKey("a", "b", "c"), ENTRY) is None
    assert "NAPARI_COSAS_CACHE" in caplog.text
    with pytest.raises(WeightsError, match="NAPARI_COSAS_CACHE"):
        registry.fetch_weights("sam_vit_b", download=False)


def test_cache_input_size_is_checksummed(tmp_path):
    import zarr

    cache = EmbeddingCache(tmp_path)
    key = CacheKey("img", "model", "v")
    cache.put(key, ENTRY)
    zarr.open_group(str(cache.path(key)), mode="r+").attrs["input_size"] = [64, 64]
    assert cache.get(key) is None


# ----------------------------------------------------------------------------- 6. CLI errors


def _evaluate_with(model: Path, tmp_path: Path) -> list[str]:
    images, masks = _images(tmp_path / "images"), _masks(tmp_path / "masks")
    return ["evaluate", "--images", str(images), "--masks", str(masks), "--model", str(model),
            "--json", str(tmp_path / "e.json"), "--device", "cpu", "--no-cache"]


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


@pytest.mark.parametrize("damage", ["truncated", "empty", "text", "pickle", "directory"])
def test_unusable_weights_name_the_file_without_a_traceback(tmp_path, model_files, capsys, damage):
    bad = tmp_path / "bad.pt"
    if damage == "truncated":
        bad.write_bytes(model_files["click"].read_bytes()[:5000])
    elif damage == "empty":
        bad.write_bytes(b"")
    elif damage == "text":
        bad.write_text("this is not a checkpoint\n")
    elif damage == "pickle":
        torch.save({"format": "napari-cosas-click/1", "x": _Exploit()}, bad)
    else:
        bad.mkdir()
    with pytest.raises(SystemExit) as err:
        main(_evaluate_with(bad, tmp_path))
    text = capsys.readouterr().err
    assert err.value.code == 2 and "bad.pt" in text
    assert "Traceback" not in text and "weights_only" not in text


def test_segmenter_and_backbone_loads_refuse_pickles_by_name(tmp_path):
    bad = tmp_path / "evil.pt"
    torch.save({"format": "napari-cosas-segmenter/1", "x": _Exploit()}, bad)
    with pytest.raises(WeightsError, match="evil.pt.*never loads") as err:
        registry.load_segmenter(bad)
    assert "weights_only=False" not in str(err.value)
    with pytest.raises(WeightsError, match="evil.pt"):
        registry.load_backbone_state("convnext_atto", bad)


@pytest.mark.parametrize("content", [b"", b"hello, I am text", b"\x89PNG\r\n\x1a\n"])
def test_unreadable_image_files_are_named_with_what_is_wrong(tmp_path, content):
    path = tmp_path / "x.png"
    path.write_bytes(content)
    with pytest.raises(ImageFormatError, match="x.png") as err:
        load_image(path)
    assert "pyav" not in str(err.value)
    with pytest.raises(ImageFormatError, match="x.png"):
        load_mask(path)


# ----------------------------------------------------------------------------- 7. path and value checks


@pytest.mark.parametrize("name", ["../../x", "", "...", "a/b\\c", ".hidden", "con:*?"])
def test_patch_names_never_write_outside_or_hidden(tmp_path, bundle, name):
    out = tmp_path / "a" / "b" / "out"
    session = AnnotationSession(bundle)
    patch = session.add_array(name, np.zeros((8, 8, 3), np.uint8))
    session.sync_mask(patch, np.eye(8, dtype=bool))
    result = session.export(patch, out)
    for path in (result.mask, result.sidecar, result.geojson):
        assert path.resolve().parent.parent == out.resolve()
        assert not path.name.startswith(".")
    assert [p for p in tmp_path.rglob("*") if p.is_file() and out not in p.parents] == []
    assert json.loads(result.sidecar.read_text())["image"]["name"] == name  # the name itself is kept
    assert safe_stem(name)


def test_twelve_bit_data_in_a_sixteen_bit_png_warns(tmp_path):
    path = tmp_path / "12bit.png"
    iio.imwrite(path, np.full((8, 8), 4000, np.uint16))
    with pytest.warns(DataWarning, match="12-bit"):
        load_image(path)


def test_demo_negative_max_clicks_fails_before_any_work(tmp_path, capsys):
    out = tmp_path / "demo"
    with pytest.raises(SystemExit) as err:
        main(["demo", "--out", str(out), "--max-clicks", "-5"])
    assert err.value.code == 2 and "-5" in capsys.readouterr().err
    assert not out.exists()


# ----------------------------------------------------------------------------- cases that already held


def _png(tmp_path: Path, array: np.ndarray, name: str = "x.png") -> Path:
    iio.imwrite(tmp_path / name, array)
    return tmp_path / name


@pytest.mark.parametrize(
    "array",
    [
        np.zeros((6, 7), np.uint8),  # grayscale
        np.zeros((6, 7, 4), np.uint8),  # RGBA
        np.full((6, 7, 3), 65535, np.uint16),  # 16-bit
        np.ones((6, 7, 3), np.float32),  # float in [0, 1]
        np.zeros((2, 2, 3), np.uint8),  # 2x2
        np.zeros((10, 10000, 3), np.uint8),  # 10x10000
    ],
    ids=["gray", "rgba", "uint16", "float", "2x2", "10x10000"],
)
def test_supported_arrays_convert_to_rgb_uint8(array):
    converted = as_rgb_uint8(array)
    assert converted.dtype == np.uint8 and converted.shape == (*array.shape[:2], 3)


def test_file_formats_that_were_already_handled(tmp_path):
    from PIL import Image

    assert load_image(_png(tmp_path, np.zeros((6, 7, 2), np.uint8), "gray_alpha.png")).shape == (6, 7, 3)
    Image.fromarray(np.zeros((6, 7, 3), np.uint8)).convert("P").save(tmp_path / "palette.png")
    assert load_image(tmp_path / "palette.png").shape == (6, 7, 3)
    Image.fromarray(np.zeros((6, 7, 3), np.uint8)).convert("CMYK").save(tmp_path / "cmyk.jpg")
    assert load_image(tmp_path / "cmyk.jpg").shape == (6, 7, 3)
    iio.imwrite(tmp_path / "x.gif", np.zeros((6, 7, 3), np.uint8))
    with pytest.raises(ImageFormatError, match="unsupported file type"):
        load_image(tmp_path / "x.gif")
    tifffile.imwrite(tmp_path / "planar.tif", np.zeros((3, 6, 7), np.uint8), photometric="rgb", planarconfig="separate")
    assert load_image(tmp_path / "planar.tif").shape == (6, 7, 3)
    tifffile.imwrite(tmp_path / "multi.tif", np.zeros((2, 6, 7, 3), np.uint8))
    with pytest.raises(ImageFormatError, match="one page at a time"):
        load_image(tmp_path / "multi.tif")
    with pytest.raises(ImageFormatError, match="too small"):
        as_rgb_uint8(np.zeros((1, 1, 3), np.uint8))
    for dtype in (np.int16, np.uint32):
        with pytest.raises(ImageFormatError, match="dtype"):
            as_rgb_uint8(np.zeros((4, 4, 3), dtype))
    assert load_image(_png(tmp_path, np.zeros((6, 7, 3), np.uint8), "ünïcode name.png")).shape == (6, 7, 3)


def test_masks_that_were_already_handled(tmp_path):
    assert (load_mask(_png(tmp_path, np.eye(5, dtype=np.uint8), "01.png")) > 0).sum() == 5
    assert (load_mask(_png(tmp_path, np.eye(5, dtype=np.uint8) * 255, "0255.png")) > 0).sum() == 5
    labels = load_mask(_png(tmp_path, np.arange(25, dtype=np.uint8).reshape(5, 5), "labels.png"))
    assert labels.max() == 24
    with pytest.raises(ImageFormatError, match="colour"):
        load_mask(_png(tmp_path, np.dstack([np.eye(5, dtype=np.uint8)] * 2 + [np.zeros((5, 5), np.uint8)]), "c.png"))
    with pytest.raises(ImageFormatError, match="5x5.*6x6"):
        load_mask(tmp_path / "01.png", shape=(6, 6))
    with pytest.raises(FileNotFoundError):
        load_mask(tmp_path / "missing.png")


@pytest.mark.parametrize("row, col", [(-1, 3), (3, 99), (math.nan, 3), (math.inf, 3)])
def test_clicks_off_the_image_are_refused(bundle, row, col):
    session = AnnotationSession(bundle)
    patch = session.add_array("p", np.zeros((16, 16, 3), np.uint8))
    with pytest.raises(ValueError, match="outside"):
        session.click(patch, row, col, True)
    session.click(patch, 15.7, 0, True)  # an edge pixel, float coordinates
    assert len(patch.clicks) == 1


def test_undo_past_the_first_click_and_a_failed_export_roll_back(tmp_path, bundle, monkeypatch):
    import napari_cosas.io.exports as exports_mod

    session = AnnotationSession(bundle)
    patch = session.add_array("p", np.zeros((16, 16, 3), np.uint8))
    session.click(patch, 4, 4, True)
    assert session.undo(patch) and not session.undo(patch)
    session.sync_mask(patch, np.eye(16, dtype=bool))
    real = exports_mod.atomic_write

    def full_disk(path, data, **kwargs):
        if str(path).endswith(".json"):
            raise OSError(28, "No space left on device", str(path))
        real(path, data, **kwargs)

    monkeypatch.setattr(exports_mod, "atomic_write", full_disk)
    with pytest.raises(OSError):
        session.export(patch, tmp_path)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_missing_arguments_and_folders_exit_cleanly(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["segment", "--images", str(tmp_path / "nope")])
    with pytest.raises(SystemExit) as err:
        main(["score", "--pred", str(tmp_path / "nope"), "--masks", str(tmp_path), "--json", str(tmp_path / "s.json")])
    assert err.value.code == 2 and "nope" in capsys.readouterr().err


def test_malicious_pickle_is_never_run(tmp_path):
    marker = tmp_path / "ran"

    class Marker:
        def __reduce__(self):
            return (Path.touch, (marker,))

    bad = tmp_path / "m.pt"
    torch.save({"state_dict": Marker()}, bad)
    for load in (registry.load_click_model, registry.load_segmenter, lambda p: checkpoints.read_weights_file(p)):
        with pytest.raises(WeightsError):
            load(bad)
    assert not marker.exists()
