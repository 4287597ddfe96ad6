"""Click training: the mask decoder learns from simulated iterative clicks (the simulator is
``click_simulation``).

The image encoder's frozen part is run once per (image, augmented view) and its output cached
(in memory, and on disk in the run folder as ``views.pt`` so that a resumed run does not encode
again); each step then samples cached views, simulates a click session without gradients (first
click from the target or from a degraded "automatic" mask's errors, then rounds where the model's
own prediction gives the next click and its logits the next mask prompt), and back-propagates the
loss of the last prediction through the trained parameters only. The decoder's prompt-independent
image context (the enhanced decoder's global attention) is computed once per step and shared by
the no-gradient rounds and the trained one.

Everything happens in SAM's padded input frame: an image is resized so that its longest side is
``img_size`` (1024) and padded bottom-right; ground truth is kept at the decoder's output
resolution (256 x 256), where clicks are simulated with the RITM rule.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam
from torch import Tensor, nn

from ..io.files import atomic_write
from ..models.checkpoints import read_weights_file
from ..models.devices import resolve_device
from ..models.enhanced_decoder import EnhancedMaskDecoder
from .augment import random_dihedral, stain_jitter
from .click_simulation import ClickSimulator, TrainView, prepare_view
from .common import load_resume_checkpoint, segmentation_loss, warmup_cosine

log = logging.getLogger(__name__)

TRAIN_SCOPES = ("decoder", "prompt+neck+decoder", "encoder+decoder", "all")


@dataclass
class ClickTrainConfig:
    """Settings of a click-training run (saved in checkpoints, so a run can resume).

    ``model``: the ``models.sam_models.build_click_model`` config of the model trained (recorded;
    the default is the project's click model).
    """

    model: dict = field(default_factory=lambda: {"arch": "convnext", "trunk": "convnext_atto"})
    decoder: str = "enhanced"
    train: str = "decoder"
    init_weights: str | None = None
    steps: int = 2000
    batch_size: int = 8
    lr: float = 1e-4
    weight_decay: float = 1e-4
    max_rounds: int = 5
    p_auto_start: float = 0.5
    #: Share of sessions whose later mask prompts are the binarised prediction (as a local click in
    #: the product prompts with the mask), instead of the previous logits.
    p_mask_prompt: float = 0.0
    #: Extra loss weight inside the local click window around the last click (0: none).
    click_focus: float = 0.0
    views_per_image: int = 2
    checkpoint_every: int = 250
    seed: int = 0
    #: The enhanced decoder's gates learn at ``lr * gate_lr_scale``: they start at zero, and AdamW
    #: moves a parameter by about its learning rate per step.
    gate_lr_scale: float = 1.0


def trainable_parameter_names(model: Sam, scope: str) -> list[str]:
    """Names of the parameters a training scope updates.

    ``decoder``: the mask decoder only (the product's path with official SAM weights);
    ``prompt+neck+decoder``: everything but the encoder trunk, for models whose prompt encoder,
    neck and decoder have no pretrained weights (the ConvNeXt default, whose trunk comes from the
    trained segmenter);
    ``encoder+decoder``: image encoder and mask decoder; ``all``: every parameter.
    """
    if scope not in TRAIN_SCOPES:
        raise ValueError(f"unknown training scope {scope!r}; choose one of {', '.join(TRAIN_SCOPES)}")
    prefixes = {
        "decoder": ("mask_decoder.",),
        "prompt+neck+decoder": ("mask_decoder.", "prompt_encoder.", "image_encoder.neck."),
        "encoder+decoder": ("mask_decoder.", "image_encoder."),
        "all": ("",),
    }[scope]
    return [n for n, _ in model.named_parameters() if n.startswith(prefixes)]


def set_trainable(model: Sam, scope: str) -> list[nn.Parameter]:
    """Freeze everything outside ``scope``; return the parameters left trainable."""
    names = set(trainable_parameter_names(model, scope))
    params = []
    for name, p in model.named_parameters():
        p.requires_grad_(name in names)
        if name in names:
            params.append(p)
    return params


class EncoderSplit(nn.Module):
    """The image encoder cut where training starts: a frozen part cached once, the rest trained.

    For ``decoder`` training the whole encoder is frozen; for ``prompt+neck+decoder`` the neck runs in
    the step; for wider scopes nothing is cached.
    """

    def __init__(self, encoder: nn.Module, scope: str) -> None:
        super().__init__()
        self.encoder = encoder
        self.scope = scope
        self.cache_neck_input = scope == "prompt+neck+decoder"
        if self.cache_neck_input and not hasattr(encoder, "neck"):
            raise ValueError("the prompt+neck+decoder scope needs an image encoder with a separate `neck`")

    @property
    def caches(self) -> bool:
        return self.scope in ("decoder", "prompt+neck+decoder")

    def frozen(self, x: Tensor) -> Tensor:
        """``(B, 3, S, S)`` preprocessed input -> what is cached."""
        if self.cache_neck_input:
            trunk = self.encoder.trunk
            return trunk.stages(trunk.stem(x))
        return self.encoder(x)

    def rest(self, cached: Tensor) -> Tensor:
        """What is cached -> ``(B, 256, 64, 64)`` image embedding."""
        return self.encoder.neck(cached) if self.cache_neck_input else cached


def build_views(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    model: Sam,
    split: EncoderSplit,
    *,
    views_per_image: int,
    rng: np.random.Generator,
    device: torch.device,
    progress: Callable[[int, int], None] | None = None,
) -> list[TrainView]:
    """Augment each pair ``views_per_image`` times (first view unaugmented) and encode it.

    ``pairs``: RGB uint8 ``(H, W, 3)`` images with ``(H, W)`` bool masks. Cached features are
    kept in float16 on ``device``.
    """
    img_size = model.image_encoder.img_size
    views: list[TrainView] = []
    total = len(pairs) * views_per_image
    for i, (image, mask) in enumerate(pairs):
        for v in range(views_per_image):
            img, m = (image, mask) if v == 0 else random_dihedral(stain_jitter(image, rng), mask, rng)
            source, gt, valid = prepare_view(img, m, img_size)
            source = source.to(device)
            if split.caches:
                with torch.inference_mode():
                    source = split.frozen(model.preprocess(source[None].float()))[0].half()
            views.append(TrainView(source, gt.to(device), valid.to(device)))
            if progress is not None:
                progress(i * views_per_image + v + 1, total)
    return views


def cached_views(
    path: Path,
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    model: Sam,
    split: EncoderSplit,
    config: ClickTrainConfig,
    *,
    device: torch.device,
    progress: Callable[[int, int], None] | None = None,
) -> list[TrainView]:
    """`build_views` of ``pairs``, stored at ``path`` and read back by a resumed run.

    Only views of the frozen encoder part (``split.caches``) are stored. A stored file is used
    when it was made from the same images and masks (SHA-256 of their bytes), encoder weights,
    views per image and seed; otherwise the views are encoded again and the file replaced.
    """
    digest = hashlib.sha256()
    for image, mask in pairs:
        digest.update(np.ascontiguousarray(image).tobytes())
        digest.update(np.ascontiguousarray(mask).tobytes())
    for name, tensor in split.encoder.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().numpy().tobytes())
    key = f"{digest.hexdigest()}:{config.views_per_image}:{config.seed}:{config.train}"
    if split.caches and path.exists():
        stored = torch.load(path, map_location=device, weights_only=True)
        if stored.get("key") == key:
            return [TrainView(*v) for v in zip(stored["source"], stored["gt"], stored["valid"])]
    views = build_views(pairs, model, split, views_per_image=config.views_per_image,
                        rng=np.random.default_rng(config.seed + 1), device=device, progress=progress)
    if split.caches:
        stored = {"key": key, "source": [v.source for v in views], "gt": [v.gt for v in views],
                  "valid": [v.valid for v in views]}
        atomic_write(path, lambda fh: torch.save(stored, fh))
    return views


def train_step(
    sim: ClickSimulator,
    batch: Sequence[TrainView],
    optimizer: torch.optim.Optimizer,
    params: Sequence[nn.Parameter],
    *,
    bf16: bool = False,
) -> float:
    """One optimiser step on ``batch``: a simulated session, the loss of its last prediction,
    clipped gradients. ``bf16``: bfloat16 autocast (the weights and the optimiser stay float32).
    Returns the loss."""
    device = batch[0].gt.device
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        context = sim.context(sim.embed(batch))
        points, mask_input = sim.session(batch, context.detach())
        logits = sim.decode(context, points, mask_input)
    loss = segmentation_loss(logits, torch.stack([v.gt for v in batch]), sim.loss_weights(batch, points))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    return float(loss.detach())


def init_trunk_from_segmenter(model: Sam, segmenter_path: str | Path) -> None:
    """Fill a ConvNeXt click encoder's trunk with a trained segmenter's ConvNeXt weights.

    The segmenter's backbone (``backbone.backbone.stem.*``, ``backbone.backbone.stages.{0,1,2}.*``)
    must have been trained (``freeze_backbone=False``), so its weights are in the checkpoint.
    """
    payload = read_weights_file(segmenter_path)
    prefix = "backbone.backbone."
    trunk = model.image_encoder.trunk
    wanted = trunk.state_dict()
    state = {k[len(prefix):]: v for k, v in payload["state_dict"].items() if k.startswith(prefix)}
    state = {k: v for k, v in state.items() if k in wanted}
    missing = sorted(set(wanted) - set(state))
    if missing:
        raise KeyError(
            f"{segmenter_path} has no trained ConvNeXt weights for {missing[:5]}; train the segmenter with "
            "--unfreeze-backbone, or start from official weights."
        )
    trunk.load_state_dict(state, strict=True)


def _view_groups(dataset_of: Sequence[int] | None, n_pairs: int, views_per_image: int) -> list[np.ndarray] | None:
    """View indices per dataset (``build_views`` keeps pair order, ``views_per_image`` each)."""
    if dataset_of is None:
        return None
    if len(dataset_of) != n_pairs:
        raise ValueError(f"dataset_of names {len(dataset_of)} datasets for {n_pairs} pairs")
    owner = np.repeat(np.asarray(dataset_of), views_per_image)
    return [np.flatnonzero(owner == d) for d in np.unique(owner)]


def _checkpoint_state(model: Sam, names: Sequence[str]) -> dict[str, Tensor]:
    state = model.state_dict()
    return {n: state[n] for n in names}


def train_click_model(
    model: Sam,
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    config: ClickTrainConfig,
    out_dir: str | Path,
    *,
    dataset_of: Sequence[int] | None = None,
    device: str = "auto",
    precision: str = "auto",
    progress: Callable[[str, int, int, dict], None] | None = None,
) -> dict:
    """Train ``model`` (in place) on ``pairs`` by simulated clicks; resume from ``out_dir/last.pt``.

    ``dataset_of[i]`` names the dataset of ``pairs[i]``: each batch element then draws a dataset
    uniformly and a view within it, so datasets are drawn equally often whatever their sizes
    (``None``: views drawn uniformly).

    A plain SAM decoder is trained as an ``EnhancedMaskDecoder`` with no added parts (the same
    function and parameter names, but batched over images), so its state loads back into a plain
    ``MaskDecoder``.

    ``precision``: ``"bf16"`` (bfloat16 autocast), ``"fp32"``, or ``"auto"``: bf16 on CUDA, fp32 on
    the CPU (bf16 pays on a CPU with native bfloat16 matrix instructions,
    ``benchmarks/click_train_step.md``; elsewhere it is emulated and slower).

    Returns a summary: trainable parameter count, median seconds per step, final loss.
    """
    if precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"precision must be 'auto', 'bf16' or 'fp32', got {precision!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    bf16 = precision == "bf16" or (precision == "auto" and dev.type == "cuda")
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    if not isinstance(model.mask_decoder, EnhancedMaskDecoder):
        model.mask_decoder = EnhancedMaskDecoder.from_sam(model.mask_decoder, num_extra_layers=0, global_attention=False)
    model.to(dev)
    params = set_trainable(model, config.train)
    names = trainable_parameter_names(model, config.train)
    split = EncoderSplit(model.image_encoder, config.train)
    gates = {id(p) for n, p in model.named_parameters() if n.startswith("mask_decoder.") and n.endswith("gate")}
    groups: list[dict] = [{"params": params}]
    if config.gate_lr_scale != 1.0 and any(id(p) in gates for p in params):
        groups = [{"params": [p for p in params if id(p) not in gates]},
                  {"params": [p for p in params if id(p) in gates], "lr": config.lr * config.gate_lr_scale}]
    optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    schedule = warmup_cosine(optimizer, config.steps, warmup=100)
    start = 0
    last = out_dir / "last.pt"
    ckpt = load_resume_checkpoint(last, asdict(config), optimizer, schedule, dev)
    if ckpt is not None:
        model.load_state_dict(ckpt["params"], strict=False)
        rng.bit_generator.state = ckpt["rng"]
        start = ckpt["step"]
        log.info("resumed from %s at step %d", last, start)

    model.eval()
    views = cached_views(
        out_dir / "views.pt",
        pairs,
        model,
        split,
        config,
        device=dev,
        progress=None if progress is None else lambda i, n: progress("encode", i, n, {}),
    )
    sim = ClickSimulator(model, split, config, rng)
    groups = _view_groups(dataset_of, len(pairs), config.views_per_image)
    step_times, loss_value = [], float("nan")
    for step in range(start, config.steps):
        t0 = time.perf_counter()
        if groups is None:
            batch = [views[i] for i in rng.integers(len(views), size=config.batch_size)]
        else:
            batch = [views[rng.choice(groups[d])] for d in rng.integers(len(groups), size=config.batch_size)]
        loss_value = train_step(sim, batch, optimizer, params, bf16=bf16)
        schedule.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        step_times.append(time.perf_counter() - t0)
        if progress is not None:
            progress("train", step + 1, config.steps, {"loss": loss_value})
        if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps:
            checkpoint = {
                "config": asdict(config),
                "step": step + 1,
                "params": _checkpoint_state(model, names),
                "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(),
                "rng": rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(),
            }
            atomic_write(last, partial(torch.save, checkpoint))
    model.eval()
    return {
        "trainable_parameters": sum(p.numel() for p in params),
        "total_parameters": sum(p.numel() for p in model.parameters()),
        "median_step_s": float(np.median(step_times)) if step_times else float("nan"),
        "final_loss": loss_value,
        "steps": config.steps,
        "scope": config.train,
        "precision": "bf16" if bf16 else "fp32",
    }
