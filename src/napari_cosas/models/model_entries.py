"""The registry's entries: model architectures and the weights files registered for them
(timm's shape), and the look-ups over them.

An `Architecture` is a model as code builds it, randomly initialised (``kind``: ``"click"`` for
SAM-style click models, ``"backbone"`` for frozen backbones of the Rein segmenter,
``"segmenter"`` for Rein segmenters, ``"focus"`` for focus refiners). A `ModelSpec` is one
weights file for an architecture, named ``<architecture>.<tag>`` (``sam_vit_b.sa1b``,
``vit_small_patch14_dinov2.lvd142m``), with where it comes from: a URL with a checksum
(downloaded with pooch into `checkpoints.cache_dir`), or the project's ``weights/`` folder
(``bundled=True``, also with a SHA-256, checked on load). An architecture's name stands for its
first weights (``sam_vit_b``), and the short names users, the CLI and the committed benchmark
commands know are aliases (`ALIASES`: ``dinov2_vits14``, ``cosas-default-click``, ...).

``registry`` reads the files these entries name; this module reads none and imports no torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .checkpoints import cache_dir, weights_dirs

Kind = Literal["click", "backbone", "segmenter", "focus"]

#: The project's default models (the widget's, the CLI's and ``demo``'s).
DEFAULT_SEGMENTER = "cosas-default-segmenter"
DEFAULT_CLICK = "cosas-default-click"
DEFAULT_FOCUS = "cosas-default-focus"


@dataclass(frozen=True)
class Architecture:
    """A model architecture, apart from any weights.

    ``segmenter_backbone``: the ``models.backbones.build_backbone`` name of the Rein backbone that
    this architecture's weights fit (``None`` when they cannot be the segmenter's backbone).
    ``tiny``: how the smallest variant of the same code is built, randomly initialised, for
    tests (no weights): the ``build_click_model`` config (click), ``{"backbone": name}``
    (backbone), ``SegmenterConfig`` fields (segmenter), ``FocusRefiner`` arguments (focus).
    """

    name: str
    kind: Kind
    description: str
    segmenter_backbone: str | None = None
    tiny: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelSpec:
    """A weights file of architecture ``architecture``, named ``<architecture>.<tag>``.

    ``known_hash`` is in pooch format (``"sha256:<hex>"`` or ``"md5:<hex>"``). Where no full
    checksum is published, ``sha256_prefix`` holds the leading hex digits of the SHA-256 that
    timm / torch.hub encode in the file name (``name-<prefix>.pth``) and is checked instead.
    """

    name: str
    architecture: str
    description: str
    licence: str
    filename: str
    url: str | None = None
    known_hash: str | None = None
    sha256_prefix: str | None = None
    bundled: bool = False

    @property
    def kind(self) -> Kind:
        return get_architecture(self.architecture).kind


_SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
_DINOV2_URL = "https://dl.fbaipublicfiles.com/dinov2/"
_TIMM_URL = "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-rsb-weights/"
_TINY_CLICK = {"arch": "tiny", "decoder": "enhanced"}

_ARCHITECTURES: dict[str, Architecture] = {arch.name: arch for arch in (
    Architecture("sam_vit_b", "click", "Segment Anything with a ViT-B image encoder (91M parameters)",
                 segmenter_backbone="sam_vit_b", tiny=_TINY_CLICK),
    Architecture("sam_vit_l", "click", "Segment Anything with a ViT-L image encoder (308M parameters)",
                 segmenter_backbone="sam_vit_l", tiny=_TINY_CLICK),
    Architecture("sam_vit_h", "click", "Segment Anything with a ViT-H image encoder (636M parameters)",
                 segmenter_backbone="sam_vit_h", tiny=_TINY_CLICK),
    Architecture("convnext_sam", "click", "napari-cosas click model: ConvNeXt image encoder, SAM prompt "
                 "encoder and (enhanced) decoder", tiny={"arch": "convnext", "trunk": "test_convnext"}),
    Architecture("vit_small_patch14_dinov2", "backbone", "DINOv2 ViT-S/14 (timm)",
                 segmenter_backbone="vit_small_patch14_dinov2", tiny={"backbone": "test_vit_dinov2"}),
    Architecture("vit_base_patch14_dinov2", "backbone", "DINOv2 ViT-B/14 (timm)",
                 segmenter_backbone="vit_base_patch14_dinov2", tiny={"backbone": "test_vit_dinov2"}),
    Architecture("vit_large_patch14_dinov2", "backbone", "DINOv2 ViT-L/14 (timm)",
                 segmenter_backbone="vit_large_patch14_dinov2", tiny={"backbone": "test_vit_dinov2"}),
    Architecture("convnext_atto", "backbone", "ConvNeXt-Atto (timm)",
                 segmenter_backbone="convnext_atto", tiny={"backbone": "test_convnext"}),
    Architecture("rein_segmenter", "segmenter", "Rein segmenter: a frozen backbone with Rein and a light "
                 "Mask2Former-style head", tiny={"backbone": "test_convnext", "crop": 64, "stride": 48}),
    Architecture("focus_refiner", "focus", "focus refiner of local clicks (a small U-Net)",
                 tiny={"widths": [8, 8, 8, 8], "stem": 8, "head": 8}),
)}

_BUILTIN: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="sam_vit_b.sa1b",
        architecture="sam_vit_b",
        description="Segment Anything ViT-B (official, Meta AI), 91M-parameter encoder",
        licence="Apache-2.0",
        filename="sam_vit_b_01ec64.pth",
        url=_SAM_URL + "sam_vit_b_01ec64.pth",
        known_hash="sha256:ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
    ),
    ModelSpec(
        name="sam_vit_l.sa1b",
        architecture="sam_vit_l",
        description="Segment Anything ViT-L (official, Meta AI), 308M-parameter encoder",
        licence="Apache-2.0",
        filename="sam_vit_l_0b3195.pth",
        url=_SAM_URL + "sam_vit_l_0b3195.pth",
        known_hash="sha256:3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
    ),
    ModelSpec(
        name="sam_vit_h.sa1b",
        architecture="sam_vit_h",
        description="Segment Anything ViT-H (official, Meta AI), 636M-parameter encoder",
        licence="Apache-2.0",
        filename="sam_vit_h_4b8939.pth",
        url=_SAM_URL + "sam_vit_h_4b8939.pth",
        known_hash="sha256:a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
    ),
    ModelSpec(
        name="vit_small_patch14_dinov2.lvd142m",
        architecture="vit_small_patch14_dinov2",
        description="DINOv2 ViT-S/14 (official, Meta AI; dinov2 repository key names)",
        licence="Apache-2.0",
        filename="dinov2_vits14_pretrain.pth",
        url=_DINOV2_URL + "dinov2_vits14/dinov2_vits14_pretrain.pth",
        known_hash="sha256:b938bf1bc15cd2ec0feacfe3a1bb553fe8ea9ca46a7e1d8d00217f29aef60cd9",
    ),
    ModelSpec(
        name="vit_base_patch14_dinov2.lvd142m",
        architecture="vit_base_patch14_dinov2",
        description="DINOv2 ViT-B/14 (official, Meta AI; dinov2 repository key names)",
        licence="Apache-2.0",
        filename="dinov2_vitb14_pretrain.pth",
        url=_DINOV2_URL + "dinov2_vitb14/dinov2_vitb14_pretrain.pth",
        known_hash="sha256:0b8b82f85de91b424aded121c7e1dcc2b7bc6d0adeea651bf73a13307fad8c73",
    ),
    ModelSpec(
        name="vit_large_patch14_dinov2.lvd142m",
        architecture="vit_large_patch14_dinov2",
        description="DINOv2 ViT-L/14 (official, Meta AI; dinov2 repository key names)",
        licence="Apache-2.0",
        filename="dinov2_vitl14_pretrain.pth",
        url=_DINOV2_URL + "dinov2_vitl14/dinov2_vitl14_pretrain.pth",
        known_hash="sha256:d5383ea8f4877b2472eb973e0fd72d557c7da5d3611bd527ceeb1d7162cbf428",
    ),
    ModelSpec(
        name="convnext_atto.d2_in1k",
        architecture="convnext_atto",
        description="ConvNeXt-Atto ImageNet-1k (timm, Ross Wightman; timm key names)",
        licence="Apache-2.0",
        filename="convnext_atto_d2-01bb0f51.pth",
        url=_TIMM_URL + "convnext_atto_d2-01bb0f51.pth",
        sha256_prefix="01bb0f51",
    ),
    ModelSpec(
        name="rein_segmenter.cosas_default",
        architecture="rein_segmenter",
        description="napari-cosas default Rein segmenter, trained by the project (see weights/)",
        licence="BSD-3-Clause",
        filename="segmenter_default.pt",
        known_hash="sha256:f89fa762d9709ea6bd9b3825c78b3e26613dbdb4671e99b90314078b3dc3a817",
        bundled=True,
    ),
    ModelSpec(
        name="convnext_sam.cosas_default",
        architecture="convnext_sam",
        description="napari-cosas default click model (ConvNeXt encoder + enhanced decoder)",
        licence="BSD-3-Clause",
        filename="click_default.pt",
        known_hash="sha256:7a2c7b79dae2155ae58580703cf37bb6ca053fa9377ee923a72bb8e78f683c13",
        bundled=True,
    ),
    ModelSpec(
        name="focus_refiner.cosas_default",
        architecture="focus_refiner",
        description="napari-cosas default focus refiner of local clicks (a small U-Net, see weights/)",
        licence="BSD-3-Clause",
        filename="focus_default.pt",
        known_hash="sha256:c2e0e51048fb624773e532f4c411d1148059da9423cd7203d2f765bf4485f32f",
        bundled=True,
    ),
)

_REGISTRY: dict[str, ModelSpec] = {spec.name: spec for spec in _BUILTIN}

#: Short names of registered weights (besides each architecture's name, which stands for its
#: first weights): the names the CLI defaults, the docs and the benchmark commands use.
ALIASES: Mapping[str, str] = {
    "dinov2_vits14": "vit_small_patch14_dinov2.lvd142m",
    "dinov2_vitb14": "vit_base_patch14_dinov2.lvd142m",
    "dinov2_vitl14": "vit_large_patch14_dinov2.lvd142m",
    DEFAULT_SEGMENTER: "rein_segmenter.cosas_default",
    DEFAULT_CLICK: "convnext_sam.cosas_default",
    DEFAULT_FOCUS: "focus_refiner.cosas_default",
}


def register_architecture(architecture: Architecture) -> None:
    """Add an architecture (``ValueError`` if its name is taken)."""
    if architecture.name in _ARCHITECTURES:
        raise ValueError(f"architecture {architecture.name!r} is already registered")
    _ARCHITECTURES[architecture.name] = architecture


def register(spec: ModelSpec) -> None:
    """Add weights ``spec`` (``ValueError`` if its name is taken or its architecture unknown)."""
    if spec.name in _REGISTRY or spec.name in ALIASES:
        raise ValueError(f"model {spec.name!r} is already registered")
    get_architecture(spec.architecture)
    _REGISTRY[spec.name] = spec


def unregister(name: str) -> None:
    """Remove the weights or the architecture called ``name`` (what `register` /
    `register_architecture` added; an architecture only once no weights use it)."""
    if name in _REGISTRY:
        del _REGISTRY[name]
    elif any(spec.architecture == name for spec in _REGISTRY.values()):
        raise ValueError(f"architecture {name!r} still has registered weights")
    else:
        del _ARCHITECTURES[name]


def list_architectures(kind: Kind | None = None) -> list[Architecture]:
    """Registered architectures, sorted by name, optionally only those of one ``kind``."""
    return [a for _, a in sorted(_ARCHITECTURES.items()) if kind is None or a.kind == kind]


def get_architecture(name: str) -> Architecture:
    """The architecture called ``name``; ``KeyError`` listing the registered ones otherwise."""
    try:
        return _ARCHITECTURES[name]
    except KeyError:
        raise KeyError(f"unknown architecture {name!r}; registered: {', '.join(sorted(_ARCHITECTURES))}") from None


def list_models(kind: Kind | None = None) -> list[ModelSpec]:
    """Registered weights, sorted by name, optionally only those of one ``kind``."""
    return [s for _, s in sorted(_REGISTRY.items()) if kind is None or s.kind == kind]


def _canonical(name: str) -> str | None:
    """The weights name that ``name`` stands for (itself, an alias, or an architecture's first
    weights), or ``None`` when it names none."""
    if name in _REGISTRY:
        return name
    if name in ALIASES:
        return ALIASES[name]
    return next((s.name for s in _REGISTRY.values() if s.architecture == name), None)


def model_names(kind: Kind | None = None) -> list[str]:
    """Every name that `get_spec` resolves, sorted: weights names, aliases, architecture names."""
    names = {n for n in (*_REGISTRY, *ALIASES, *_ARCHITECTURES) if _canonical(n) is not None}
    return sorted(n for n in names if kind is None or get_spec(n).kind == kind)


def is_registered(name: object) -> bool:
    """Whether ``name`` is a string `get_spec` resolves."""
    return isinstance(name, str) and _canonical(name) is not None


def get_spec(name: str) -> ModelSpec:
    """The weights ``name`` stands for (a weights name, an alias, or an architecture's name for
    its first weights); ``KeyError`` listing the available names otherwise."""
    canonical = _canonical(name)
    if canonical is None:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(model_names())}") from None
    return _REGISTRY[canonical]


def short_name(spec: ModelSpec) -> str:
    """The name users know ``spec`` by: its alias, else its architecture's name when it is that
    architecture's first weights, else its own name."""
    alias = next((a for a, target in ALIASES.items() if target == spec.name), None)
    if alias is not None:
        return alias
    return spec.architecture if _canonical(spec.architecture) == spec.name else spec.name


def available_models(kind: Literal["click", "segmenter"]) -> list[str]:
    """Names (`short_name`) of ``kind`` whose weights are on this machine, the default first.

    The project's default is always listed (loading it reports missing weights clearly); other
    models are listed only when their file is in the weights folders or the download cache
    (existence only: the checksum is verified when the model is loaded).
    """
    default = DEFAULT_CLICK if kind == "click" else DEFAULT_SEGMENTER
    names = [default]
    for spec in list_models(kind):
        if spec.name == get_spec(default).name:
            continue
        folders = weights_dirs() if spec.bundled else [cache_dir()]
        if any((folder / spec.filename).is_file() for folder in folders):
            names.append(short_name(spec))
    return names


def backbone_architecture(name: str) -> str:
    """The Rein backbone (``models.backbones.build_backbone`` name) that registered weights
    ``name`` fit (their architecture's ``segmenter_backbone``: a timm backbone, or the image
    encoder of an official SAM checkpoint). ``ValueError`` naming the usable weights otherwise."""
    spec = get_spec(name)
    architecture = _backbone_of(spec)
    if architecture is None:
        usable = ", ".join(short_name(s) for s in list_models() if _backbone_of(s))
        raise ValueError(f"{name!r} is a {spec.kind} model with no backbone for the segmenter; use one of: {usable}")
    return architecture


def _backbone_of(spec: ModelSpec) -> str | None:
    return get_architecture(spec.architecture).segmenter_backbone
