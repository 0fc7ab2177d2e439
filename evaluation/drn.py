"""DRN-D-105 with the ``DRNSeg`` head (fyu/drn), the Cityscapes scorer of GAN Compression and later papers.

GAN Compression (mit-han-lab/gan-compression, ``metric/mIoU_score.py``) reports the Cityscapes mIoU of
labels->photo generators with ``drn-d-105_ms_cityscapes.pth`` from fyu/drn (http://go.yf.io/drn-cityscapes-models):
a state dict of ``DRNSeg('drn_d_105', 19)``, saved with or without the ``module.`` prefix of
``nn.DataParallel``. This module defines that network again (our code, same structure and tensor names) so the
file loads with strict key and shape checks.

The network, for an RGB input normalised with the Cityscapes mean and std of fyu/drn
(:data:`DRN_MEAN`, :data:`DRN_STD`, on ``rgb / 255``)::

    base.0  7x7 conv (3 -> 16), BN, ReLU                                 # "layer0" of DRN-D
    base.1  3x3 conv 16, BN, ReLU          base.2  3x3 conv 32, stride 2, BN, ReLU
    base.3  3 bottlenecks, 64 planes, stride 2       base.4  4 bottlenecks, 128 planes, stride 2
    base.5  23 bottlenecks, 256 planes, dilation 2   base.6  3 bottlenecks, 512 planes, dilation 4
    base.7  3x3 conv 512, dilation 2, BN, ReLU       base.8  3x3 conv 512, BN, ReLU
    seg     1x1 conv 512 -> 19 (with bias)
    up      depthwise 16x16 transposed conv, stride 8, padding 4, no bias (bilinear weights in the file)
    output  log-softmax over the classes of ``up``'s output (DRNSeg's first output)

A bottleneck is 1x1 conv, BN, ReLU, 3x3 conv (the stride and dilation), BN, ReLU, 1x1 conv to 4x planes, BN, plus
the input (through ``downsample``: 1x1 conv with the stride, BN, when the shape changes), ReLU. The stride of the
output is 8, so the log-probabilities come out at the input size when it is a multiple of 8.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from evaluation.common import ScorerCheckpointError

#: fyu/drn's Cityscapes statistics (``datasets/cityscapes/info.json``), also hard-coded in GAN Compression.
DRN_MEAN = (0.29010095242892997, 0.32808144844279574, 0.28696394422942517)
DRN_STD = (0.1829540508368939, 0.18656561047509476, 0.18447508988480435)
#: DRN-D-105: blocks per stage (stages 3-6 are bottlenecks, the others plain conv-BN-ReLU) and the default widths.
DRN_D_105_LAYERS = (1, 1, 3, 4, 23, 3, 1, 1)
DRN_D_105_CHANNELS = (16, 32, 64, 128, 256, 512, 512, 512)
EXPANSION = 4


class Bottleneck(nn.Module):
    def __init__(self, cin: int, planes: int, stride: int = 1, dilation: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * EXPANSION, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * EXPANSION)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


def _conv_stage(cin: int, cout: int, convs: int, stride: int = 1, dilation: int = 1, kernel: int = 3) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(convs):
        layers += [nn.Conv2d(cin, cout, kernel, stride=stride if i == 0 else 1, padding=dilation * (kernel // 2),
                             dilation=dilation, bias=False),
                   nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        cin = cout
    return nn.Sequential(*layers)


def _bottleneck_stage(cin: int, planes: int, blocks: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    downsample = None
    if stride != 1 or cin != planes * EXPANSION:
        downsample = nn.Sequential(nn.Conv2d(cin, planes * EXPANSION, 1, stride=stride, bias=False),
                                   nn.BatchNorm2d(planes * EXPANSION))
    layers = [Bottleneck(cin, planes, stride, dilation, downsample)]
    layers += [Bottleneck(planes * EXPANSION, planes, 1, dilation) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class DRNSegD105(nn.Module):
    """``DRNSeg('drn_d_105', classes)`` of fyu/drn for inference; ``forward`` returns its first output, the
    log-probabilities (N, classes, 8h', 8w') where h', w' is the size after the three stride-2 stages."""

    def __init__(self, classes: int = 19, channels: tuple[int, ...] = DRN_D_105_CHANNELS,
                 layers: tuple[int, ...] = DRN_D_105_LAYERS):
        super().__init__()
        c, n = tuple(channels), tuple(layers)
        self.channels, self.classes = c, classes
        self.base = nn.Sequential(
            _conv_stage(3, c[0], 1, kernel=7),
            _conv_stage(c[0], c[0], n[0]),
            _conv_stage(c[0], c[1], n[1], stride=2),
            _bottleneck_stage(c[1], c[2], n[2], stride=2),
            _bottleneck_stage(c[2] * EXPANSION, c[3], n[3], stride=2),
            _bottleneck_stage(c[3] * EXPANSION, c[4], n[4], dilation=2),
            _bottleneck_stage(c[4] * EXPANSION, c[5], n[5], dilation=4),
            _conv_stage(c[5] * EXPANSION, c[6], n[6], dilation=2),
            _conv_stage(c[6], c[7], n[7]),
        )
        self.seg = nn.Conv2d(c[7], classes, 1)
        self.up = nn.ConvTranspose2d(classes, classes, 16, stride=8, padding=4, groups=classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self.up(self.seg(self.base(x))), dim=1)


# ---------------------------------------------------------------------------------------------- loading
def _fail(path, why: str) -> ScorerCheckpointError:
    return ScorerCheckpointError(f"DRN checkpoint {path} {why}")


def is_drn_state_dict(obj) -> bool:
    """Whether ``obj`` (what ``torch.load`` returned) looks like a ``DRNSeg`` state dict (keys ``base.``/``seg.``)."""
    state = unwrap_state_dict(obj)
    return state is not None and any(k.startswith("seg.") for k in state) and any(k.startswith("base.") for k in state)


def unwrap_state_dict(obj) -> dict | None:
    """The tensors of a ``DRNSeg`` file: a bare state dict or ``{"state_dict": ...}``, ``module.`` prefix removed."""
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(k, str) for k in obj):
        return None
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return dict(obj)


def _infer_widths(state: Mapping[str, torch.Tensor], path) -> tuple[tuple[int, ...], int]:
    where = {0: "base.0.0.weight", 1: "base.2.0.weight", 2: "base.3.0.conv1.weight", 3: "base.4.0.conv1.weight",
             4: "base.5.0.conv1.weight", 5: "base.6.0.conv1.weight", 6: "base.7.0.weight", 7: "base.8.0.weight"}
    widths = []
    for i in range(8):
        key = where[i]
        if key not in state:
            raise _fail(path, f"lacks the tensor {key!r}; it is not a DRNSeg('drn_d_105', 19) state dict (download "
                              f"drn-d-105_ms_cityscapes.pth again)")
        widths.append(int(state[key].shape[0]))
    if "seg.weight" not in state:
        raise _fail(path, "lacks the tensor 'seg.weight'; it is not a DRNSeg('drn_d_105', 19) state dict")
    return tuple(widths), int(state["seg.weight"].shape[0])


def drn_from_state_dict(obj, path, classes: int | None = 19) -> DRNSegD105:
    """Build :class:`DRNSegD105` from what ``torch.load`` returned, with strict key and shape checks.

    The widths are read from the tensors (the published file has :data:`DRN_D_105_CHANNELS`); every tensor of
    the network must be present with its shape, and nothing else (``num_batches_tracked``, which older PyTorch
    did not save, may be absent). ``classes``: the number of classes required (19), or None for any.
    """
    state = unwrap_state_dict(obj)
    if state is None or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise _fail(path, "is not a state dict of tensors; expected drn-d-105_ms_cityscapes.pth from fyu/drn")
    channels, n = _infer_widths(state, path)
    if classes is not None and n != classes:
        raise _fail(path, f"predicts {n} classes (seg.weight has shape {tuple(state['seg.weight'].shape)}); the "
                          f"FCN-score needs the {classes} Cityscapes train classes")
    model = DRNSegD105(n, channels)
    want = model.state_dict()
    for key, tensor in want.items():
        if key not in state:
            if key.endswith("num_batches_tracked"):
                continue
            raise _fail(path, f"lacks the tensor {key!r} of DRN-D-105 (shape {tuple(tensor.shape)}); it is not a "
                              f"DRNSeg('drn_d_105', {n}) state dict")
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise _fail(path, f"has {key!r} of shape {tuple(state[key].shape)} where DRNSeg('drn_d_105', {n}) with "
                              f"widths {channels} needs {tuple(tensor.shape)}")
    extra = [k for k in state if k not in want]
    if extra:
        raise _fail(path, f"holds the tensor {extra[0]!r} ({len(extra)} unexpected in all), which DRNSeg('drn_d_105', "
                          f"{n}) does not have")
    fill = {k: v for k, v in want.items() if k.endswith("num_batches_tracked") and k not in state}
    model.load_state_dict({**fill, **{k: v.float() for k, v in state.items()}}, strict=True)
    return model


def load_drn(path: str | Path, classes: int | None = 19) -> DRNSegD105:
    """Load ``drn-d-105_ms_cityscapes.pth`` (or a ``DRNSeg`` state dict of the same layers)."""
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle / zip errors come in many types
        raise _fail(path, f"is not a readable torch file ({type(exc).__name__}: {str(exc)[:160]}); download "
                          f"drn-d-105_ms_cityscapes.pth again") from None
    return drn_from_state_dict(obj, path, classes)
