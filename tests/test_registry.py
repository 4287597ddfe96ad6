"""Model registry: cached, hash-checked downloads (from a local server only) and loading."""

import hashlib
from pathlib import Path

import pytest
import torch

from napari_cosas.models import checkpoints

from napari_cosas.models import registry
from napari_cosas.models.checkpoints import ChecksumMismatchError, WeightsError
from napari_cosas.models.sam_models import build_tiny_sam, save_click_model
from napari_cosas.models.registry import ModelSpec


@pytest.fixture()
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("NAPARI_COSAS_CACHE", str(folder))
    return folder


def _spec(register, name, url, content=None, **kw) -> ModelSpec:
    known = f"sha256:{hashlib.sha256(content).hexdigest()}" if content is not None else None
    return register(ModelSpec(name=name, architecture="convnext_atto", description="test", licence="none",
                              filename=f"{name}.pth", url=url, known_hash=known, **kw))


def test_builtin_entries():
    names = set(registry.model_names())
    assert {"sam_vit_b", "sam_vit_l", "sam_vit_h", "dinov2_vits14", "dinov2_vitb14",
            "dinov2_vitl14", "convnext_atto", "cosas-default-segmenter",
            "cosas-default-click"} <= names
    assert {s.kind for s in registry.list_models("click")} == {"click"}
    for spec in registry.list_models():
        assert spec.bundled or spec.url.startswith("https://")
        assert spec.bundled or spec.known_hash or spec.sha256_prefix


def test_cache_dir_env_override(cache):
    assert checkpoints.cache_dir() == cache


def test_download_verify_and_cache(server, cache, register):
    url, www, stop = server
    content = b"good weights" * 100
    (www / "good.pth").write_bytes(content)
    _spec(register, "good", f"{url}/good.pth", content)
    path = registry.fetch_weights("good")
    assert path == cache / "good.pth" and path.read_bytes() == content
    stop()  # second call must not need the server
    assert registry.fetch_weights("good") == path
    assert registry.fetch_weights("good", download=False) == path


def test_corrupted_download_rejected(server, cache, register):
    url, www, _ = server
    (www / "bad.pth").write_bytes(b"corrupted")
    _spec(register, "bad", f"{url}/bad.pth", b"the real content")
    with pytest.raises(ChecksumMismatchError, match="Checksum mismatch") as err:
        registry.fetch_weights("bad")
    assert f"{url}/bad.pth" in str(err.value)
    assert not (cache / "bad.pth").exists()


def test_corrupted_cached_file_rejected(cache, register):
    _spec(register, "stale", "http://127.0.0.1:9/stale.pth", b"the real content")
    cache.mkdir()
    (cache / "stale.pth").write_bytes(b"truncated")
    with pytest.raises(ChecksumMismatchError, match="Checksum mismatch") as err:
        registry.fetch_weights("stale")
    message = str(err.value)
    assert str(cache / "stale.pth") in message and "delete" in message


def test_sha256_prefix_check(server, cache, register):
    url, www, _ = server
    content = b"prefix-checked"
    (www / "p.pth").write_bytes(content)
    good = hashlib.sha256(content).hexdigest()[:8]
    _spec(register, "pre", f"{url}/p.pth", sha256_prefix=good)
    assert registry.fetch_weights("pre").read_bytes() == content
    _spec(register, "pre2", f"{url}/p.pth", sha256_prefix="00000000")
    with pytest.raises(ChecksumMismatchError):
        registry.fetch_weights("pre2")
    assert not (cache / "pre2.pth").exists()


def test_missing_remote_file(server, cache, register):
    url, _, _ = server
    _spec(register, "gone", f"{url}/gone.pth", b"x")
    with pytest.raises(WeightsError, match="Could not download") as err:
        registry.fetch_weights("gone")
    assert str(cache / "gone.pth") in str(err.value)


def test_download_false_names_url_and_target(cache, register):
    _spec(register, "offline", "https://example.invalid/offline.pth", b"x")
    with pytest.raises(WeightsError) as err:
        registry.fetch_weights("offline", download=False)
    assert "https://example.invalid/offline.pth" in str(err.value)
    assert str(cache / "offline.pth") in str(err.value)


def test_explicit_path_skips_download(tmp_path, cache):
    local = tmp_path / "mine.pth"
    local.write_bytes(b"anything")  # not hash-checked: the user's own file
    assert registry.fetch_weights("sam_vit_h", local) == local
    assert not cache.exists()
    with pytest.raises(WeightsError, match="not found"):
        registry.fetch_weights("sam_vit_h", tmp_path / "absent.pth")


def test_unknown_name_lists_available():
    with pytest.raises(KeyError, match="sam_vit_b") as err:
        registry.fetch_weights("sam_vit_z")
    assert "cosas-default-click" in str(err.value)


def test_missing_default_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_COSAS_WEIGHTS", str(tmp_path))
    monkeypatch.setattr(checkpoints, "weights_dirs", lambda: [tmp_path])
    with pytest.raises(WeightsError, match="click_default.pt") as err:
        registry.fetch_weights("cosas-default-click")
    assert "NAPARI_COSAS_WEIGHTS" in str(err.value)


def test_weights_env_var_is_searched_first(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_COSAS_WEIGHTS", str(tmp_path))
    assert checkpoints.weights_dirs()[0] == tmp_path
    (tmp_path / "segmenter_default.pt").write_bytes(b"x")
    assert registry.fetch_weights("cosas-default-segmenter") == tmp_path / "segmenter_default.pt"


def test_load_click_model_from_bundled_and_paths(tmp_path, monkeypatch):
    config = {"arch": "tiny", "seed": 2, "decoder": "enhanced"}
    model = build_tiny_sam("enhanced", seed=2)
    save_click_model(model, tmp_path / "click_default.pt", config)
    monkeypatch.setenv("NAPARI_COSAS_WEIGHTS", str(tmp_path))
    loaded, model_id = registry.load_click_model("cosas-default-click")
    assert model_id.startswith("cosas-default-click-")
    assert torch.equal(loaded.mask_decoder.iou_token.weight, model.mask_decoder.iou_token.weight)
    with pytest.raises(ValueError, match="enhanced"):
        registry.load_click_model("cosas-default-click", decoder="plain")
    # a flat state dict by path is read as an official SAM file: unknown encoder width
    torch.save(build_tiny_sam("plain").state_dict(), tmp_path / "flat.pth")
    with pytest.raises(ValueError, match="unknown SAM ViT width 32"):
        registry.load_click_model(tmp_path / "flat.pth")
    with pytest.raises(WeightsError, match="neither"):
        registry.load_click_model("no-such-model")
    with pytest.raises(ValueError, match="not a click model"):
        registry.load_click_model("dinov2_vits14", weights=tmp_path / "flat.pth")


def test_no_download_at_import(monkeypatch):
    import importlib

    import pooch

    def boom(*a, **k):
        raise AssertionError("download attempted")

    monkeypatch.setattr(pooch, "retrieve", boom)
    importlib.reload(registry)
