"""The pix2pix authors' Cityscapes FCN-8s, read from its Caffe ``.caffemodel`` and run in PyTorch.

The official pix2pix evaluator (``scripts/eval_cityscapes/`` of phillipi/pix2pix and of
junyanz/pytorch-CycleGAN-and-pix2pix) scores Cityscapes labels->photo with ``fcn-8s-cityscapes.caffemodel``
and the ``deploy.prototxt`` beside it. Running it needs Python 2 and Caffe. This module rebuilds the network
of that ``deploy.prototxt`` in PyTorch and reads the weights straight from the binary protobuf with the
``protobuf`` library (no Caffe, no ``protoc``): the few messages of ``caffe.proto`` that hold weights are declared
here programmatically.

The network (``deploy.prototxt``, input ``data``: BGR, 0-255, minus the mean ``(72.78044, 83.21195, 73.45286)``)::

    conv1_1 (3x3, pad 100) relu conv1_2 relu pool1   # every pool: 2x2 max, stride 2, Caffe's ceil mode
    conv2_1 relu conv2_2 relu pool2
    conv3_1 relu conv3_2 relu conv3_3 relu pool3
    conv4_1 relu conv4_2 relu conv4_3 relu pool4
    conv5_1 relu conv5_2 relu conv5_3 relu pool5     # every conv above but conv1_1: 3x3, pad 1
    fc6_cs (7x7, pad 0) relu fc7_cs (1x1) relu score_fr (1x1, 20 outputs)
    upscore2       = deconv(score_fr; 4x4, stride 2, no bias)
    fuse_pool4     = upscore2 + crop(score_pool4 = 1x1 conv of pool4, offset 5)
    upscore_pool4  = deconv(fuse_pool4; 4x4, stride 2, no bias)
    fuse_pool3     = upscore_pool4 + crop(score_pool3 = 1x1 conv of pool3, offset 9)
    upscore8       = deconv(fuse_pool3; 16x16, stride 8, no bias)
    score          = crop(upscore8 to the input size, offset 31)

There is no dropout in the deploy net. The channel widths are read from the blobs (the published model has
64/128/256/512/512, 4096 and 20), so a file of the same layers at other widths loads too. A Caffe
``Deconvolution`` blob is laid out ``(input channels, output channels / group, kh, kw)``, the layout of
:func:`torch.nn.functional.conv_transpose2d`, and both compute the adjoint of the same convolution.
``Scorer.model(x)`` returns the ``score`` blob: all 20 channels at the input size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from evaluation.common import ScorerCheckpointError

#: The official evaluator's mean, subtracted after the RGB -> BGR flip (so it is in B, G, R order).
PIX2PIX_BGR_MEAN = (72.78044, 83.21195, 73.45286)

#: The convolutions of ``deploy.prototxt`` in order, with (kernel size, padding); each has weight and bias.
VGG_CONVS = (("conv1_1", 3, 100), ("conv1_2", 3, 1), ("conv2_1", 3, 1), ("conv2_2", 3, 1),
             ("conv3_1", 3, 1), ("conv3_2", 3, 1), ("conv3_3", 3, 1),
             ("conv4_1", 3, 1), ("conv4_2", 3, 1), ("conv4_3", 3, 1),
             ("conv5_1", 3, 1), ("conv5_2", 3, 1), ("conv5_3", 3, 1))
#: The convolutions after the pools: name -> (kernel size, where its input comes from).
HEAD_CONVS = (("fc6_cs", 7, "pool5"), ("fc7_cs", 1, "fc6_cs"), ("score_fr", 1, "fc7_cs"),
              ("score_pool4", 1, "pool4"), ("score_pool3", 1, "pool3"))
#: The learned deconvolutions (no bias): name -> (kernel size, stride).
DECONVS = (("upscore2", 4, 2), ("upscore_pool4", 4, 2), ("upscore8", 16, 8))
#: Which pool follows which convolution.
POOL_AFTER = {"conv1_2": "pool1", "conv2_2": "pool2", "conv3_3": "pool3", "conv4_3": "pool4", "conv5_3": "pool5"}
CROP_POOL4, CROP_POOL3, CROP_SCORE = 5, 9, 31
WEIGHT_LAYERS = tuple(n for n, _, _ in VGG_CONVS) + tuple(n for n, _, _ in HEAD_CONVS) + tuple(n for n, _, _ in DECONVS)

_DECONV_NAMES = frozenset(n for n, _, _ in DECONVS)
# V1LayerParameter.LayerType values (the legacy ``layers`` format) of the two layer kinds that hold weights here.
_V1_TYPES = {4: "Convolution", 39: "Deconvolution"}


# ---------------------------------------------------------------------------------------------- caffe.proto subset
_MESSAGES = None


def caffe_messages() -> dict:
    """The message classes of the subset of BVLC ``caffe.proto`` that holds a model's weights.

    ``NetParameter`` (``name`` 1, legacy ``layers`` 2, ``layer`` 100), ``LayerParameter`` (``name`` 1, ``type`` 2,
    ``bottom`` 3, ``top`` 4, ``blobs`` 7), ``V1LayerParameter`` (``bottom`` 2, ``top`` 3, ``name`` 4, ``type`` 5 as
    an int, ``blobs`` 6), ``BlobProto`` (legacy ``num``/``channels``/``height``/``width`` 1-4, ``data`` 5,
    ``shape`` 7, ``double_data`` 8) and ``BlobShape`` (``dim`` 1). Every other field of a real file is skipped
    by the parser as unknown. Returns ``{name: class}``; the same classes write test files.
    """
    global _MESSAGES
    if _MESSAGES is not None:
        return _MESSAGES
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    T = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name="pix2pix_tr_caffe_subset.proto", package="caffe", syntax="proto2")

    def message(name, fields):
        msg = fdp.message_type.add(name=name)
        for fname, number, ftype, repeated, extra in fields:
            f = msg.field.add(name=fname, number=number, type=ftype,
                              label=T.LABEL_REPEATED if repeated else T.LABEL_OPTIONAL)
            if ftype == T.TYPE_MESSAGE:
                f.type_name = f".caffe.{extra}"
            elif repeated and ftype in (T.TYPE_FLOAT, T.TYPE_DOUBLE, T.TYPE_INT64):
                f.options.packed = True

    message("BlobShape", [("dim", 1, T.TYPE_INT64, True, None)])
    message("BlobProto", [("num", 1, T.TYPE_INT32, False, None), ("channels", 2, T.TYPE_INT32, False, None),
                          ("height", 3, T.TYPE_INT32, False, None), ("width", 4, T.TYPE_INT32, False, None),
                          ("data", 5, T.TYPE_FLOAT, True, None), ("shape", 7, T.TYPE_MESSAGE, False, "BlobShape"),
                          ("double_data", 8, T.TYPE_DOUBLE, True, None)])
    message("LayerParameter", [("name", 1, T.TYPE_STRING, False, None), ("type", 2, T.TYPE_STRING, False, None),
                               ("bottom", 3, T.TYPE_STRING, True, None), ("top", 4, T.TYPE_STRING, True, None),
                               ("blobs", 7, T.TYPE_MESSAGE, True, "BlobProto")])
    message("V1LayerParameter", [("bottom", 2, T.TYPE_STRING, True, None), ("top", 3, T.TYPE_STRING, True, None),
                                 ("name", 4, T.TYPE_STRING, False, None), ("type", 5, T.TYPE_INT32, False, None),
                                 ("blobs", 6, T.TYPE_MESSAGE, True, "BlobProto")])
    message("NetParameter", [("name", 1, T.TYPE_STRING, False, None),
                             ("layers", 2, T.TYPE_MESSAGE, True, "V1LayerParameter"),
                             ("layer", 100, T.TYPE_MESSAGE, True, "LayerParameter")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    if hasattr(message_factory, "GetMessageClass"):  # protobuf >= 4.21
        make = message_factory.GetMessageClass
    else:  # protobuf 3.20
        make = message_factory.MessageFactory(pool).GetPrototype
    _MESSAGES = {name: make(pool.FindMessageTypeByName(f"caffe.{name}"))
                 for name in ("BlobShape", "BlobProto", "LayerParameter", "V1LayerParameter", "NetParameter")}
    return _MESSAGES


@dataclass
class CaffeLayer:
    name: str
    type: str
    blobs: list[np.ndarray]


def _fail(path, why: str) -> ScorerCheckpointError:
    return ScorerCheckpointError(f"Caffe model {path} {why}")


def _blob_array(blob, path, layer: str, index: int) -> np.ndarray:
    if blob.HasField("shape"):
        shape = tuple(int(d) for d in blob.shape.dim)
    else:  # the legacy 4-D blob
        shape = (blob.num, blob.channels, blob.height, blob.width)
    values = np.array(blob.data, dtype=np.float32) if len(blob.data) else np.array(blob.double_data, np.float32)
    if values.size != int(np.prod(shape)):
        raise _fail(path, f"is damaged: blob {index} of layer {layer!r} holds {values.size} values for the shape "
                          f"{shape}; download it again")
    return values.reshape(shape)


def read_caffemodel(path: str | Path) -> dict[str, CaffeLayer]:
    """``{layer name: CaffeLayer}`` of the layers of a binary ``.caffemodel`` that hold blobs.

    Reads both the current ``layer`` and the legacy ``layers`` (V1) format. Raises
    :class:`~evaluation.common.ScorerCheckpointError` naming the file when it is not a readable Caffe model.
    """
    from google.protobuf.message import DecodeError

    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise _fail(path, f"cannot be read ({exc.strerror or exc})") from None
    net = caffe_messages()["NetParameter"]()
    try:
        net.ParseFromString(raw)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise _fail(path, f"is not a readable Caffe binary protobuf (truncated or another format: "
                          f"{str(exc)[:120] or type(exc).__name__}); download fcn-8s-cityscapes.caffemodel again") from None
    layers: dict[str, CaffeLayer] = {}
    for layer in net.layer:
        if len(layer.blobs):
            layers[layer.name] = CaffeLayer(layer.name, layer.type,
                                            [_blob_array(b, path, layer.name, i) for i, b in enumerate(layer.blobs)])
    for layer in net.layers:
        if len(layer.blobs):
            layers[layer.name] = CaffeLayer(layer.name, _V1_TYPES.get(layer.type, f"V1 type {layer.type}"),
                                            [_blob_array(b, path, layer.name, i) for i, b in enumerate(layer.blobs)])
    if not layers:
        raise _fail(path, "holds no layers with weights; it is not a trained .caffemodel (a .prototxt or a solver "
                          "state?)")
    return layers


# ---------------------------------------------------------------------------------------------- the network
class CaffeFCN8s(nn.Module):
    """The FCN-8s of the pix2pix authors' ``deploy.prototxt`` (see the module docstring).

    ``widths`` = the output channels of conv1_1 ... conv5_3 (13 numbers), ``fc`` = fc6/fc7 width,
    ``num_outputs`` = score channels (20 in the published model). ``forward`` returns the ``score`` blob.
    """

    def __init__(self, widths: tuple[int, ...], fc: int, num_outputs: int):
        super().__init__()
        self.widths, self.fc, self.num_outputs = tuple(widths), fc, num_outputs
        convs: dict[str, nn.Module] = {}
        cin = 3
        for (name, k, pad), cout in zip(VGG_CONVS, widths):
            convs[name] = nn.Conv2d(cin, cout, k, padding=pad)
            cin = cout
        convs["fc6_cs"] = nn.Conv2d(widths[-1], fc, 7)
        convs["fc7_cs"] = nn.Conv2d(fc, fc, 1)
        convs["score_fr"] = nn.Conv2d(fc, num_outputs, 1)
        convs["score_pool4"] = nn.Conv2d(widths[9], num_outputs, 1)
        convs["score_pool3"] = nn.Conv2d(widths[6], num_outputs, 1)
        for name, k, stride in DECONVS:
            convs[name] = nn.ConvTranspose2d(num_outputs, num_outputs, k, stride=stride, bias=False)
        self.layers = nn.ModuleDict(convs)

    @staticmethod
    def _crop(x: torch.Tensor, like: torch.Tensor, offset: int, name: str) -> torch.Tensor:
        h, w = like.shape[-2:]
        if offset + h > x.shape[-2] or offset + w > x.shape[-1]:
            raise ValueError(f"{name}: cannot crop {tuple(x.shape[-2:])} at offset {offset} to {(h, w)}")
        return x[:, :, offset:offset + h, offset:offset + w]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        L = self.layers
        pools = {}
        h = x
        for name, _, _ in VGG_CONVS:
            h = F.relu(L[name](h))
            if name in POOL_AFTER:
                h = F.max_pool2d(h, 2, 2, ceil_mode=True)
                pools[POOL_AFTER[name]] = h
        h = F.relu(L["fc6_cs"](pools["pool5"]))
        h = F.relu(L["fc7_cs"](h))
        up = L["upscore2"](L["score_fr"](h))
        up = up + self._crop(L["score_pool4"](pools["pool4"]), up, CROP_POOL4, "score_pool4c")
        up = L["upscore_pool4"](up)
        up = up + self._crop(L["score_pool3"](pools["pool3"]), up, CROP_POOL3, "score_pool3c")
        return self._crop(L["upscore8"](up), x, CROP_SCORE, "score")


def _expected_shapes(widths, fc: int, n: int) -> dict[str, list[tuple[int, ...]]]:
    shapes: dict[str, list[tuple[int, ...]]] = {}
    cin = 3
    for (name, k, _), cout in zip(VGG_CONVS, widths):
        shapes[name] = [(cout, cin, k, k), (cout,)]
        cin = cout
    shapes["fc6_cs"] = [(fc, widths[-1], 7, 7), (fc,)]
    shapes["fc7_cs"] = [(fc, fc, 1, 1), (fc,)]
    shapes["score_fr"] = [(n, fc, 1, 1), (n,)]
    shapes["score_pool4"] = [(n, widths[9], 1, 1), (n,)]
    shapes["score_pool3"] = [(n, widths[6], 1, 1), (n,)]
    for name, k, _ in DECONVS:
        shapes[name] = [(n, n, k, k)]
    return shapes


def fcn8s_from_layers(layers: dict[str, CaffeLayer], path) -> CaffeFCN8s:
    """Build :class:`CaffeFCN8s` from the layers of a ``.caffemodel``, checking every name and shape."""
    missing = [name for name in WEIGHT_LAYERS if name not in layers]
    if missing:
        found = ", ".join(sorted(layers)[:8])
        raise _fail(path, f"lacks the FCN-8s layer {missing[0]!r} (of {len(missing)} missing; it has {found}"
                          f"{', ...' if len(layers) > 8 else ''}); it is not the pix2pix fcn-8s-cityscapes.caffemodel, or "
                          f"its download was cut short: download it again")
    for name in WEIGHT_LAYERS:
        kind = "Deconvolution" if name in _DECONV_NAMES else "Convolution"
        if layers[name].type not in (kind, ""):
            raise _fail(path, f"has layer {name!r} of type {layers[name].type!r}; the FCN-8s deploy.prototxt needs a "
                              f"{kind} there")
        if not layers[name].blobs or layers[name].blobs[0].ndim != 4:
            shape = tuple(layers[name].blobs[0].shape) if layers[name].blobs else "no blobs"
            raise _fail(path, f"has a weight of shape {shape} in layer {name!r}; the FCN-8s deploy.prototxt needs a "
                              f"4-D {kind.lower()} weight there")
    widths = tuple(int(layers[name].blobs[0].shape[0]) for name, _, _ in VGG_CONVS)
    fc = int(layers["fc6_cs"].blobs[0].shape[0])
    n = int(layers["score_fr"].blobs[0].shape[0])
    expected = _expected_shapes(widths, fc, n)
    for name in WEIGHT_LAYERS:
        blobs, want = layers[name].blobs, expected[name]
        if len(blobs) != len(want):
            raise _fail(path, f"has {len(blobs)} blobs in layer {name!r}; the FCN-8s deploy.prototxt gives it "
                              f"{len(want)} ({'weight and bias' if len(want) == 2 else 'a weight, no bias'})")
        for i, (blob, shape) in enumerate(zip(blobs, want)):
            fits = blob.shape == shape or (len(shape) == 1 and blob.size == shape[0])  # legacy bias: (1, 1, 1, n)
            if not fits:
                what = "weight" if i == 0 else "bias"
                raise _fail(path, f"has a {what} of shape {tuple(blob.shape)} in layer {name!r} where the FCN-8s "
                                  f"deploy.prototxt needs {shape}")
    model = CaffeFCN8s(widths, fc, n)
    with torch.no_grad():
        for name in WEIGHT_LAYERS:
            module = model.layers[name]
            module.weight.copy_(torch.from_numpy(layers[name].blobs[0]))
            if module.bias is not None:
                module.bias.copy_(torch.from_numpy(layers[name].blobs[1].reshape(-1)))
    return model


def load_caffe_fcn8s(path: str | Path) -> CaffeFCN8s:
    """Read ``fcn-8s-cityscapes.caffemodel`` (or a file of the same layers) into a :class:`CaffeFCN8s`."""
    return fcn8s_from_layers(read_caffemodel(path), Path(path))


def looks_like_caffemodel(head: bytes) -> bool:
    """Whether the first bytes can start a ``NetParameter``: field ``name`` (1), ``layers`` (2) or ``layer`` (100)
    (the tags ``0x0a``, ``0x12``, ``0xa2 0x06``), or ``input`` (3), ``input_dim`` (4), ``input_shape`` (8)."""
    return head[:1] in (b"\x0a", b"\x12", b"\x1a", b"\x20", b"\x42") or head[:2] == b"\xa2\x06"
