"""``napari-cosas train-segmenter``, ``train-decoder``, ``record-focus`` and ``train-focus``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path

from tqdm import tqdm

log = logging.getLogger(__name__)

#: The segmenter's backbone when neither ``--backbone`` nor ``--backbone-weights`` names one.
DEFAULT_BACKBONE = "convnext_atto"


def _datasets(pairs: list[list[str]] | None, allow_lossy_masks: bool = False):
    from .segmenter_training import load_pairs

    return [load_pairs(images, masks, allow_lossy_masks=allow_lossy_masks) for images, masks in pairs or []]


def _bar(total_desc: str):
    bar: list[tqdm] = []

    def update(done: int, total: int, info: dict) -> None:
        if not bar:
            bar.append(tqdm(total=total, desc=total_desc, file=sys.stderr))
            bar[0].update(done - 1)
        bar[0].set_postfix({k: f"{v:.4f}" for k, v in info.items()}, refresh=False)
        bar[0].update(done - bar[0].n)
        if done == total:
            bar.pop().close()

    return update


def _write_summary(out: Path, summary: dict) -> None:
    from ..io.files import atomic_write

    atomic_write(out / "summary.json", json.dumps(summary, indent=2).encode())


def _backbone_name(backbone: str | None, weights: str | None) -> str:
    """The segmenter's backbone: ``--backbone``, else the architecture that the registered
    weights ``--backbone-weights`` fit, else :data:`DEFAULT_BACKBONE`."""
    from ..models.registry import backbone_architecture

    if weights is None:
        return backbone or DEFAULT_BACKBONE
    name = backbone_architecture(weights)
    if backbone not in (None, name):
        raise ValueError(f"--backbone-weights {weights} holds a {name!r} backbone, not {backbone!r}; "
                         f"leave out --backbone or pass --backbone {name}")
    return name


def cmd_train_segmenter(args: argparse.Namespace) -> int:
    from ..models.registry import segmenter_file
    from ..models.segmenter import SegmenterConfig, read_segmenter_config
    from .segmenter_training import SegmenterTrainConfig, train_segmenter

    init_from = str(segmenter_file(args.init_from)) if args.init_from else None
    backbone = args.backbone
    if init_from and backbone is None and args.backbone_weights is None:
        backbone = read_segmenter_config(init_from).backbone
    model = SegmenterConfig(
        backbone=_backbone_name(backbone, args.backbone_weights),
        backbone_weights=args.backbone_weights,
        freeze_backbone=not args.unfreeze_backbone,
        crop=args.crop,
        stride=max(1, round(args.crop * 2 / 3)),
    )
    config = SegmenterTrainConfig(
        model=asdict(model),
        init_from=init_from,
        steps=args.steps,
        batch_size=args.batch_size,
        crop=args.crop,
        lr=args.lr,
        backbone_lr=args.backbone_lr,
        val_every=args.val_every,
        checkpoint_every=args.checkpoint_every,
        seed=args.seed,
    )
    val = [s for d in _datasets(args.val, args.allow_jpeg_masks) for s in d]
    summary = train_segmenter(
        _datasets(args.data, args.allow_jpeg_masks),
        config,
        args.out,
        val=val,
        device=args.device,
        workers=args.workers,
        progress=_bar("train-segmenter"),
    )
    _write_summary(Path(args.out), {"config": asdict(config), **summary})
    log.info("segmenter written to %s", Path(args.out) / "segmenter.pt")
    return 0


def cmd_train_decoder(args: argparse.Namespace) -> int:
    from ..models.sam_models import build_click_model, convert_decoder, load_click_checkpoint, save_click_model
    from .click_training import ClickTrainConfig, init_trunk_from_segmenter, train_click_model

    if args.start_from:
        model, arch = load_click_checkpoint(args.start_from)
        if args.decoder:
            model, arch = convert_decoder(model, arch, args.decoder)
    else:
        arch = {"arch": args.arch, "decoder": args.decoder or "enhanced"}
        if args.arch == "convnext":
            arch["trunk"] = args.trunk
        elif args.arch == "sam_vit":
            arch["variant"] = args.variant
        model = build_click_model(arch)
        if args.sam_checkpoint:
            from ..models.sam_models import load_sam_checkpoint

            load_sam_checkpoint(model, args.sam_checkpoint)
        if args.trunk_from_segmenter:
            init_trunk_from_segmenter(model, args.trunk_from_segmenter)
    config = ClickTrainConfig(
        model=arch,
        decoder=arch.get("decoder", "enhanced"),
        train=args.train,
        init_weights=args.start_from or args.sam_checkpoint or args.trunk_from_segmenter,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        max_rounds=args.max_rounds,
        p_mask_prompt=args.mask_prompts,
        click_focus=args.click_focus,
        views_per_image=args.views,
        checkpoint_every=args.checkpoint_every,
        seed=args.seed,
        gate_lr_scale=args.gate_lr_scale,
    )
    datasets = _datasets(args.data, args.allow_jpeg_masks)
    pairs = [s for d in datasets for s in d]
    dataset_of = [i for i, d in enumerate(datasets) for _ in d]
    progress_train = _bar(f"train-decoder ({args.train})")
    progress_encode = _bar("encode views")

    def progress(stage: str, done: int, total: int, info: dict) -> None:
        (progress_encode if stage == "encode" else progress_train)(done, total, info)

    summary = train_click_model(model, pairs, config, args.out, dataset_of=dataset_of, device=args.device,
                                precision=args.precision, progress=progress)
    out = Path(args.out)
    save_click_model(model.cpu(), out / "click.pt", arch)
    _write_summary(out, {"config": asdict(config), **summary})
    log.info("click model written to %s", out / "click.pt")
    return 0


def cmd_record_focus(args: argparse.Namespace) -> int:
    import torch

    from ..inference.predictor import ClickPredictor
    from ..models.registry import load_focus_refiner, load_segmenter
    from .focus_training import RECORD_SIZE, RECORD_WINDOW, record_folder

    torch.set_num_threads(args.threads)
    segmenter = load_segmenter(args.segmenter, device="cpu")
    predictor = ClickPredictor.from_registry(args.model, device="cpu")
    refiner = load_focus_refiner(args.refiner) if args.refiner else None
    n = record_folder(predictor, segmenter, Path(args.data[0]), Path(args.data[1]), Path(args.out),
                      images=args.images, max_clicks=args.max_clicks, refiner=refiner, seed=args.seed,
                      window=RECORD_WINDOW if args.window is None else args.window,
                      size=RECORD_SIZE if args.size is None else args.size)
    log.info("%d records written to %s", n, args.out)
    return 0


def cmd_train_focus(args: argparse.Namespace) -> int:
    import torch

    from ..io.files import atomic_write
    from ..inference.focus import FOCUS_SIZE
    from ..models.focus_refiner import refiner_payload
    from ..models.registry import load_focus_refiner
    from .focus_training import train_refiner

    torch.set_num_threads(args.threads)
    start = load_focus_refiner(args.start_from) if args.start_from else None
    refiner = train_refiner([Path(p) for p in args.records], Path(args.out), steps=args.steps,
                            batch_size=args.batch_size, lr=args.lr, size=FOCUS_SIZE if args.size is None else args.size,
                            seed=args.seed, start=start)
    atomic_write(Path(args.out) / "refiner.pt", lambda fh: torch.save(refiner_payload(refiner), fh))
    log.info("focus refiner written to %s", Path(args.out) / "refiner.pt")
    return 0


def add_training_commands(sub: argparse._SubParsersAction) -> None:
    """Register the training subcommands on the main parser."""
    p = sub.add_parser("train-segmenter", help="train Rein + head (the automatic segmenter) on image/mask folders")
    p.add_argument(
        "--data", nargs=2, action="append", metavar=("IMAGES", "MASKS"), required=True,
        help="a training dataset: images folder and masks folder (paired by stem); repeat for several",
    )
    p.add_argument("--val", nargs=2, action="append", metavar=("IMAGES", "MASKS"), help="validation folders")
    p.add_argument("--out", required=True, help="run folder: last.pt (resume), segmenter.pt, summary.json")
    p.add_argument(
        "--backbone", default=None,
        help="backbone architecture (timm / SAM name); default: that of --backbone-weights or of the "
             f"--init-from segmenter, else {DEFAULT_BACKBONE}",
    )
    p.add_argument(
        "--backbone-weights", default=None, metavar="NAME",
        help="registered weights the backbone starts from (e.g. dinov2_vitl14, sam_vit_b); "
             "downloaded once and checked against its hash; default: random weights",
    )
    p.add_argument("--unfreeze-backbone", action="store_true", help="train the backbone too (at --backbone-lr)")
    p.add_argument(
        "--init-from", default=None,
        help="segmenter to start from, a file or a registered name such as cosas-default-segmenter (fine-tuning "
             "on corrections, cross-task pretraining); its backbone comes with it, frozen unless --unfreeze-backbone",
    )
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--crop", type=int, default=512)
    p.add_argument("--lr", type=float, default=1e-4, help="learning rate of Rein and head")
    p.add_argument("--backbone-lr", type=float, default=1e-5)
    p.add_argument("--val-every", type=int, default=500)
    p.add_argument("--workers", type=int, default=2, help="processes preparing augmented crops")
    p.add_argument(
        "--checkpoint-every", type=int, default=250,
        help="steps between saves of last.pt, from which an interrupted run resumes",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--allow-jpeg-masks", action="store_true",
                   help="accept masks saved as JPEG, thresholded at 128 (refused by default)")
    p.set_defaults(func=cmd_train_segmenter)

    p = sub.add_parser("train-decoder", help="train the click model's mask decoder by simulated clicks")
    p.add_argument("--data", nargs=2, action="append", metavar=("IMAGES", "MASKS"), required=True)
    p.add_argument("--out", required=True, help="run folder: last.pt (resume), click.pt, summary.json")
    p.add_argument("--arch", default="convnext", choices=("convnext", "sam_vit", "tiny"))
    p.add_argument("--trunk", default="convnext_atto", help="timm ConvNeXt for --arch convnext")
    p.add_argument("--variant", default="vit_b", choices=("vit_b", "vit_l", "vit_h"), help="for --arch sam_vit")
    p.add_argument("--gate-lr-scale", type=float, default=1.0,
                   help="the enhanced decoder's gates (zero at the start) learn at --lr times this")
    p.add_argument("--decoder", default=None, choices=("plain", "enhanced"),
                   help="default: enhanced, or the --start-from model's; plain with an enhanced --start-from drops "
                        "its added parts, enhanced with a plain one adds them at zero gates")
    p.add_argument("--sam-checkpoint", default=None, help="official SAM checkpoint to start from")
    p.add_argument("--trunk-from-segmenter", default=None, help="segmenter checkpoint whose ConvNeXt fills the trunk")
    p.add_argument("--start-from", default=None, help="a napari-cosas click checkpoint to continue from")
    p.add_argument(
        "--train", default="decoder", choices=("decoder", "prompt+neck+decoder", "encoder+decoder", "all"),
        help="what gets gradients; decoder only is the product's path",
    )
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--max-rounds", type=int, default=5, help="most no-gradient click rounds before the trained one")
    p.add_argument("--views", type=int, default=2, help="augmented views encoded per image")
    p.add_argument(
        "--mask-prompts", type=float, default=0.0, metavar="P",
        help="share of sessions whose later mask prompts are the binarised prediction, as a local click "
             "in the widget prompts with the mask (default 0: the previous logits, RITM)",
    )
    p.add_argument(
        "--click-focus", type=float, default=0.0,
        help="extra loss weight inside the local click window around the last click (default 0)",
    )
    p.add_argument(
        "--checkpoint-every", type=int, default=250,
        help="steps between saves of last.pt, from which an interrupted run resumes",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"),
                   help="auto: bf16 autocast on CUDA, fp32 on the CPU; bf16 pays on a CPU with native bfloat16")
    p.add_argument("--allow-jpeg-masks", action="store_true",
                   help="accept masks saved as JPEG, thresholded at 128 (refused by default)")
    p.set_defaults(func=cmd_train_decoder)

    p = sub.add_parser("record-focus", help="play simulated click sessions and record crops for train-focus")
    p.add_argument("--data", nargs=2, required=True, metavar=("IMAGES", "MASKS"), help="training images only")
    p.add_argument("--out", required=True, help="the records file (.npz)")
    p.add_argument("--model", default="cosas-default-click", help="click model (frozen)")
    p.add_argument("--segmenter", default="cosas-default-segmenter", help="gives the automatic start masks")
    p.add_argument("--refiner", default=None, help="a focus refiner to play the sessions with (default: none)")
    p.add_argument("--images", type=int, default=None, help="a seeded sample of this many images (default: all)")
    p.add_argument("--max-clicks", type=int, default=10, help="clicks per session")
    p.add_argument("--window", type=float, default=None,
                   help="side of a recorded square around a click, a fraction of the longer image side (default 0.5)")
    p.add_argument("--size", type=int, default=None, help="pixels a recorded square is resampled to (default 192)")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_record_focus)

    p = sub.add_parser("train-focus", help="train the focus refiner on record-focus records (CPU)")
    p.add_argument("--records", nargs="+", required=True, help=".npz files, each drawn equally often")
    p.add_argument("--out", required=True, help="run folder: last.pt (resume), refiner.pt")
    p.add_argument("--start-from", default=None, help="a refiner file or registered name to continue from")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--size", type=int, default=None,
                   help="pixels a training sub-square (half to all of a record's side) is resampled to (default 96)")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_train_focus)
