"""Benchmark: seconds per click on a 1500x1500 patch, SAM ViT-B geometry (issue #6).

One run measures, interleaved round-robin so that background load hits every variant alike,
the median wall time of a whole click (prompt encoding, decoding, upsampling to 1500x1500,
thresholding, result as numpy) for:

* ``reference``: ``segment_anything.SamPredictor.predict`` (plain SAM ViT-B decoder, one point
  and a mask prompt, ``multimask_output=False``);
* ``plain`` / ``enhanced``: the project's `ClickPredictor.predict` with the plain / enhanced
  decoder (the shipped fast path), and ``*_eager``: the same with ``fast=False`` (the decoder
  modules as written), to show what the fast path buys;
* ``enhanced_local``: a local click as the product makes it after the first (``refine.click_mask``
  on an edited mask: the decoder, then only the click's window upscaled and flooded), and
  ``enhanced_local_full``: the same click from the whole-image logits (``predict`` without a window +
  ``refine.mask_after_click``), the same mask within float tolerance;

with 1 and 2 CPU threads and, with ``--device cuda``, on the GPU. Random weights (the enhanced
decoder's gates are set non-zero, as after training), one random 256x64x64 embedding, a fresh
random point per click. It also times the click components, the image encoders (the default
ConvNeXt-atto and SAM ViT-B), the time for a cached patch to become click-ready, and the peak
memory of a ViT-B click session (in a subprocess).

    python benchmarks/bench_click.py --json benchmarks/click.json --md benchmarks/click.md
    python benchmarks/bench_click.py --device cuda --json click_cuda.json --md click_cuda.md
    python benchmarks/bench_click.py --quick --json /tmp/click.json --md /tmp/click.md

By default the process first calls `keep_freed_heap_memory` (glibc reuses freed memory instead of
fresh pages: fewer page faults per click), as the CLI and the napari widget do;
``--no-malloc-tuning`` measures glibc's defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from segment_anything import SamPredictor
from segment_anything.modeling import Sam
from torch.utils.flop_counter import FlopCounterMode

from napari_cosas.inference.embedding_cache import CachedEmbedding, CacheKey, EmbeddingCache
from napari_cosas.inference.heap import keep_freed_heap_memory
from napari_cosas.io.image_io import image_sha256
from napari_cosas.models.enhanced_decoder import EnhancedMaskDecoder
from napari_cosas.models.sam_models import build_convnext_sam, build_sam_vit
from napari_cosas.inference.predictor import PREPROCESS_VERSION, ClickPredictor
from napari_cosas.inference.refine import CLICK_MEMORY, mask_after_click, click_mask, local_window
from machine import cpu_model

SIDE = 1500
EMBED_SHAPE = (1, 256, 64, 64)
INPUT_SIZE = (1024, 1024)


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _round_robin(
    fns: dict[str, Callable[[int], object]], calls: int, warmup: int, device: torch.device
) -> dict[str, float]:
    """Median ms per call of each ``fn(i)``; call ``i`` of every variant runs before call
    ``i + 1`` of any, so load changes hit all variants equally."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for i in range(warmup + calls):
        for name, fn in fns.items():
            _sync(device)
            t0 = time.perf_counter()
            fn(i)
            _sync(device)
            if i >= warmup:
                times[name].append(1000 * (time.perf_counter() - t0))
    return {name: round(statistics.median(t), 2) for name, t in times.items()}


def _set_gates(decoder: EnhancedMaskDecoder, seed: int = 0) -> None:
    """Non-zero gates, as after training (at initialisation the enhanced decoder is the plain one)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in decoder.named_parameters():
            if name.endswith("gate"):
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))


def _models() -> tuple[Sam, Sam]:
    """Plain SAM ViT-B and an enhanced variant sharing its encoder and prompt encoder."""
    torch.manual_seed(0)
    plain = build_sam_vit("vit_b", decoder="plain")
    decoder = EnhancedMaskDecoder.from_sam(plain.mask_decoder)
    _set_gates(decoder)
    enhanced = Sam(plain.image_encoder, plain.prompt_encoder, decoder,
                   plain.pixel_mean.flatten().tolist(), plain.pixel_std.flatten().tolist())
    return plain, enhanced.eval()


def _seeded_predictor(
    model: Sam, model_id: str, image: np.ndarray, embedding: np.ndarray, cache_dir: Path,
    device: torch.device, fast: bool,
) -> ClickPredictor:
    """A `ClickPredictor` whose cache already holds ``embedding`` for ``image``."""
    cache = EmbeddingCache(cache_dir)
    key = CacheKey(image_sha256(image), model_id, PREPROCESS_VERSION)
    if cache.get(key) is None:
        cache.put(key, CachedEmbedding(embedding, INPUT_SIZE))
    predictor = ClickPredictor(model, model_id, device=device, cache=cache, fast=fast)
    predictor.set_image(image)
    if not predictor.last_encode_from_cache:
        raise RuntimeError("benchmark cache was not hit")
    return predictor


def _clicks(n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``n`` click positions ``(row, col)`` and a ``(1, 256, 256)`` mask prompt."""
    rng = np.random.default_rng(seed)
    points = rng.uniform(0, SIDE - 1, size=(n, 2))
    mask = (rng.standard_normal((1, 256, 256)) * 4).astype(np.float32)
    return points, mask


def bench_clicks(
    device: torch.device, threads: int | None, calls: int, warmup: int, workdir: Path
) -> tuple[dict, dict]:
    """Whole-click medians (reference / plain / enhanced, fast and eager) and components."""
    if threads is not None:
        torch.set_num_threads(threads)
    load_before = _load()
    plain, enhanced = _models()
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
    embedding = rng.standard_normal(EMBED_SHAPE).astype(np.float32)
    cache_dir = workdir / "cache"
    preds = {
        "plain": _seeded_predictor(plain, "plain", image, embedding, cache_dir, device, True),
        "enhanced": _seeded_predictor(enhanced, "enhanced", image, embedding, cache_dir, device, True),
        "plain_eager": _seeded_predictor(plain, "plain", image, embedding, cache_dir, device, False),
        "enhanced_eager": _seeded_predictor(
            enhanced, "enhanced", image, embedding, cache_dir, device, False
        ),
    }
    reference = SamPredictor(plain)
    reference.original_size, reference.input_size = (SIDE, SIDE), INPUT_SIZE
    reference.features = torch.from_numpy(embedding).to(device)
    reference.is_image_set = True

    points, mask = _clicks(warmup + calls)
    labels = np.ones(1, dtype=np.int64)

    def reference_click(i: int) -> object:
        xy = points[i : i + 1, ::-1].copy()
        return reference.predict(xy, labels, mask_input=mask, multimask_output=False)

    fns: dict[str, Callable[[int], object]] = {"reference": reference_click}
    for name, pred in preds.items():
        fns[name] = lambda i, p=pred: p.predict(points[i : i + 1], labels, mask)
    previous = np.zeros((SIDE, SIDE), dtype=bool)

    def local_click(i: int) -> object:
        return click_mask(preds["enhanced"], previous, points[i : i + 1], labels, mask, effect="local")

    def local_click_full(i: int) -> object:
        logits = preds["enhanced"].predict(points[i : i + 1], labels, mask).logits
        row, col = (int(v) for v in points[i])
        return mask_after_click(previous, logits, row, col, True, effect="local")

    fns["enhanced_local"] = local_click
    fns["enhanced_local_full"] = local_click_full
    medians = _round_robin(fns, calls, warmup, device)

    gflop = {}
    for name, fn in fns.items():
        with FlopCounterMode(display=False) as counter:
            fn(0)
        gflop[name] = round(counter.get_total_flops() / 1e9, 3)

    agreement = {}
    for kind in ("plain", "enhanced"):
        fast_out = preds[kind].predict(points[:1], labels, mask)
        eager_out = preds[f"{kind}_eager"].predict(points[:1], labels, mask)
        fast_full, fast_low = fast_out.logits, fast_out.next_prompt
        eager_full, eager_low = eager_out.logits, eager_out.next_prompt
        agreement[kind] = {
            "max_abs_low_res_diff": float(np.abs(fast_low - eager_low).max()),
            "max_abs_full_diff": float(np.abs(fast_full - eager_full).max()),
        }
    rows, cols = local_window((SIDE, SIDE), int(points[0, 0]), int(points[0, 1]))
    window = preds["enhanced"].predict(points[:1], labels, mask, window=(rows, cols)).logits
    whole = preds["enhanced"].predict(points[:1], labels, mask).logits
    agreement["enhanced_window"] = float(np.abs(window - whole[rows, cols]).max())
    components = bench_components(preds["enhanced"], preds["enhanced_eager"], points, mask,
                                  calls, warmup, device)
    by_clicks = bench_click_count(reference, preds["enhanced"], mask, max(calls // 3, 3), warmup, device)
    result = {
        "reference_ms": medians["reference"],
        "plain_ms": medians["plain"],
        "enhanced_ms": medians["enhanced"],
        "plain_eager_ms": medians["plain_eager"],
        "enhanced_eager_ms": medians["enhanced_eager"],
        "enhanced_speedup_vs_reference": round(medians["reference"] / medians["enhanced"], 2),
        "enhanced_local_ms": medians["enhanced_local"],
        "enhanced_local_full_ms": medians["enhanced_local_full"],
        "threads": torch.get_num_threads() if device.type == "cpu" else None,
        "fast_vs_eager": agreement,
        "gflop_per_click": gflop,
        "by_clicks_so_far": by_clicks,
        "load_before": load_before,
        "load_after": _load(),
    }
    return result, components


CLICK_COUNTS = (1, 5, 10, 20)


def bench_click_count(
    reference: SamPredictor, enhanced: ClickPredictor, mask: np.ndarray, calls: int, warmup: int,
    device: torch.device,
) -> dict:
    """Median ms of a click made with ``n`` points so far (``CLICK_COUNTS``; alternating labels,
    the last positive): the reference and the enhanced path shown all ``n`` points, and a local
    click as the product makes it (``refine.click_mask``: the last ``CLICK_MEMORY`` points shown,
    only the window upscaled). Every prompt point is a token of the decoder, so the work grows
    with the clicks shown (the fast path's token-side attention pays while fewer than 10 are
    shown; then the original projections run)."""
    points, _ = _clicks(max(CLICK_COUNTS), seed=3)
    previous = np.zeros((SIDE, SIDE), dtype=bool)
    fns: dict[str, Callable[[int], object]] = {}
    for n in CLICK_COUNTS:
        pts = points[:n]
        labels = (np.arange(n)[::-1] % 2 == 0).astype(np.int64)
        fns[f"{n}:reference"] = lambda i, pts=pts, labels=labels: reference.predict(
            pts[:, ::-1].copy(), labels, mask_input=mask, multimask_output=False)
        fns[f"{n}:enhanced"] = lambda i, pts=pts, labels=labels: enhanced.predict(pts, labels, mask)
        fns[f"{n}:enhanced_local"] = lambda i, pts=pts, labels=labels: click_mask(
            enhanced, previous, pts, labels, mask, effect="local")
    medians = _round_robin(fns, calls, warmup, device)
    out: dict = {}
    for key, value in medians.items():
        n, name = key.split(":")
        out.setdefault(n, {"calls": calls})[f"{name}_ms"] = value
    return out


def bench_components(
    fast: ClickPredictor, eager: ClickPredictor, points: np.ndarray, mask: np.ndarray,
    calls: int, warmup: int, device: torch.device,
) -> dict:
    """Median ms of the parts of an enhanced click (round-robin)."""
    model = fast.model
    mask_t = torch.from_numpy(mask)[None].to(device)
    coords = torch.as_tensor(
        fast.transform.apply_coords(points[:, ::-1].copy(), (SIDE, SIDE)), dtype=torch.float32,
        device=device,
    )
    labels = torch.ones(1, 1, dtype=torch.int64, device=device)
    with torch.inference_mode():
        low = fast.decoding.low_res_logits(coords[None, :1], labels, mask_t)
        full = model.postprocess_masks(low, INPUT_SIZE, (SIDE, SIDE))[0, 0]

        def encode_prompt(i: int) -> object:
            return model.prompt_encoder(points=(coords[None, i : i + 1], labels), boxes=None,
                                        masks=mask_t)

        sparse, dense = encode_prompt(0)
        fns: dict[str, Callable[[int], object]] = {
            "prompt_encoder": encode_prompt,
            "decoder_eager": lambda i: model.mask_decoder.forward_with_context(
                eager.decoding.image, eager.decoding.image_pe, sparse, dense, False
            ),
            "decoder_fast": lambda i: fast.decoding.decode(sparse, dense),
            "upsample_sam_two_step": lambda i: model.postprocess_masks(
                low, INPUT_SIZE, (SIDE, SIDE)
            ),
            "threshold_to_numpy": lambda i: (full > 0).cpu().numpy(),
        }
        medians = _round_robin(fns, calls, warmup, device)
    return {f"{k}_ms": v for k, v in medians.items()}


def bench_default_encoder(device: torch.device, repeats: int) -> dict:
    """Median seconds of the default ConvNeXt-atto encoder on one preprocessed 1024x1024 image."""
    torch.manual_seed(0)
    encoder = build_convnext_sam("convnext_atto").image_encoder.to(device).eval()
    x = torch.randn(1, 3, 1024, 1024, device=device)
    times = []
    with torch.inference_mode():
        encoder(x)
        for _ in range(repeats):
            _sync(device)
            t0 = time.perf_counter()
            encoder(x)
            _sync(device)
            times.append(time.perf_counter() - t0)
    return {"convnext_atto_s": round(statistics.median(times), 3), "repeats": repeats}


def session_worker(device_name: str, threads: int, encode: bool, repeats: int, clicks: int) -> dict:
    """A ViT-B click session in a fresh process: open a 1500x1500 patch (encode or cache hit),
    open it again (cache hit = click-ready time), ``clicks`` clicks; peak memory."""
    device = torch.device(device_name)
    torch.set_num_threads(threads)
    _, model = _models()
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
    out: dict = {"load_before": _load()}
    with tempfile.TemporaryDirectory() as tmp:
        cache = EmbeddingCache(Path(tmp))
        if not encode:
            key = CacheKey(image_sha256(image), "vit_b", PREPROCESS_VERSION)
            cache.put(key, CachedEmbedding(rng.standard_normal(EMBED_SHAPE).astype(np.float32),
                                           INPUT_SIZE))
        predictor = ClickPredictor(model, "vit_b", device=device, cache=cache)
        _sync(device)
        t0 = time.perf_counter()
        predictor.set_image(image)
        _sync(device)
        if encode:
            encode_times = [time.perf_counter() - t0]
            for _ in range(repeats - 1):
                t0 = time.perf_counter()
                predictor._encode(image)
                _sync(device)
                encode_times.append(time.perf_counter() - t0)
            out["vit_b_set_image_uncached_s"] = round(statistics.median(encode_times), 3)
            out["vit_b_repeats"] = len(encode_times)
        ready = []
        for _ in range(3):
            fresh = ClickPredictor(model, "vit_b", device=device, cache=cache)
            _sync(device)
            t0 = time.perf_counter()
            fresh.set_image(image)
            _sync(device)
            ready.append(time.perf_counter() - t0)
            assert fresh.last_encode_from_cache
        out["cached_click_ready_s"] = round(statistics.median(ready), 3)
        points, mask = _clicks(clicks, seed=2)
        low = mask
        for i in range(clicks):
            low = fresh.predict(points[: i + 1], np.ones(i + 1, dtype=np.int64), low).next_prompt
    out["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if device.type == "cuda":
        out["cuda_max_allocated_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    out["clicks"] = clicks
    out["load_after"] = _load()
    return out


def run_session(device: str, threads: int, encode: bool, repeats: int, clicks: int) -> dict:
    """`session_worker` in a subprocess, so its peak RSS is the session's alone."""
    tuning = ["--no-malloc-tuning"] if "--no-malloc-tuning" in sys.argv else []
    cmd = [sys.executable, __file__, *tuning, "--session-worker", json.dumps(
        {"device_name": device, "threads": threads, "encode": encode, "repeats": repeats,
         "clicks": clicks})]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(device_name: str, quick: bool) -> dict:
    calls, warmup = (5, 1) if quick else (30, 3)
    repeats = 1 if quick else 2
    cpu_threads = os.cpu_count() or 1
    result: dict = {}
    components: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for threads in (1, 2):
            result[f"cpu{threads}"], components[f"cpu{threads}"] = bench_clicks(
                torch.device("cpu"), threads, calls, warmup, Path(tmp) / f"cpu{threads}")
        torch.set_num_threads(min(2, cpu_threads))
        embedding = {"cpu": bench_default_encoder(torch.device("cpu"), 1 if quick else 3)}
        sessions = {"cpu (cached patch)": run_session("cpu", min(2, cpu_threads), False, 1, calls)}
        if not quick:
            sessions["cpu (encode ViT-B)"] = run_session("cpu", min(2, cpu_threads), True, repeats,
                                                       calls)
        if device_name == "cuda":
            gpu = torch.device("cuda")
            result["cuda"], components["cuda"] = bench_clicks(gpu, None, calls, warmup,
                                                              Path(tmp) / "cuda")
            embedding["cuda"] = bench_default_encoder(gpu, 3 if quick else 10)
            sessions["cuda (encode ViT-B)"] = run_session("cuda", min(2, cpu_threads), True, 3,
                                                        calls)
    result["components"] = components
    result["default_encoder"] = embedding
    result["vit_b_session"] = sessions
    result["settings"] = {
        "calls": calls, "warmup": warmup, "patch": [SIDE, SIDE], "embedding": list(EMBED_SHAPE),
        "prompt": "1 positive point + 256x256 mask prompt", "weights": "random",
        "quick": quick, "malloc_tuning": "--no-malloc-tuning" not in sys.argv,
        "command": "python " + shlex.join(sys.argv),
    }
    result["machine"] = {
        "cpu": cpu_model(), "logical_cores": os.cpu_count(), "torch": torch.__version__,
        "python": platform.python_version(), "platform": platform.platform(),
        "gpu": torch.cuda.get_device_name() if device_name == "cuda" else None,
    }
    return result


def to_markdown(r: dict) -> str:
    m, s = r["machine"], r["settings"]
    sections = [k for k in ("cpu1", "cpu2", "cuda") if k in r]
    rows = []
    for k in sections:
        v = r[k]
        rows.append(
            f"| {k} | {v['reference_ms']:.1f} | {v['plain_ms']:.1f} | {v['enhanced_ms']:.1f} | "
            f"{v['plain_eager_ms']:.1f} | {v['enhanced_eager_ms']:.1f} | "
            f"{v['enhanced_speedup_vs_reference']:.2f}x | {v['load_before']} / {v['load_after']} |"
        )
    comp_names = list(next(iter(r["components"].values())))
    comp_rows = [
        f"| {name.removesuffix('_ms')} | "
        + " | ".join(f"{r['components'][k][name]:.2f}" for k in sections) + " |"
        for name in comp_names
    ]
    agreement = dict(r[sections[-1]]["fast_vs_eager"])
    window_diff = agreement.pop("enhanced_window")
    agree = "; ".join(
        f"{kind}: {d['max_abs_low_res_diff']:.1e} (256x256), {d['max_abs_full_diff']:.1e} (full)"
        for kind, d in agreement.items()
    )
    count_rows = [
        f"| {k} | {n} | {v['reference_ms']:.1f} | {v['enhanced_ms']:.1f} | {v['enhanced_local_ms']:.1f} | "
        f"{v['reference_ms'] / v['enhanced_ms']:.2f}x |"
        for k in sections for n, v in r[k]["by_clicks_so_far"].items()
    ]
    count_calls = r[sections[0]]["by_clicks_so_far"][str(CLICK_COUNTS[0])]["calls"]
    local_rows = [
        f"| {k} | {r[k]['enhanced_local_full_ms']:.1f} | {r[k]['enhanced_local_ms']:.1f} | "
        f"{r[k]['enhanced_local_full_ms'] / r[k]['enhanced_local_ms']:.2f}x | "
        f"{r[k]['reference_ms'] / r[k]['enhanced_local_ms']:.2f}x |"
        for k in sections
    ]
    work = r[sections[0]]["gflop_per_click"]
    rates = {k: {n: 1000 * work[n] / r[k][f"{n}_ms"] for n in ("reference", "enhanced")} for k in sections}
    work_rows = [
        f"| {k} | {rates[k]['reference']:.0f} | {rates[k]['enhanced']:.0f} | "
        f"{4000 * work['enhanced'] / r[k]['reference_ms']:.0f} |"
        for k in sections
    ]
    enc_rows = [
        f"| {dev} | {enc['convnext_atto_s']:.3f} (median of {enc['repeats']}) |"
        for dev, enc in r["default_encoder"].items()
    ]
    session_rows = []
    for name, sess in r["vit_b_session"].items():
        vit = sess.get("vit_b_set_image_uncached_s")
        vit_text = f"{vit:.2f} (median of {sess['vit_b_repeats']})" if vit is not None else "-"
        cuda_mem = sess.get("cuda_max_allocated_mib")
        mem = f"{sess['peak_rss_mib']:.0f} MiB RSS" + (f", {cuda_mem:.0f} MiB CUDA" if cuda_mem else "")
        session_rows.append(
            f"| {name} | {vit_text} | {sess['cached_click_ready_s']:.3f} | {mem} | "
            f"{sess['load_before']} / {sess['load_after']} |"
        )
    gpu = f", GPU {m['gpu']}" if m["gpu"] else ""
    return f"""# Per-click benchmark (issue #6)

Produced by `{s['command']}`.

Machine: {m['cpu']}, {m['logical_cores']} logical cores{gpu}, torch {m['torch']},
Python {m['python']}, {m['platform']}. Load average (1, 5, 15 min) is given before / after
each measurement.

A click = prompt encoding + decoding + upsampling to {s['patch'][0]}x{s['patch'][1]} +
thresholding, result as numpy; {s['prompt']}, a new random point per click, embedding
{'x'.join(map(str, s['embedding'][1:]))} (SAM ViT-B geometry), {s['weights']} weights.
Median of {s['calls']} clicks after {s['warmup']} warm-up clicks; the variants run
round-robin (click i of every variant before click i + 1 of any). glibc malloc tuning
(`keep_freed_heap_memory`, as in the CLI and the widget; `--no-malloc-tuning` turns it off): {'on' if s['malloc_tuning'] else 'off'}.

* reference: `segment_anything.SamPredictor.predict` (plain decoder, `multimask_output=False`);
* plain / enhanced: `ClickPredictor.predict` as shipped (`FastClickDecoder`);
* *_eager: `ClickPredictor(fast=False)`, the decoder modules as written (cached image context).

| section | reference ms | plain ms | enhanced ms | plain eager ms | enhanced eager ms | reference / enhanced | load |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |
{chr(10).join(rows)}

Fast vs eager, max |logit difference|: {agree}.

## A local click (the product's default after the first click on a patch)

A local click changes only the connected region under it inside its window (270x270 on this
patch), so it needs the full-resolution logits of that window only: `refine.click_mask` asks
`ClickPredictor.predict(..., window=...)`, which runs every attention layer over all image tokens
but upscales only the tokens under the window and interpolates only the window. The same click
from the whole-image logits (`predict` without a window + `refine.mask_after_click`) for comparison; both
include the flood fill and the new mask. Window vs whole-image logits, max |difference|:
{window_diff:.1e}.

| section | local click, whole logits ms | local click, window ms | whole / window | reference / window |
| --- | ---: | ---: | ---: | ---: |
{chr(10).join(local_rows)}

## Clicks so far

Each click point is a token of the decoder, so a click costs more the more clicks the model is
shown (the project's NoC@90 is 12-19 clicks). The reference and the enhanced path are shown every
click so far; the local click as the product makes it (`refine.click_mask`) shows the model the
last {CLICK_MEMORY} (`refine.CLICK_MEMORY`; earlier clicks live on in the mask prompt). Median of
{count_calls} clicks per count after {s['warmup']} warm-up, round-robin over all twelve variants (which
evicts more of each variant's data from the caches between its clicks than the first table's
round-robin, so the 1-click medians here run higher than there); same mask prompt; labels
alternate, the last positive.

| section | clicks so far | reference ms | enhanced ms | local click, last {CLICK_MEMORY} shown ms | reference / enhanced |
| --- | ---: | ---: | ---: | ---: | ---: |
{chr(10).join(count_rows)}

## Work per click

Matrix-product GFLOP of one click (`torch.utils.flop_counter`; elementwise work, softmax,
normalisation and interpolation not counted): {', '.join(f'{n} {g:.2f}' for n, g in work.items())}.
The fast path of the enhanced decoder does {work['reference'] / work['enhanced']:.2f}x less
matrix work than the reference, so being 4x faster than the reference needs 4 / {work['reference'] / work['enhanced']:.2f} =
{4 * work['enhanced'] / work['reference']:.1f}x the reference's GFLOP/s:

| section | reference GFLOP/s | enhanced GFLOP/s | GFLOP/s needed for 4x |
| --- | ---: | ---: | ---: |
{chr(10).join(work_rows)}

## Parts of an enhanced click (median ms)

| part | {' | '.join(sections)} |
| --- | {' | '.join('---:' for _ in sections)} |
{chr(10).join(comp_rows)}

## Opening a patch and memory

Default encoder: ConvNeXt-atto trunk + SAM neck on one preprocessed 1024x1024 image
(`torch.set_num_threads(2)` on CPU).

| device | ConvNeXt-atto encoder s |
| --- | ---: |
{chr(10).join(enc_rows)}

ViT-B click sessions, each in its own process: build the ViT-B model with the enhanced decoder,
open a 1500x1500 patch (a new one, encoded by the SAM ViT-B encoder and stored in the embedding
cache, or one already in the cache), open it again in a fresh `ClickPredictor` (cached
click-ready time: hash, cache read and verification, per-image decoder terms; median of 3), then
{s['calls']} clicks with accumulating points and the previous mask as prompt. ViT-B set_image:
resize, normalise, encode, store (the first call) or the encoder alone (further repeats). Peak
memory: the process's peak RSS (and the CUDA allocator's peak on the GPU).

| session | ViT-B set_image s | cached click-ready s | peak memory | load |
| --- | ---: | ---: | --- | --- |
{chr(10).join(session_rows)}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--quick", action="store_true", help="few clicks, no ViT-B encoding")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/click.json"))
    parser.add_argument("--md", type=Path, default=Path("benchmarks/click.md"))
    parser.add_argument("--no-malloc-tuning", action="store_true",
                        help="keep glibc's malloc defaults (the CLI and widget call keep_freed_heap_memory)")
    parser.add_argument("--session-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.no_malloc_tuning:
        keep_freed_heap_memory()
    if args.session_worker:
        print(json.dumps(session_worker(**json.loads(args.session_worker))))
        return
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch sees no GPU")
    result = run(args.device, args.quick)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    args.md.write_text(to_markdown(result))
    print(to_markdown(result))


if __name__ == "__main__":
    main()
