"""Scorer networks for the FCN-score, and their self-describing checkpoints.

The paper scores its GANs with FCN-8s (Long, Shelhamer & Darrell, CVPR 2015) trained on Cityscapes, as the
pix2pix authors did (their Caffe model). :func:`load_scorer` reads three kinds of file, told apart by content:

* the pix2pix authors' ``fcn-8s-cityscapes.caffemodel`` (:mod:`evaluation.caffe_fcn8s`; ``kind="caffe_fcn8s"``);
* fyu/drn's ``drn-d-105_ms_cityscapes.pth``, a ``DRNSeg`` state dict (:mod:`evaluation.drn`; ``"drn_d_105"``);
* a checkpoint of a scorer trained by :mod:`evaluation.train_scorer` from the user's photos (``"trained"``),
  of the architectures below.

The user downloads the published files; nothing is ever fetched here (torchvision constructors get
``weights=None, weights_backbone=None``).

Architectures (``--arch``):

==================== =========================================================================================
``fcn8s_vgg16``       FCN-8s on torchvision's VGG16 body (the paper's scorer): fc6/fc7 as 7x7 and 1x1
                      convolutions (4096 channels), class scores fused with 1x1 scores of pool4 and pool3, 2x, 2x
                      and 8x bilinear upsampling. ~134M parameters. The upsampling is fixed bilinear
                      (``F.interpolate``) instead of the original's learned deconvolutions that start bilinear,
                      so any input size works without the original's pad-100-and-crop trick.
``fcn8s_vgg16_bn``    The same on VGG16 with batch norm: much easier to train from scratch (no ImageNet
                      weights), the recommended big scorer.
``fcn_resnet50``      torchvision ``fcn_resnet50`` (dilated ResNet-50, output stride 8), no aux head.
``deeplabv3_resnet50`` torchvision ``deeplabv3_resnet50`` (ASPP head), no aux head.
``fcn8s_small``       A width-reduced FCN-8s for CPUs, tests and the newcomer demo: five VGG-style stages with
                      batch norm, widths ``base * (1, 2, 4, 8, 8)`` (``base=16`` by default, ``arch_kwargs``),
                      the first stage a stride-2 convolution (cheap at full resolution), a 3x3 head instead of
                      fc6/fc7, the same pool3/pool4 skips. ~0.9M parameters at base 16.
==================== =========================================================================================

Every network maps a normalized (N, 3, H, W) photo batch to (N, C, H, W) class logits at the input size; H and
W need not be multiples of 32.

Checkpoint (a plain dict, loadable with ``torch.load(weights_only=True)``)::

    {"format": "pix2pix_tr.fcn_scorer", "format_version": 1,
     "arch": "fcn8s_small", "arch_kwargs": {"base": 16},
     "num_classes": 19, "class_names": [... 19 Cityscapes train classes ...],
     "image_size": 256,                      # square size the scorer was trained at (photos squashed to it)
     "normalization": {"mean": [..3..], "std": [..3..]},   # x = (rgb / 255 - mean) / std
     "state_dict": {...}, "train": {...}}    # the recipe, epochs done, its GT-row scores

:func:`load_scorer` checks all of it and raises :class:`~evaluation.common.ScorerCheckpointError` naming the
file when anything does not fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from evaluation.caffe_fcn8s import PIX2PIX_BGR_MEAN, load_caffe_fcn8s, looks_like_caffemodel
from evaluation.common import ScorerCheckpointError, sha256_file
from evaluation.drn import DRN_MEAN, DRN_STD, drn_from_state_dict, is_drn_state_dict
from evaluation.labels import NUM_CLASSES, TRAIN_CLASS_NAMES

CHECKPOINT_FORMAT = "pix2pix_tr.fcn_scorer"
CHECKPOINT_VERSION = 1
#: Default input normalization: pix2pix's [-1, 1] range.
DEFAULT_MEAN = (0.5, 0.5, 0.5)
DEFAULT_STD = (0.5, 0.5, 0.5)


class FCN8s(nn.Module):
    """FCN-8s over any body split into three parts: ... -> pool3 -> pool4 -> pool5.

    ``head`` maps pool5 features to ``head_channels`` (fc6/fc7 in the VGG16 original). Class scores of the
    head are upsampled 2x and added to scores of pool4, upsampled 2x and added to scores of pool3, then
    upsampled 8x to the input size. The skip score layers start at zero (as in the original), so training
    begins as FCN-32s and learns to use the finer features.
    """

    def __init__(self, to_pool3: nn.Module, to_pool4: nn.Module, to_pool5: nn.Module, head: nn.Module,
                 pool3_channels: int, pool4_channels: int, head_channels: int, num_classes: int):
        super().__init__()
        self.to_pool3, self.to_pool4, self.to_pool5, self.head = to_pool3, to_pool4, to_pool5, head
        self.score_fr = nn.Conv2d(head_channels, num_classes, 1)
        self.score_pool4 = nn.Conv2d(pool4_channels, num_classes, 1)
        self.score_pool3 = nn.Conv2d(pool3_channels, num_classes, 1)
        for layer in (self.score_pool4, self.score_pool3):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        pool3 = self.to_pool3(x)
        pool4 = self.to_pool4(pool3)
        score = self.score_fr(self.head(self.to_pool5(pool4)))
        score = F.interpolate(score, size=pool4.shape[-2:], mode="bilinear", align_corners=False)
        score = score + self.score_pool4(pool4)
        score = F.interpolate(score, size=pool3.shape[-2:], mode="bilinear", align_corners=False)
        score = score + self.score_pool3(pool3)
        return F.interpolate(score, size=size, mode="bilinear", align_corners=False)


def _split_at_pools(features: nn.Sequential) -> tuple[nn.Sequential, nn.Sequential, nn.Sequential]:
    pools = [i for i, layer in enumerate(features) if isinstance(layer, nn.MaxPool2d)]
    if len(pools) != 5:
        raise ValueError(f"expected a VGG body with 5 max-pools, found {len(pools)}")
    p3, p4 = pools[2], pools[3]
    return features[: p3 + 1], features[p3 + 1: p4 + 1], features[p4 + 1:]


def _fcn8s_vgg16(num_classes: int, batch_norm: bool = False, dropout: float = 0.5) -> FCN8s:
    import torchvision

    ctor = torchvision.models.vgg16_bn if batch_norm else torchvision.models.vgg16
    body = ctor(weights=None).features
    to_pool3, to_pool4, to_pool5 = _split_at_pools(body)
    head = nn.Sequential(
        nn.Conv2d(512, 4096, 7, padding=3), nn.ReLU(inplace=True), nn.Dropout2d(dropout),
        nn.Conv2d(4096, 4096, 1), nn.ReLU(inplace=True), nn.Dropout2d(dropout),
    )
    return FCN8s(to_pool3, to_pool4, to_pool5, head, 256, 512, 4096, num_classes)


def _conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def _fcn8s_small(num_classes: int, base: int = 16, convs_per_stage: int = 2, dropout: float = 0.1) -> FCN8s:
    """VGG-like, but the first stage is one stride-2 convolution plus one convolution at 1/2 resolution (a
    third of the full-resolution work of VGG's two convolutions at full size), then stages at 1/4, 1/8 (pool3),
    1/16 (pool4), 1/32 (pool5) with ``convs_per_stage`` 3x3 conv-BN-ReLU each."""
    if base < 1 or convs_per_stage < 1:
        raise ValueError("fcn8s_small needs base >= 1 and convs_per_stage >= 1")
    widths = [base, base * 2, base * 4, base * 8, base * 8]
    stem = [nn.Conv2d(3, base, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(base), nn.ReLU(inplace=True),
            *_conv_bn_relu(base, base)]
    stages, cin = [], base
    for w in widths[1:]:
        layers: list[nn.Module] = [nn.MaxPool2d(2, ceil_mode=True)]
        for _ in range(convs_per_stage):
            layers += _conv_bn_relu(cin, w)
            cin = w
        stages.append(layers)
    to_pool3 = nn.Sequential(*stem, *stages[0], *stages[1])
    to_pool4 = nn.Sequential(*stages[2])
    to_pool5 = nn.Sequential(*stages[3])
    head_channels = base * 16
    head = nn.Sequential(*_conv_bn_relu(widths[4], head_channels), nn.Dropout2d(dropout))
    return FCN8s(to_pool3, to_pool4, to_pool5, head, widths[2], widths[3], head_channels, num_classes)


class _TorchvisionSegmentation(nn.Module):
    """torchvision's segmentation models return ``{"out": logits}``; this returns the logits."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)["out"]


def _torchvision_segmentation(name: str, num_classes: int) -> nn.Module:
    from torchvision.models import segmentation

    ctor = getattr(segmentation, name)
    return _TorchvisionSegmentation(ctor(weights=None, weights_backbone=None, num_classes=num_classes,
                                         aux_loss=False))


@dataclass(frozen=True)
class ArchSpec:
    """An architecture and its default training recipe (what ``train_scorer`` uses unless told otherwise)."""
    build: Any
    description: str
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    default_kwargs: dict = field(default_factory=dict)


ARCHITECTURES: dict[str, ArchSpec] = {
    "fcn8s_small": ArchSpec(_fcn8s_small, "width-reduced FCN-8s with batch norm (CPU, tests, the demo)",
                            "adam", 3e-3, 1e-4, {"base": 16}),
    "fcn8s_vgg16": ArchSpec(lambda c, **kw: _fcn8s_vgg16(c, batch_norm=False, **kw),
                            "FCN-8s on VGG16, the paper's scorer architecture", "sgd", 1e-2, 5e-4),
    "fcn8s_vgg16_bn": ArchSpec(lambda c, **kw: _fcn8s_vgg16(c, batch_norm=True, **kw),
                               "FCN-8s on VGG16 with batch norm (trains from scratch more easily)", "sgd", 2e-2, 5e-4),
    "fcn_resnet50": ArchSpec(lambda c: _torchvision_segmentation("fcn_resnet50", c),
                             "torchvision fcn_resnet50 (no pretrained weights)", "sgd", 2e-2, 1e-4),
    "deeplabv3_resnet50": ArchSpec(lambda c: _torchvision_segmentation("deeplabv3_resnet50", c),
                                   "torchvision deeplabv3_resnet50 (no pretrained weights)", "sgd", 2e-2, 1e-4),
}


def build_scorer(arch: str, num_classes: int = NUM_CLASSES, **arch_kwargs: Any) -> nn.Module:
    """A freshly initialized scorer network (see the module docstring for the architectures)."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown scorer architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    spec = ARCHITECTURES[arch]
    kwargs = {**spec.default_kwargs, **arch_kwargs}
    try:
        return spec.build(num_classes, **kwargs)
    except TypeError as exc:
        raise ValueError(f"scorer architecture {arch!r} does not take arguments {sorted(arch_kwargs)}: {exc}") from None


def scorer_checkpoint(model: nn.Module, *, arch: str, arch_kwargs: dict | None = None, image_size: int,
                      mean: Sequence[float] = DEFAULT_MEAN, std: Sequence[float] = DEFAULT_STD,
                      class_names: Sequence[str] = TRAIN_CLASS_NAMES, train: dict | None = None) -> dict:
    """The checkpoint dict of a scorer (save it with :func:`pix2pix_tr.io.atomic_torch_save`)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "arch": arch,
        "arch_kwargs": {**ARCHITECTURES[arch].default_kwargs, **(arch_kwargs or {})},
        "num_classes": len(class_names),
        "class_names": list(class_names),
        "image_size": int(image_size),
        "normalization": {"mean": [float(m) for m in mean], "std": [float(s) for s in std]},
        "state_dict": state,
        "train": dict(train or {}),
    }


@dataclass
class Scorer:
    """A loaded scorer: the network (eval mode) plus what its checkpoint says about it."""
    model: nn.Module
    arch: str
    arch_kwargs: dict
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    class_names: list[str]
    path: str
    sha256: str
    train: dict
    #: "trained" (a train_scorer checkpoint), "caffe_fcn8s" (the pix2pix authors' .caffemodel) or "drn_d_105".
    kind: str = "trained"
    #: How the network wants its input: "rgb01" = ``(rgb / 255 - mean) / std``; "bgr255" = ``bgr - mean`` (Caffe).
    input_convention: str = "rgb01"
    #: Output channels when the network has more than ``class_names`` (the FCN-8s' 20th channel), else None.
    num_outputs: int | None = None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def outputs(self) -> int:
        """How many channels the network's output has (``len(class_names)`` unless ``num_outputs`` says more)."""
        return self.num_outputs or len(self.class_names)

    @torch.inference_mode()
    def predict(self, photos: torch.Tensor) -> torch.Tensor:
        """Normalized (N, 3, H, W) photos -> (N, H, W) int64 train ids (argmax of the logits)."""
        return self.model(photos.to(self.device, non_blocking=True)).argmax(dim=1)

    def describe(self) -> dict:
        return {"path": self.path, "sha256": self.sha256, "kind": self.kind, "arch": self.arch,
                "arch_kwargs": self.arch_kwargs, "image_size": self.image_size,
                "normalization": {"mean": list(self.mean), "std": list(self.std),
                                  "convention": self.input_convention},
                "num_outputs": self.outputs,
                "train": {k: v for k, v in self.train.items() if k in _TRAIN_KEYS_TO_REPORT}}


_TRAIN_KEYS_TO_REPORT = ("epochs", "epochs_done", "batch_size", "lr", "optimizer", "train_frames", "cityscapes_dir",
                         "gt_scores", "finished")


def _fail(path: Path, why: str) -> ScorerCheckpointError:
    return ScorerCheckpointError(f"scorer checkpoint {path} {why}")


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise _fail(path, "does not exist; train one with python -m evaluation.train_scorer --cityscapes_dir DIR "
                          "--output scorer.pth, or pass the published fcn-8s-cityscapes.caffemodel or "
                          "drn-d-105_ms_cityscapes.pth (docs/evaluation.md says where to get them)")


def _torch_load(path: Path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle / zip errors come in many types
        from pix2pix_tr.safe_load import describe_load_error

        raise _fail(path, f"is not a checkpoint we can load safely: {describe_load_error(exc)}") from None


def read_scorer_checkpoint(path: str | Path) -> dict:
    """``torch.load(weights_only=True)`` plus the format checks; returns the checkpoint dict."""
    path = Path(path)
    _require_file(path)
    return check_scorer_checkpoint(_torch_load(path), path)


def check_scorer_checkpoint(ckpt: Any, path: Path) -> dict:
    """The format checks of a loaded ``train_scorer`` checkpoint; returns it."""
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        hint = ""
        if isinstance(ckpt, dict) and ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
            hint = " (it is a bare state_dict, e.g. a pix2pix net_G.pth)"
        raise _fail(path, f"is not an FCN-score scorer checkpoint{hint}; make one with "
                          f"python -m evaluation.train_scorer")
    if ckpt.get("format_version") != CHECKPOINT_VERSION:
        raise _fail(path, f"has format version {ckpt.get('format_version')!r}; this evaluator reads version "
                          f"{CHECKPOINT_VERSION}")
    missing = [k for k in ("arch", "arch_kwargs", "num_classes", "class_names", "image_size", "normalization",
                           "state_dict") if k not in ckpt]
    if missing:
        raise _fail(path, f"lacks the entries {missing}; it is damaged or was not written by train_scorer")
    if ckpt["arch"] not in ARCHITECTURES:
        raise _fail(path, f"was saved for scorer architecture {ckpt['arch']!r}, which this version does not know "
                          f"(known: {', '.join(ARCHITECTURES)})")
    if len(ckpt["class_names"]) != ckpt["num_classes"]:
        raise _fail(path, f"lists {len(ckpt['class_names'])} class names for {ckpt['num_classes']} classes")
    norm = ckpt["normalization"]
    if not (isinstance(norm, dict) and len(norm.get("mean", ())) == 3 and len(norm.get("std", ())) == 3):
        raise _fail(path, "has no valid normalization (3 means and 3 stds)")
    try:
        mean, std = [float(m) for m in norm["mean"]], [float(s) for s in norm["std"]]
    except (TypeError, ValueError):
        raise _fail(path, "has no valid normalization (3 means and 3 stds)") from None
    if not all(math.isfinite(v) for v in mean + std) or not all(v > 0 for v in std):
        raise _fail(path, f"has an impossible input normalization (mean {mean}, std {std}; the means must be finite "
                          f"and the stds finite and above 0), so every photo would become NaN/inf; it is damaged or "
                          f"was not written by train_scorer: train a new one with python -m evaluation.train_scorer")
    size = ckpt["image_size"]
    if isinstance(size, bool) or not isinstance(size, int) or size < 16:
        raise _fail(path, f"records image_size {size!r}, but a scorer is trained at 16 or more pixels (train_scorer "
                          f"refuses less); it is damaged or was not written by train_scorer: train a new one with "
                          f"python -m evaluation.train_scorer")
    return ckpt


def check_finite_weights(model: nn.Module, path: Path, kind: str = "trained") -> None:
    """Refuse a network holding NaN/inf weights or buffers (a diverged training, a damaged file): it would label
    every pixel alike and be published as a score near the majority-class baseline."""
    bad, first = 0, None
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point():
            count = int((~torch.isfinite(tensor)).sum())
            if count and first is None:
                first = name
            bad += count
    if bad:
        advice = ("its training diverged: train a new one with a lower --lr (python -m evaluation.train_scorer)"
                  if kind == "trained" else "the file is damaged: download it again")
        raise _fail(path, f"holds {bad} non-finite (NaN/inf) values, e.g. in {first!r}; {advice}")


def load_scorer(path: str | Path, device: str | torch.device = "cpu", *,
                class_names: Sequence[str] | None = TRAIN_CLASS_NAMES) -> Scorer:
    """Load a scorer for inference and check it predicts ``class_names`` (default: Cityscapes' 19).

    ``path``: a ``train_scorer`` checkpoint, the pix2pix authors' FCN-8s ``.caffemodel`` or a DRN-D-105 ``DRNSeg``
    state dict (with or without the ``module.`` prefix). ``Scorer.model(x)`` returns what the original network
    returns on its own input convention (``Scorer.input_convention``; see :mod:`evaluation.protocols`).
    Raises :class:`ScorerCheckpointError` naming the file when the file is missing, is not a scorer checkpoint,
    names an unknown architecture, predicts other classes, holds weights that do not fit its architecture
    (naming the layer or tensor), holds NaN/inf weights, or records an impossible normalization or image size.
    """
    path = Path(path)
    _require_file(path)
    if path.suffix.lower() == ".prototxt":
        raise _fail(path, "is a Caffe network description, not weights; pass the weights file "
                          "fcn-8s-cityscapes.caffemodel (the FCN-8s' deploy.prototxt is built in)")
    if _is_caffemodel(path):
        return _published_scorer(path, "caffe_fcn8s", None, device, class_names)
    obj = _torch_load(path)
    if is_drn_state_dict(obj):
        return _published_scorer(path, "drn_d_105", obj, device, class_names)
    ckpt = check_scorer_checkpoint(obj, path)
    if class_names is not None and list(ckpt["class_names"]) != list(class_names):
        raise _fail(path, f"predicts {ckpt['num_classes']} classes ({', '.join(ckpt['class_names'][:5])}, ...), "
                          f"but the FCN-score needs the {len(class_names)} Cityscapes train classes in train-id order "
                          f"({', '.join(list(class_names)[:5])}, ...)")
    try:
        model = build_scorer(ckpt["arch"], ckpt["num_classes"], **ckpt["arch_kwargs"])
    except ValueError as exc:
        raise _fail(path, f"cannot be rebuilt: {exc}") from None
    try:
        result = model.load_state_dict(ckpt["state_dict"], strict=False)
    except RuntimeError as exc:  # shape mismatches
        detail = " ".join(str(exc).split())[:300]
        raise _fail(path, f"holds weights that do not fit architecture {ckpt['arch']!r} {ckpt['arch_kwargs']}: "
                          f"{detail}") from None
    problems = []
    if result.missing_keys:
        problems.append(f"missing {len(result.missing_keys)} tensors (e.g. {result.missing_keys[0]})")
    if result.unexpected_keys:
        problems.append(f"{len(result.unexpected_keys)} unexpected tensors (e.g. {result.unexpected_keys[0]})")
    if problems:
        raise _fail(path, f"holds weights that do not fit architecture {ckpt['arch']!r} "
                          f"{ckpt['arch_kwargs']}: {'; '.join(problems)}")
    check_finite_weights(model, path)
    model.eval().to(device)
    norm = ckpt["normalization"]
    return Scorer(model=model, arch=ckpt["arch"], arch_kwargs=dict(ckpt["arch_kwargs"]),
                  image_size=int(ckpt["image_size"]), mean=tuple(norm["mean"]), std=tuple(norm["std"]),
                  class_names=list(ckpt["class_names"]), path=str(path), sha256=sha256_file(path),
                  train=dict(ckpt.get("train", {})))


# ---------------------------------------------------------------------------------------------- published scorers
def _is_caffemodel(path: Path) -> bool:
    """A torch file starts with a zip (``PK``) or pickle (``0x80``) header; a ``.caffemodel`` with a protobuf tag."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head[:2] == b"PK" or head[:1] == b"\x80":
        return False
    return path.suffix.lower() == ".caffemodel" or looks_like_caffemodel(head)


def _published_scorer(path: Path, kind: str, obj: Any, device, class_names: Sequence[str] | None) -> Scorer:
    """A :class:`Scorer` around the pix2pix authors' FCN-8s (``obj`` unused) or fyu/drn's DRN-D-105 (``obj``: what
    ``torch.load`` returned). Their ``image_size`` is 256, the size of pix2pix's Cityscapes photos, used for
    ``--real``."""
    names = list(class_names) if class_names is not None else list(TRAIN_CLASS_NAMES)
    if kind == "caffe_fcn8s":
        model = load_caffe_fcn8s(path)
        if model.num_outputs < len(names):
            raise _fail(path, f"has {model.num_outputs} score channels; the FCN-score needs at least {len(names)} "
                              f"(the Cityscapes train classes, in train-id order)")
        arch_kwargs = {"widths": list(model.widths), "fc": model.fc, "num_outputs": model.num_outputs}
        mean, std, convention = PIX2PIX_BGR_MEAN, (1.0, 1.0, 1.0), "bgr255"
        outputs = model.num_outputs if model.num_outputs > len(names) else None
    else:
        model = drn_from_state_dict(obj, path, classes=len(names))
        arch_kwargs = {"channels": list(model.channels)}
        mean, std, convention, outputs = DRN_MEAN, DRN_STD, "rgb01", None
    check_finite_weights(model, path, kind)
    model.eval().to(device)
    return Scorer(model=model, arch=kind, arch_kwargs=arch_kwargs, image_size=256, mean=tuple(mean), std=tuple(std),
                  class_names=names, path=str(path), sha256=sha256_file(path), train={}, kind=kind,
                  input_convention=convention, num_outputs=outputs)
