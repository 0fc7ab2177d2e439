"""Read a frozen TensorFlow ``GraphDef`` with ``protobuf`` and run it in PyTorch, as TensorFlow computes it.

This is what :mod:`evaluation.deeplab` needs to run DeepLab's ``frozen_inference_graph.pb`` without TensorFlow:
a reader of the binary ``GraphDef`` (the few messages of TensorFlow's ``graph.proto``, ``node_def.proto``,
``attr_value.proto``, ``tensor.proto`` and ``tensor_shape.proto`` that a frozen graph uses, declared here
programmatically; every other field is skipped by the parser as unknown) and a small interpreter.

The interpreter (:class:`GraphProgram`) keeps only the nodes the requested outputs need (through data *and*
control inputs, so the shape ``Assert`` nodes of DeepLab's preprocessing run), sorts them once, turns the
constant weights into tensors once (convolution filters permuted from TensorFlow's HWIO to PyTorch's OIHW) and
then runs one small function per node. Values keep TensorFlow's layout (NHWC); a convolution runs on a permuted
view (channels-last memory, no copy). Two kinds of value flow through it:

* *frame* values: ``torch.Tensor`` with one extra leading axis, one entry per frame fed. Every frame is run as
  TensorFlow would run it alone (DeepLab's export squeezes and re-adds its batch axis, so frames cannot simply
  be TensorFlow's batch); all frames of one call share one size.
* *static* values: ``numpy`` arrays, the same for every frame: constants and everything computed from shapes
  (DeepLab's padding arithmetic). ``Shape`` of a frame value is static.

Semantics follow TensorFlow's CPU kernels where they matter for bit-level agreement:

* ``Conv2D``/``DepthwiseConv2dNative``/``AvgPool`` with ``SAME`` padding pad ``total // 2`` before and the rest
  after (one more pixel at the bottom/right when the total is odd), with strides and dilations.
* ``ResizeBilinear`` (output float32) and ``ResizeNearestNeighbor`` use TensorFlow's float32 source coordinates:
  ``align_corners``: scale ``(in - 1) / (out - 1)``, else ``in / out``; ``half_pixel_centers``: bilinear samples
  ``(x + 0.5) * scale - 0.5`` (clamped), nearest ``floor((x + 0.5) * scale)``; legacy nearest rounds half away
  from zero with ``align_corners`` and floors without. Bilinear computes ``top + (bottom - top) * y_lerp`` with
  ``top = top_left + (top_right - top_left) * x_lerp``, TensorFlow's order of operations.
* ``FusedBatchNorm``/``V3`` (inference only): ``(x - mean) * (rsqrt(variance + epsilon) * scale) + offset``.
* ``SpaceToBatchND``/``BatchToSpaceND`` (TensorFlow 1's form of atrous convolution) reorder exactly as
  TensorFlow does (block offsets outermost in the batch axis).
* Integer ``Div`` truncates, ``FloorDiv``/``FloorMod`` floor; ``Cast`` from float to integer truncates.

Three things run differently from a node-by-node reading, for speed, with the same values: a ReLU that is the only
reader of a batch norm runs in place on its output; a bilinear resize to the same size returns its (finite) input,
whose every weight would be 0 (on the CPU; on a GPU it computes ``x + (x - x) * 0``, which is the same, without
reading on the host whether the input is finite); and a 1x1 convolution with stride 1 runs as one matrix product over
the channels (a different summation order from TensorFlow's kernel, as any PyTorch convolution has).

A graph that uses any other op is refused in one sentence naming the op and the node (:data:`SUPPORTED_OPS`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class GraphError(ValueError):
    """A GraphDef that cannot be read or run here (the message is one sentence; callers add the file name)."""


# ---------------------------------------------------------------------------------------------- protobuf subset
_MESSAGES = None

#: TensorFlow's ``DataType`` enum values we read, with their numpy types.
DTYPES: dict[int, np.dtype] = {
    1: np.dtype(np.float32), 2: np.dtype(np.float64), 3: np.dtype(np.int32), 4: np.dtype(np.uint8),
    5: np.dtype(np.int16), 6: np.dtype(np.int8), 7: np.dtype(object), 9: np.dtype(np.int64),
    10: np.dtype(np.bool_), 17: np.dtype(np.uint16), 19: np.dtype(np.float16), 22: np.dtype(np.uint32),
    23: np.dtype(np.uint64),
}
DTYPE_NAMES = {1: "float32", 2: "float64", 3: "int32", 4: "uint8", 5: "int16", 6: "int8", 7: "string", 9: "int64",
               10: "bool", 14: "bfloat16", 17: "uint16", 19: "float16", 20: "resource", 21: "variant",
               22: "uint32", 23: "uint64"}
_TORCH_DTYPES = {1: torch.float32, 2: torch.float64, 3: torch.int32, 4: torch.uint8, 5: torch.int16, 6: torch.int8,
                 9: torch.int64, 10: torch.bool, 19: torch.float16}
_NUMPY_TO_ENUM = {dt: enum for enum, dt in DTYPES.items() if enum != 7}


def graph_messages() -> dict:
    """The message classes of the subset of TensorFlow's protos that a frozen ``GraphDef`` holds.

    ``GraphDef`` (``node`` 1, ``versions`` 4), ``NodeDef`` (``name`` 1, ``op`` 2, ``input`` 3, ``device`` 4, ``attr``
    5 as a map), ``AttrValue`` (the oneof ``value``: ``list`` 1, ``s`` 2, ``i`` 3, ``f`` 4, ``b`` 5, ``type`` 6,
    ``shape`` 7, ``tensor`` 8, ``placeholder`` 9, ``func`` 10) with its ``ListValue``, ``NameAttrList``,
    ``TensorProto`` (``dtype`` 1, ``tensor_shape`` 2, ``tensor_content`` 4, ``float_val`` 5, ``double_val`` 6,
    ``int_val`` 7, ``string_val`` 8, ``int64_val`` 10, ``bool_val`` 11, ``half_val`` 13, ``uint32_val`` 16,
    ``uint64_val`` 17), ``TensorShapeProto`` (``dim`` 2, ``unknown_rank`` 3) and ``VersionDef``. Enums are read
    as integers. Returns ``{name: class}``; the same classes write test graphs.
    """
    global _MESSAGES
    if _MESSAGES is not None:
        return _MESSAGES
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    T = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name="pix2pix_tr_tf_graph_subset.proto", package="tfsubset",
                                             syntax="proto3")

    def add_fields(msg, fields, oneof=None):
        for fname, number, ftype, repeated, extra in fields:
            f = msg.field.add(name=fname, number=number, type=ftype,
                              label=T.LABEL_REPEATED if repeated else T.LABEL_OPTIONAL)
            if ftype == T.TYPE_MESSAGE:
                f.type_name = extra
            if oneof is not None and not repeated:
                f.oneof_index = oneof

    def message(name, fields):
        msg = fdp.message_type.add(name=name)
        add_fields(msg, fields)
        return msg

    S, B, I32, I64, U32, U64 = T.TYPE_STRING, T.TYPE_BYTES, T.TYPE_INT32, T.TYPE_INT64, T.TYPE_UINT32, T.TYPE_UINT64
    FL, DB, BO, MSG = T.TYPE_FLOAT, T.TYPE_DOUBLE, T.TYPE_BOOL, T.TYPE_MESSAGE
    dim = message("Dim", [("size", 1, I64, False, None), ("name", 2, S, False, None)])
    del dim
    message("TensorShapeProto", [("dim", 2, MSG, True, ".tfsubset.Dim"), ("unknown_rank", 3, BO, False, None)])
    message("TensorProto", [("dtype", 1, I32, False, None),
                            ("tensor_shape", 2, MSG, False, ".tfsubset.TensorShapeProto"),
                            ("version_number", 3, I32, False, None), ("tensor_content", 4, B, False, None),
                            ("float_val", 5, FL, True, None), ("double_val", 6, DB, True, None),
                            ("int_val", 7, I32, True, None), ("string_val", 8, B, True, None),
                            ("int64_val", 10, I64, True, None), ("bool_val", 11, BO, True, None),
                            ("half_val", 13, I32, True, None), ("uint32_val", 16, U32, True, None),
                            ("uint64_val", 17, U64, True, None)])
    message("ListValue", [("s", 2, B, True, None), ("i", 3, I64, True, None), ("f", 4, FL, True, None),
                          ("b", 5, BO, True, None), ("type", 6, I32, True, None),
                          ("shape", 7, MSG, True, ".tfsubset.TensorShapeProto"),
                          ("tensor", 8, MSG, True, ".tfsubset.TensorProto"),
                          ("func", 9, MSG, True, ".tfsubset.NameAttrList")])
    attr_value = fdp.message_type.add(name="AttrValue")
    attr_value.oneof_decl.add(name="value")
    add_fields(attr_value, [("list", 1, MSG, False, ".tfsubset.ListValue"), ("s", 2, B, False, None),
                            ("i", 3, I64, False, None), ("f", 4, FL, False, None), ("b", 5, BO, False, None),
                            ("type", 6, I32, False, None), ("shape", 7, MSG, False, ".tfsubset.TensorShapeProto"),
                            ("tensor", 8, MSG, False, ".tfsubset.TensorProto"), ("placeholder", 9, S, False, None),
                            ("func", 10, MSG, False, ".tfsubset.NameAttrList")], oneof=0)

    def map_field(msg, fname, number, entry_name):
        entry = msg.nested_type.add(name=entry_name)
        entry.options.map_entry = True
        add_fields(entry, [("key", 1, S, False, None), ("value", 2, MSG, False, ".tfsubset.AttrValue")])
        add_fields(msg, [(fname, number, MSG, True, f".tfsubset.{msg.name}.{entry_name}")])

    name_attr_list = fdp.message_type.add(name="NameAttrList")
    add_fields(name_attr_list, [("name", 1, S, False, None)])
    map_field(name_attr_list, "attr", 2, "AttrEntry")
    node_def = fdp.message_type.add(name="NodeDef")
    add_fields(node_def, [("name", 1, S, False, None), ("op", 2, S, False, None), ("input", 3, S, True, None),
                          ("device", 4, S, False, None)])
    map_field(node_def, "attr", 5, "AttrEntry")
    message("VersionDef", [("producer", 1, I32, False, None), ("min_consumer", 2, I32, False, None),
                           ("bad_consumers", 3, I32, True, None)])
    message("GraphDef", [("node", 1, MSG, True, ".tfsubset.NodeDef"), ("version", 3, I32, False, None),
                         ("versions", 4, MSG, False, ".tfsubset.VersionDef")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    if hasattr(message_factory, "GetMessageClass"):  # protobuf >= 4.21
        make = message_factory.GetMessageClass
    else:  # protobuf 3.20
        make = message_factory.MessageFactory(pool).GetPrototype
    _MESSAGES = {name: make(pool.FindMessageTypeByName(f"tfsubset.{name}"))
                 for name in ("Dim", "TensorShapeProto", "TensorProto", "ListValue", "AttrValue", "NameAttrList",
                              "NodeDef", "VersionDef", "GraphDef")}
    return _MESSAGES


def parse_graph_def(data: bytes):
    """Parse a binary ``GraphDef``; a file that is not one (truncated, another format) raises :class:`GraphError`."""
    from google.protobuf.message import DecodeError

    graph = graph_messages()["GraphDef"]()
    try:
        graph.ParseFromString(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise GraphError(f"is not a readable TensorFlow GraphDef (truncated or another format: "
                         f"{str(exc)[:120] or type(exc).__name__})") from None
    return graph


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while pos < len(data) and shift < 64:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise IndexError("varint runs past the data")


def looks_like_graph_def(head: bytes) -> bool:
    """Whether the first bytes of a file start a ``GraphDef``: its first field is a node (tag ``0x0a``) whose
    first fields are a printable ``name`` (tag ``0x0a``) and an identifier ``op`` (tag ``0x12``), the order every
    protobuf serializer writes them in. (A Caffe ``NetParameter`` also starts with ``0x0a``, its name as text.)"""
    try:
        if head[:1] != b"\x0a":
            return False
        _, pos = _varint(head, 1)
        if head[pos:pos + 1] != b"\x0a":
            return False
        n, pos = _varint(head, pos + 1)
        name = head[pos:pos + n]
        if not 0 < n <= 4096 or not name or not all(32 < c < 127 for c in name):
            return False
        pos += n
        if pos >= len(head):
            return True  # what we read ends inside (or right after) a printable name
        if head[pos:pos + 1] != b"\x12":
            return False
        m, pos = _varint(head, pos + 1)
        op = head[pos:pos + m]
        return 0 < m <= 128 and (op[:1].isalpha() or op[:1] == b"_") and all(
            chr(c).isalnum() or c == ord("_") for c in op)
    except IndexError:
        return False


# ---------------------------------------------------------------------------------------------- tensors, attrs
def tensor_to_numpy(tensor) -> np.ndarray:
    """A ``TensorProto`` as a numpy array (strings as an object array of bytes)."""
    if tensor.dtype not in DTYPES:
        raise GraphError(f"holds a constant of type {DTYPE_NAMES.get(tensor.dtype, tensor.dtype)}, which this reader "
                         f"does not read")
    dtype = DTYPES[tensor.dtype]
    shape = tuple(int(d.size) for d in tensor.tensor_shape.dim)
    if any(s < 0 for s in shape):
        raise GraphError(f"holds a constant of unknown shape {shape}")
    count = int(np.prod(shape, dtype=np.int64))
    if tensor.tensor_content:
        if dtype == object:
            raise GraphError("holds a string constant in raw form, which this reader does not read")
        raw = tensor.tensor_content
        if len(raw) != count * dtype.itemsize:
            raise GraphError(f"holds a constant of shape {shape} with {len(raw)} bytes instead of "
                             f"{count * dtype.itemsize}; the file is damaged")
        return np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype).reshape(shape)
    if tensor.dtype == 19:
        values = np.array(list(tensor.half_val), dtype=np.uint16).view(np.float16)
    elif tensor.dtype == 7:
        values = np.empty(len(tensor.string_val), dtype=object)
        values[:] = list(tensor.string_val)
    else:
        source = {1: tensor.float_val, 2: tensor.double_val, 9: tensor.int64_val, 10: tensor.bool_val,
                  22: tensor.uint32_val, 23: tensor.uint64_val}.get(tensor.dtype, tensor.int_val)
        values = np.array(list(source), dtype=dtype)
    if values.size == count:
        return values.reshape(shape)
    if values.size == 0:
        return np.zeros(shape, dtype=dtype) if dtype != object else np.full(shape, b"", dtype=object)
    if values.size > count:
        raise GraphError(f"holds a constant of shape {shape} with {values.size} values")
    # TensorFlow repeats the last value to fill the shape.
    out = np.empty(count, dtype=dtype)
    out[:values.size] = values
    out[values.size:] = values[-1]
    return out.reshape(shape)


def numpy_to_tensor(array: np.ndarray):
    """A numpy array as a ``TensorProto`` (raw ``tensor_content``; strings in ``string_val``)."""
    msgs = graph_messages()
    array = np.asarray(array)
    tensor = msgs["TensorProto"]()
    for size in array.shape:
        tensor.tensor_shape.dim.add(size=int(size))
    if array.dtype.kind in "SOU":
        tensor.dtype = 7
        tensor.string_val.extend([v if isinstance(v, bytes) else str(v).encode() for v in array.reshape(-1)])
        return tensor
    tensor.dtype = _NUMPY_TO_ENUM[array.dtype]
    tensor.tensor_content = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
    return tensor


def _shape_attr(shape) -> tuple | None:
    if shape.unknown_rank:
        return None
    return tuple(int(d.size) for d in shape.dim)


def attr_value(value) -> Any:
    """An ``AttrValue`` as a Python value (bytes, int, float, bool, dtype enum, shape tuple, numpy array, list)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind in ("s", "i", "f", "b", "type", "placeholder"):
        return getattr(value, kind)
    if kind == "shape":
        return _shape_attr(value.shape)
    if kind == "tensor":
        return tensor_to_numpy(value.tensor)
    if kind == "func":
        return value.func.name
    lst = value.list
    for name in ("s", "i", "f", "b", "type"):
        if len(getattr(lst, name)):
            return list(getattr(lst, name))
    if len(lst.shape):
        return [_shape_attr(s) for s in lst.shape]
    if len(lst.tensor):
        return [tensor_to_numpy(t) for t in lst.tensor]
    return []


def make_node(name: str, op: str, inputs: Sequence[str] = (), **attrs: Any):
    """A ``NodeDef`` (for tests and tools): ``attrs`` values may be bytes/str (``s``), bool, int, float, a numpy
    array (``tensor``), a ``("type", enum)`` pair, or a list of ints/floats/bytes."""
    node = graph_messages()["NodeDef"](name=name, op=op)
    node.input.extend(inputs)
    for key, value in attrs.items():
        target = node.attr[key]
        if isinstance(value, tuple) and len(value) == 2 and value[0] == "type":
            target.type = int(value[1])
        elif isinstance(value, bool):
            target.b = value
        elif isinstance(value, int):
            target.i = value
        elif isinstance(value, float):
            target.f = value
        elif isinstance(value, (bytes, str)):
            target.s = value.encode() if isinstance(value, str) else value
        elif isinstance(value, np.ndarray):
            target.tensor.CopyFrom(numpy_to_tensor(value))
        elif isinstance(value, (list, tuple)):
            if all(isinstance(v, bool) for v in value):
                target.list.b.extend(value)
            elif all(isinstance(v, int) for v in value):
                target.list.i.extend(value)
            elif all(isinstance(v, float) for v in value):
                target.list.f.extend(value)
            else:
                target.list.s.extend([v.encode() if isinstance(v, str) else v for v in value])
        else:
            raise TypeError(f"make_node: cannot store attribute {key}={value!r}")
    return node


def const_node(name: str, value) -> Any:
    """A ``Const`` node holding ``value`` (a numpy array; its dtype is the node's)."""
    value = np.asarray(value)
    enum = 7 if value.dtype.kind in "SOU" else _NUMPY_TO_ENUM[value.dtype]
    return make_node(name, "Const", value=value, dtype=("type", enum))


# ---------------------------------------------------------------------------------------------- the graph
@dataclass
class Node:
    name: str
    op: str
    inputs: list[tuple[str, int]]
    control: list[str]
    attr: dict[str, Any]


def _parse_input(text: str) -> tuple[bool, str, int]:
    if text.startswith("^"):
        return True, text[1:], 0
    name, _, index = text.rpartition(":")
    if name and index.isdigit():
        return False, name, int(index)
    return False, text, 0


class Graph:
    """The nodes of a ``GraphDef`` by name (attributes decoded lazily per node)."""

    def __init__(self, graph_def):
        self.nodes: dict[str, Any] = {}
        for node in graph_def.node:
            self.nodes[node.name] = node
        self._decoded: dict[str, Node] = {}

    def __contains__(self, name: str) -> bool:
        return name in self.nodes

    def node(self, name: str) -> Node:
        if name not in self._decoded:
            raw = self.nodes[name]
            inputs, control = [], []
            for text in raw.input:
                is_control, src, index = _parse_input(text)
                (control.append(src) if is_control else inputs.append((src, index)))
            try:
                attrs = {key: attr_value(value) for key, value in raw.attr.items()}
            except GraphError as exc:
                raise GraphError(f"{exc} (node {name!r})") from None
            self._decoded[name] = Node(name, raw.op, inputs, control, attrs)
        return self._decoded[name]

    def ops(self) -> dict[str, int]:
        """How many nodes of each op the whole graph holds."""
        counts: dict[str, int] = {}
        for raw in self.nodes.values():
            counts[raw.op] = counts.get(raw.op, 0) + 1
        return counts


# ---------------------------------------------------------------------------------------------- value helpers
def _is_frame(v) -> bool:
    return isinstance(v, torch.Tensor)


def _rank(v) -> int:
    return v.dim() - 1 if _is_frame(v) else np.ndim(v)


def _sshape(v) -> tuple[int, ...]:
    return tuple(v.shape[1:]) if _is_frame(v) else tuple(np.shape(v))


def _np(v) -> np.ndarray:
    return np.asarray(v)


def _ints(v) -> list[int]:
    if _is_frame(v):
        raise GraphError("computes a shape or index from image data, which this reader does not support")
    return [int(x) for x in np.asarray(v).reshape(-1)]


def _axis(axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        raise GraphError(f"uses axis {axis} on a tensor of rank {rank}")
    return axis % rank


class _Context:
    """What a node's function needs at run time: the device and the program's constants and parameters."""

    def __init__(self, program: "GraphProgram", device: torch.device, frames: int):
        self.program, self.device, self.frames = program, device, frames

    def torch(self, v, dtype: torch.dtype | None = None) -> torch.Tensor:
        """A static value as a tensor on the device (constants are converted once per device). Host arrays made
        here go up without blocking (a blocking copy would wait for the device's queue on a GPU), as do the
        resize tables and gather indices below."""
        if _is_frame(v):
            return v
        arr = np.asarray(v)
        key = id(v)
        cache = self.program._const_cache
        if key in self.program._const_ids:
            hit = cache.get((key, self.device))
            if hit is None:
                hit = _to_tensor(arr).to(self.device, non_blocking=True)
                cache[(key, self.device)] = hit
            return hit if dtype is None else hit.to(dtype)
        t = _to_tensor(arr).to(self.device, non_blocking=True)
        return t if dtype is None else t.to(dtype)

    def frame(self, v) -> torch.Tensor:
        """A value as a frame tensor (a static one repeated for every frame)."""
        if _is_frame(v):
            return v
        t = self.torch(v)
        return t.unsqueeze(0).expand((self.frames,) + tuple(t.shape))

    def param(self, index: int) -> torch.Tensor:
        return self.program.params[index]


def _to_tensor(arr: np.ndarray) -> torch.Tensor:
    if arr.dtype == object:
        raise GraphError("uses a string tensor as data")
    if arr.dtype in (np.uint16, np.uint32, np.uint64):
        arr = arr.astype(np.int64)
    return torch.from_numpy(np.array(arr, copy=True))


def _lift(ctx: _Context, v, rank: int):
    """``v`` ready for broadcasting against values of semantic rank ``rank``."""
    if _is_frame(v):
        missing = rank - (v.dim() - 1)
        return v.reshape(v.shape[:1] + (1,) * missing + v.shape[1:]) if missing > 0 else v
    return ctx.torch(v)


# ---------------------------------------------------------------------------------------------- op implementations
# Each compiler takes (node, program) and returns fn(ctx, inputs) -> list of outputs.
_COMPILERS: dict[str, Callable] = {}


def _op(*names: str):
    def register(fn):
        for name in names:
            _COMPILERS[name] = fn
        return fn
    return register


def _elementwise(np_fn, torch_fn):
    def compile_(node, program):
        def run(ctx, inputs):
            a, b = inputs[0], inputs[1]
            if not _is_frame(a) and not _is_frame(b):
                return [np.asarray(np_fn(_np(a), _np(b)))]
            rank = max(_rank(a), _rank(b))
            return [torch_fn(_lift(ctx, a, rank), _lift(ctx, b, rank))]
        return run
    return compile_


def _int_kind(x) -> bool:
    dt = x.dtype
    return (dt.kind in "iub") if isinstance(dt, np.dtype) else not dt.is_floating_point


def _np_div(a, b):
    if a.dtype.kind in "iu":
        q = np.abs(a) // np.abs(b)
        return np.where((a < 0) != (b < 0), -q, q).astype(a.dtype)
    return np.true_divide(a, b).astype(a.dtype)


def _torch_div(a, b):
    return torch.div(a, b, rounding_mode="trunc") if _int_kind(a) else torch.div(a, b)


def _np_floordiv(a, b):
    return (np.floor_divide(a, b) if a.dtype.kind in "iu" else np.floor(np.true_divide(a, b))).astype(a.dtype)


def _torch_floordiv(a, b):
    return torch.div(a, b, rounding_mode="floor")


for _names, _np_fn, _torch_fn in (
        (("Add", "AddV2"), np.add, torch.add), (("Sub",), np.subtract, torch.sub), (("Mul",), np.multiply, torch.mul),
        (("RealDiv", "Div"), _np_div, _torch_div), (("FloorDiv",), _np_floordiv, _torch_floordiv),
        (("FloorMod",), np.mod, torch.remainder), (("Maximum",), np.maximum, torch.maximum),
        (("Minimum",), np.minimum, torch.minimum), (("Equal",), np.equal, torch.eq),
        (("NotEqual",), np.not_equal, torch.ne), (("Less",), np.less, torch.lt),
        (("LessEqual",), np.less_equal, torch.le), (("Greater",), np.greater, torch.gt),
        (("GreaterEqual",), np.greater_equal, torch.ge), (("LogicalAnd",), np.logical_and, torch.logical_and),
        (("LogicalOr",), np.logical_or, torch.logical_or)):
    _op(*_names)(_elementwise(_np_fn, _torch_fn))


@_op("BiasAdd", "BiasAddV1")
def _bias_add(node, program):
    if node.attr.get("data_format", b"NHWC") not in (b"NHWC", b""):
        raise GraphError(f"uses data_format {node.attr['data_format'].decode()} in node {node.name!r} (BiasAdd); "
                         f"only NHWC graphs are read")
    return _elementwise(np.add, torch.add)(node, program)


def _unary(np_fn, torch_fn):
    def compile_(node, program):
        def run(ctx, inputs):
            x = inputs[0]
            return [torch_fn(x) if _is_frame(x) else np.asarray(np_fn(_np(x))).astype(_np(x).dtype)]
        return run
    return compile_


for _names, _np_fn, _torch_fn in (
        (("Floor",), np.floor, torch.floor), (("Ceil",), np.ceil, torch.ceil), (("Neg",), np.negative, torch.neg),
        (("Rsqrt",), lambda x: 1 / np.sqrt(x), torch.rsqrt), (("Sqrt",), np.sqrt, torch.sqrt),
        (("LogicalNot",), np.logical_not, torch.logical_not)):
    _op(*_names)(_unary(_np_fn, _torch_fn))


@_op("Identity", "StopGradient", "Snapshot", "PlaceholderWithDefault", "Print")
def _identity(node, program):
    return lambda ctx, inputs: [inputs[0]]


def _fused_or(compile_):
    """An op that a producer may have computed already (``program.fused``): then an alias of its input."""
    def compile_maybe_fused(node, program):
        if node.name in program.fused:
            return _identity(node, program)
        return compile_(node, program)
    return compile_maybe_fused


_op("Relu")(_fused_or(_unary(lambda x: np.maximum(x, 0), torch.relu)))
_op("Relu6")(_fused_or(_unary(lambda x: np.clip(x, 0, 6), lambda x: torch.clamp(x, 0, 6))))


@_op("NoOp")
def _noop(node, program):
    return lambda ctx, inputs: []


@_op("Const")
def _const(node, program):
    value = node.attr.get("value")
    if value is None:
        raise GraphError(f"has a Const node {node.name!r} without a value")
    dtype = node.attr.get("dtype")
    if isinstance(dtype, int) and dtype in DTYPES and DTYPES[dtype] != value.dtype:
        raise GraphError(f"has a Const node {node.name!r} whose value does not have its declared type")
    program._register_const(value)
    return lambda ctx, inputs: [value]


@_op("Placeholder")
def _placeholder(node, program):
    def run(ctx, inputs):
        raise GraphError(f"needs a value for the placeholder {node.name!r}, which is not an input here")
    return run


@_op("Assert")
def _assert(node, program):
    def run(ctx, inputs):
        cond = inputs[0]
        ok = bool(torch.all(cond)) if _is_frame(cond) else bool(np.all(cond))
        if not ok:
            parts = []
            for value in inputs[1:]:
                if not _is_frame(value) and np.asarray(value).dtype == object:
                    parts += [v.decode(errors="replace") for v in np.asarray(value).reshape(-1)]
                elif not _is_frame(value):
                    parts.append(str(np.asarray(value).tolist()))
            raise GraphError(f"refuses this input: its check {node.name!r} failed ({' '.join(parts) or 'no message'})")
        return []
    return run


@_op("Cast")
def _cast(node, program):
    dst = node.attr.get("DstT")
    if dst not in _TORCH_DTYPES:
        raise GraphError(f"casts to {DTYPE_NAMES.get(dst, dst)} in node {node.name!r}, which this reader does not do")
    np_dtype, torch_dtype = DTYPES[dst], _TORCH_DTYPES[dst]

    def run(ctx, inputs):
        x = inputs[0]
        if _is_frame(x):
            return [x.to(torch_dtype)]
        arr = _np(x)
        if np_dtype.kind in "iu" and arr.dtype.kind == "f":
            arr = np.trunc(arr)
        return [arr.astype(np_dtype)]
    return run


@_op("Shape", "Size", "Rank")
def _shape(node, program):
    out = DTYPES.get(node.attr.get("out_type", 3), np.dtype(np.int32))

    def run(ctx, inputs):
        shape = _sshape(inputs[0])
        if node.op == "Shape":
            return [np.array(shape, dtype=out)]
        if node.op == "Size":
            return [np.array(int(np.prod(shape, dtype=np.int64)), dtype=out)]
        return [np.array(len(shape), dtype=np.int32)]
    return run


def _index(ctx, x, index: tuple):
    """``x[index]`` for a static array or a frame tensor (``index`` over the semantic axes: ints, slices with any
    step, ``None`` for a new axis, one ``Ellipsis``)."""
    if not _is_frame(x):
        return np.asarray(_np(x)[index])
    rank = x.dim() - 1
    real = sum(1 for item in index if item is not None and item is not Ellipsis)
    items: list = []
    for item in index:
        items += [slice(None)] * (rank - real) if item is Ellipsis else [item]
    torch_index: list = [slice(None)]
    reversed_dims = []  # torch has no negative steps: those axes are gathered afterwards
    dim = 1
    for item in items:
        if isinstance(item, slice) and item.step is not None and item.step < 0:
            torch_index.append(slice(None))
            reversed_dims.append((dim, item))
            dim += 1
        else:
            torch_index.append(item)
            dim += 0 if isinstance(item, int) else 1
    out = x[tuple(torch_index)]
    for dim, item in reversed_dims:
        picked = np.ascontiguousarray(np.arange(out.shape[dim])[item])
        out = out.index_select(dim, torch.from_numpy(picked).to(out.device, non_blocking=True))
    return out


@_op("StridedSlice")
def _strided_slice(node, program):
    masks = {k: int(node.attr.get(k, 0) or 0) for k in ("begin_mask", "end_mask", "ellipsis_mask", "new_axis_mask",
                                                          "shrink_axis_mask")}

    def run(ctx, inputs):
        x, begin, end, strides = inputs[0], _ints(inputs[1]), _ints(inputs[2]), _ints(inputs[3])
        index: list = []
        for i, (b, e, s) in enumerate(zip(begin, end, strides)):
            bit = 1 << i
            if masks["ellipsis_mask"] & bit:
                index.append(Ellipsis)
            elif masks["new_axis_mask"] & bit:
                index.append(None)
            elif masks["shrink_axis_mask"] & bit:
                index.append(b)
            else:
                if s == 0:
                    raise GraphError(f"uses a stride of 0 in node {node.name!r}")
                index.append(slice(None if masks["begin_mask"] & bit else b, None if masks["end_mask"] & bit else e,
                                   s))
        return [_index(ctx, x, tuple(index))]
    return run


@_op("Slice")
def _slice(node, program):
    def run(ctx, inputs):
        x, begin, size = inputs[0], _ints(inputs[1]), _ints(inputs[2])
        shape = _sshape(x)
        index = tuple(slice(b, shape[i] if s == -1 else b + s) for i, (b, s) in enumerate(zip(begin, size)))
        for i, (b, s) in enumerate(zip(begin, size)):
            stop = shape[i] if s == -1 else b + s
            if b < 0 or stop > shape[i] or stop < b:
                raise GraphError(f"slices [{b}, {stop}) out of a dimension of size {shape[i]} in node {node.name!r}")
        return [_index(ctx, x, index)]
    return run


@_op("Pack")
def _pack(node, program):
    axis = int(node.attr.get("axis", 0) or 0)

    def run(ctx, inputs):
        rank = _rank(inputs[0]) + 1
        ax = _axis(axis, rank)
        if not any(_is_frame(v) for v in inputs):
            return [np.stack([_np(v) for v in inputs], axis=ax)]
        return [torch.stack([ctx.frame(v) for v in inputs], dim=ax + 1)]
    return run


@_op("Unpack")
def _unpack(node, program):
    axis = int(node.attr.get("axis", 0) or 0)

    def run(ctx, inputs):
        x = inputs[0]
        ax = _axis(axis, _rank(x))
        if _is_frame(x):
            return list(torch.unbind(x, dim=ax + 1))
        return [np.asarray(a) for a in np.moveaxis(_np(x), ax, 0)]
    return run


@_op("ConcatV2", "Concat")
def _concat(node, program):
    def run(ctx, inputs):
        if node.op == "ConcatV2":
            values, axis = inputs[:-1], int(_ints(inputs[-1])[0])
        else:
            values, axis = inputs[1:], int(_ints(inputs[0])[0])
        ax = _axis(axis, _rank(values[0]))
        if not any(_is_frame(v) for v in values):
            return [np.concatenate([_np(v) for v in values], axis=ax)]
        return [torch.cat([ctx.frame(v) for v in values], dim=ax + 1)]
    return run


@_op("Reshape")
def _reshape(node, program):
    def run(ctx, inputs):
        x, shape = inputs[0], _ints(inputs[1])
        if _is_frame(x):
            return [x.reshape((x.shape[0],) + tuple(shape))]
        return [_np(x).reshape(shape)]
    return run


@_op("Squeeze")
def _squeeze(node, program):
    dims = [int(d) for d in (node.attr.get("squeeze_dims") or [])]

    def run(ctx, inputs):
        x = inputs[0]
        shape = _sshape(x)
        axes = [_axis(d, len(shape)) for d in dims] if dims else [i for i, s in enumerate(shape) if s == 1]
        for a in axes:
            if shape[a] != 1:
                raise GraphError(f"squeezes axis {a} of size {shape[a]} in node {node.name!r}")
        new = tuple(s for i, s in enumerate(shape) if i not in axes)
        return [x.reshape((x.shape[0],) + new) if _is_frame(x) else _np(x).reshape(new)]
    return run


@_op("ExpandDims")
def _expand_dims(node, program):
    def run(ctx, inputs):
        x, dim = inputs[0], _ints(inputs[1])[0]
        ax = _axis(dim, _rank(x) + 1)
        return [x.unsqueeze(ax + 1) if _is_frame(x) else np.expand_dims(_np(x), ax)]
    return run


@_op("Pad", "PadV2")
def _pad(node, program):
    def run(ctx, inputs):
        x, pads = inputs[0], _np(inputs[1]).astype(np.int64).reshape(-1, 2)
        value = inputs[2] if node.op == "PadV2" else 0
        if (pads < 0).any():
            raise GraphError(f"pads by a negative amount in node {node.name!r}")
        if not _is_frame(x):
            return [np.pad(_np(x), pads, constant_values=_np(value).item() if node.op == "PadV2" else 0)]
        flat = []
        for before, after in pads[::-1]:
            flat += [int(before), int(after)]
        fill = _np(value).item() if not _is_frame(value) and node.op == "PadV2" else 0
        return [F.pad(x, flat, mode="constant", value=fill)]
    return run


def _reduce(np_fn, torch_fn):
    def compile_(node, program):
        keep = bool(node.attr.get("keep_dims", False))

        def run(ctx, inputs):
            x, axes = inputs[0], _ints(inputs[1])
            rank = _rank(x)
            axes = sorted({_axis(a, rank) for a in axes})
            if not _is_frame(x):
                return [np.asarray(np_fn(_np(x), axis=tuple(axes), keepdims=keep))]
            if not axes:
                return [x]
            return [torch_fn(x, [a + 1 for a in axes], keep)]
        return run
    return compile_


def _np_mean(x, axis, keepdims):
    if x.dtype.kind in "iu":
        total = np.sum(x, axis=axis, keepdims=keepdims, dtype=np.int64)
        count = int(np.prod([x.shape[a] for a in axis]))
        return (np.sign(total) * (np.abs(total) // count)).astype(x.dtype)
    return np.mean(x, axis=axis, keepdims=keepdims).astype(x.dtype)


def _torch_mean(x, dims, keep):
    if not x.dtype.is_floating_point:
        total = torch.sum(x.to(torch.int64), dim=dims, keepdim=keep)
        count = int(np.prod([x.shape[d] for d in dims]))
        return torch.div(total, count, rounding_mode="trunc").to(x.dtype)
    return torch.mean(x, dim=dims, keepdim=keep)


_op("Mean")(_reduce(_np_mean, _torch_mean))
_op("Sum")(_reduce(lambda x, axis, keepdims: np.sum(x, axis=axis, keepdims=keepdims).astype(x.dtype),
                   lambda x, d, k: torch.sum(x, dim=d, keepdim=k).to(x.dtype)))
_op("Max")(_reduce(np.max, lambda x, d, k: torch.amax(x, dim=d, keepdim=k)))
_op("Min")(_reduce(np.min, lambda x, d, k: torch.amin(x, dim=d, keepdim=k)))


def _torch_logical_reduce(method: str):
    def reduce(x, dims, keep):
        for d in sorted(dims, reverse=True):
            x = getattr(x, method)(dim=d, keepdim=keep)
        return x
    return reduce


_op("All")(_reduce(np.all, _torch_logical_reduce("all")))
_op("Any")(_reduce(np.any, _torch_logical_reduce("any")))


@_op("ArgMax")
def _argmax(node, program):
    out = DTYPES.get(node.attr.get("output_type", 9), np.dtype(np.int64))
    torch_out = _TORCH_DTYPES[_NUMPY_TO_ENUM[out]]

    def run(ctx, inputs):
        x, axis = inputs[0], _ints(inputs[1])[0]
        ax = _axis(axis, _rank(x))
        if _is_frame(x):
            return [torch.argmax(x, dim=ax + 1).to(torch_out)]
        return [np.argmax(_np(x), axis=ax).astype(out)]
    return run


# ---------------------------------------------------------------------------------------------- image ops
def _data_format(node) -> None:
    fmt = node.attr.get("data_format", b"NHWC") or b"NHWC"
    if fmt != b"NHWC":
        raise GraphError(f"uses data_format {fmt.decode()} in node {node.name!r} ({node.op}); only NHWC graphs are "
                         f"read (graphs exported for the CPU are NHWC)")


def _spatial(node, key: str, default: int = 1) -> tuple[int, int]:
    values = node.attr.get(key) or [1, default, default, 1]
    if len(values) != 4 or values[0] != 1 or values[3] != 1:
        raise GraphError(f"has {key} {list(values)} in node {node.name!r}; only spatial {key} are read")
    return int(values[1]), int(values[2])


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow's ``SAME`` padding of one spatial axis: (before, after), the extra pixel after."""
    effective = (kernel - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def _paddings(node, shape_hw, kernel_hw, strides, dilations) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of a convolution or pooling node."""
    padding = node.attr.get("padding", b"VALID")
    if padding == b"VALID":
        return 0, 0, 0, 0
    if padding == b"SAME":
        top, bottom = same_padding(shape_hw[0], kernel_hw[0], strides[0], dilations[0])
        left, right = same_padding(shape_hw[1], kernel_hw[1], strides[1], dilations[1])
        return top, bottom, left, right
    if padding == b"EXPLICIT":
        ex = [int(v) for v in node.attr.get("explicit_paddings") or []]
        if len(ex) != 8 or any(ex[:2]) or any(ex[6:]):
            raise GraphError(f"has explicit paddings {ex} in node {node.name!r}; only spatial ones are read")
        return ex[2], ex[3], ex[4], ex[5]
    raise GraphError(f"uses padding {padding!r} in node {node.name!r}")


def _as_nchw(x: torch.Tensor) -> torch.Tensor:
    """A frame tensor ``(F, N, H, W, C)`` as a channels-last ``(F*N, C, H, W)`` view."""
    return x.reshape((-1,) + tuple(x.shape[2:])).permute(0, 3, 1, 2)


def _from_nchw(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    out = y.permute(0, 2, 3, 1)
    return out.reshape(tuple(x.shape[:2]) + tuple(out.shape[1:]))


def _conv(ctx, node, x, weight, strides, dilations, kernel_hw, groups: int) -> torch.Tensor:
    if not _is_frame(x):
        raise GraphError(f"convolves a constant in node {node.name!r}, which this reader does not do")
    if x.dim() != 5:
        raise GraphError(f"convolves a tensor of rank {x.dim() - 1} in node {node.name!r}; rank 4 is needed")
    top, bottom, left, right = _paddings(node, tuple(x.shape[2:4]), kernel_hw, strides, dilations)
    xc = _as_nchw(x)
    if top == bottom and left == right:
        padding = (top, left)
    else:
        xc = F.pad(xc, (left, right, top, bottom))
        padding = (0, 0)
    y = F.conv2d(xc, weight, None, strides, padding, dilations, groups)
    return _from_nchw(y, x)


@_op("Conv2D")
def _conv2d(node, program):
    _data_format(node)
    strides, dilations = _spatial(node, "strides"), _spatial(node, "dilations")
    filt = program.static_input(node, 1)
    if filt.ndim != 4:
        raise GraphError(f"has a filter of shape {filt.shape} in node {node.name!r}; Conv2D needs 4-D")
    kernel_hw = tuple(int(s) for s in filt.shape[:2])
    if kernel_hw == (1, 1) and strides == (1, 1) and node.attr.get("padding") in (b"SAME", b"VALID"):
        # a 1x1 convolution is a matrix product over the channels of the NHWC tensor (one GEMM: several times
        # faster than the convolution kernels on the CPU for the wide layers)
        matrix = program.add_param(torch.from_numpy(np.ascontiguousarray(filt[0, 0])).float())  # (in, out)

        def run_1x1(ctx, inputs):
            x = inputs[0]
            if not _is_frame(x) or x.dim() != 5 or x.shape[-1] != filt.shape[2]:
                raise GraphError(f"feeds a tensor of shape {tuple(_sshape(x))} to node {node.name!r}, whose "
                                 f"filter takes {filt.shape[2]} channels")
            return [torch.matmul(x, ctx.param(matrix))]
        return run_1x1
    index = program.add_param(torch.from_numpy(np.ascontiguousarray(filt.transpose(3, 2, 0, 1))).float())

    def run(ctx, inputs):
        x = inputs[0]
        if x.shape[-1] != filt.shape[2]:
            raise GraphError(f"feeds {x.shape[-1]} channels to node {node.name!r}, whose filter takes "
                             f"{filt.shape[2]}")
        return [_conv(ctx, node, x, ctx.param(index), strides, dilations, kernel_hw, 1)]
    return run


@_op("DepthwiseConv2dNative")
def _depthwise(node, program):
    _data_format(node)
    strides, dilations = _spatial(node, "strides"), _spatial(node, "dilations")
    filt = program.static_input(node, 1)
    if filt.ndim != 4:
        raise GraphError(f"has a filter of shape {filt.shape} in node {node.name!r}; a depthwise filter is 4-D")
    kh, kw, cin, mult = (int(s) for s in filt.shape)
    # TensorFlow's output channel c * mult + m comes from input channel c: torch's grouped layout.
    weight = np.ascontiguousarray(filt.reshape(kh, kw, cin * mult).transpose(2, 0, 1)[:, None])
    index = program.add_param(torch.from_numpy(weight).float())

    def run(ctx, inputs):
        x = inputs[0]
        if x.shape[-1] != cin:
            raise GraphError(f"feeds {x.shape[-1]} channels to node {node.name!r}, whose filter takes {cin}")
        return [_conv(ctx, node, x, ctx.param(index), strides, dilations, (kh, kw), cin)]
    return run


@_op("FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3")
def _fused_batch_norm(node, program):
    _data_format(node)
    if node.attr.get("is_training", True) and node.attr.get("is_training") is not False:
        raise GraphError(f"normalises with batch statistics in node {node.name!r} (FusedBatchNorm is_training=true); "
                         f"a frozen inference graph must use its moving averages")
    eps = np.float32(node.attr.get("epsilon", 1e-4))
    scale, offset, mean, var = (program.static_input(node, i).astype(np.float32) for i in (1, 2, 3, 4))
    factor = ((np.float32(1) / np.sqrt(var + eps)).astype(np.float32) * scale).astype(np.float32)
    i_mean = program.add_param(torch.from_numpy(mean.copy()))
    i_factor = program.add_param(torch.from_numpy(factor))
    i_offset = program.add_param(torch.from_numpy(offset.copy()))
    n_out = 6 if node.op == "FusedBatchNormV3" else 5
    # A ReLU that is the only reader of this output runs here, in place on the fresh tensor (it becomes an alias).
    relu = program.sole_consumer(node.name, ("Relu", "Relu6"))
    if relu is not None:
        program.fused.add(relu.name)

    def run(ctx, inputs):
        x = inputs[0]
        if not _is_frame(x):
            raise GraphError(f"normalises a constant in node {node.name!r}")
        y = x - ctx.param(i_mean)  # a new tensor; the rest in place, the same arithmetic
        y.mul_(ctx.param(i_factor)).add_(ctx.param(i_offset))
        if relu is not None:
            y.clamp_(0, 6) if relu.op == "Relu6" else y.relu_()
        return [y] + [None] * (n_out - 1)
    return run


@_op("AvgPool")
def _avg_pool(node, program):
    _data_format(node)
    ksize, strides = _spatial(node, "ksize"), _spatial(node, "strides")

    def run(ctx, inputs):
        x = inputs[0]
        if not _is_frame(x):
            raise GraphError(f"pools a constant in node {node.name!r}")
        top, bottom, left, right = _paddings(node, tuple(x.shape[2:4]), ksize, strides, (1, 1))
        xc = _as_nchw(x)
        if top == bottom == left == right == 0:
            return [_from_nchw(F.avg_pool2d(xc, ksize, strides), x)]
        # TensorFlow's SAME average pooling divides by the number of real (unpadded) pixels in the window.
        padded = F.pad(xc, (left, right, top, bottom))
        total = F.avg_pool2d(padded, ksize, strides, divisor_override=1)
        ones = F.pad(torch.ones((1, 1) + tuple(xc.shape[2:]), dtype=xc.dtype, device=xc.device),
                     (left, right, top, bottom))
        count = F.avg_pool2d(ones, ksize, strides, divisor_override=1)
        return [_from_nchw(total / count, x)]
    return run


@_op("SpaceToBatchND")
def _space_to_batch(node, program):
    def run(ctx, inputs):
        x, block, pads = inputs[0], _ints(inputs[1]), _np(inputs[2]).astype(np.int64).reshape(-1, 2)
        if not _is_frame(x):
            raise GraphError(f"reorders a constant in node {node.name!r}")
        m = len(block)
        shape = list(x.shape[1:])
        rest = shape[1 + m:]
        flat = []
        for before, after in list(pads[::-1]):
            flat += [int(before), int(after)]
        flat = [0, 0] * len(rest) + flat
        xp = F.pad(x, flat) if any(flat) else x
        n = shape[0]
        spatial = list(xp.shape[2:2 + m])
        for size, b in zip(spatial, block):
            if size % b:
                raise GraphError(f"needs a padded size divisible by the block {block} in node {node.name!r}, got "
                                 f"{spatial}")
        view = [xp.shape[0], n]
        for size, b in zip(spatial, block):
            view += [size // b, b]
        view += rest
        y = xp.reshape(view)
        # (F, N, s0, b0, s1, b1, ..., rest) -> (F, b0, b1, ..., N, s0, s1, ..., rest)
        perm = [0] + [3 + 2 * i for i in range(m)] + [1] + [2 + 2 * i for i in range(m)] + \
            list(range(2 + 2 * m, 2 + 2 * m + len(rest)))
        y = y.permute(perm)
        out = [xp.shape[0], n * int(np.prod(block))] + [s // b for s, b in zip(spatial, block)] + rest
        return [y.reshape(out)]
    return run


@_op("BatchToSpaceND")
def _batch_to_space(node, program):
    def run(ctx, inputs):
        x, block, crops = inputs[0], _ints(inputs[1]), _np(inputs[2]).astype(np.int64).reshape(-1, 2)
        if not _is_frame(x):
            raise GraphError(f"reorders a constant in node {node.name!r}")
        m = len(block)
        shape = list(x.shape[1:])
        prod = int(np.prod(block))
        if shape[0] % prod:
            raise GraphError(f"has a batch of {shape[0]} not divisible by the block {block} in node {node.name!r}")
        n = shape[0] // prod
        spatial, rest = shape[1:1 + m], shape[1 + m:]
        y = x.reshape([x.shape[0]] + list(block) + [n] + spatial + rest)
        # (F, b0, b1, ..., N, s0, s1, ..., rest) -> (F, N, s0, b0, s1, b1, ..., rest)
        perm = [0, 1 + m]
        for i in range(m):
            perm += [2 + m + i, 1 + i]
        perm += list(range(2 + 2 * m, 2 + 2 * m + len(rest)))
        y = y.permute(perm).reshape([x.shape[0], n] + [s * b for s, b in zip(spatial, block)] + rest)
        index = [slice(None), slice(None)]
        for (c0, c1), s, b in zip(crops, spatial, block):
            index.append(slice(int(c0), s * b - int(c1)))
        return [y[tuple(index)]]
    return run


def resize_scale(in_size: int, out_size: int, align_corners: bool) -> np.float32:
    """TensorFlow's ``CalculateResizeScale`` in float32."""
    if align_corners and out_size > 1:
        return np.float32(in_size - 1) / np.float32(out_size - 1)
    return np.float32(in_size) / np.float32(out_size)


def bilinear_table(in_size: int, out_size: int, align_corners: bool, half_pixel: bool):
    """(lower, upper, lerp) of TensorFlow's ``compute_interpolation_weights`` for one axis (float32 arithmetic)."""
    scale = resize_scale(in_size, out_size, align_corners)
    i = np.arange(out_size, dtype=np.float32)
    if half_pixel:
        pos = (i + np.float32(0.5)) * scale - np.float32(0.5)
    else:
        pos = i * scale
    pos = pos.astype(np.float32)
    floor = np.floor(pos)
    lower = np.maximum(floor, 0).astype(np.int64)
    upper = np.minimum(np.ceil(pos), in_size - 1).astype(np.int64)
    lerp = (pos - floor).astype(np.float32)
    return lower, upper, lerp


def nearest_table(in_size: int, out_size: int, align_corners: bool, half_pixel: bool) -> np.ndarray:
    """Source indices of TensorFlow's ``ResizeNearestNeighbor`` for one axis."""
    scale = resize_scale(in_size, out_size, align_corners)
    i = np.arange(out_size, dtype=np.float32)
    pos = ((i + np.float32(0.5)) * scale if half_pixel else i * scale).astype(np.float32)
    if align_corners:
        src = np.floor(pos.astype(np.float64) + 0.5)  # roundf: half away from zero (pos >= 0)
    else:
        src = np.floor(pos)
    src = np.minimum(src.astype(np.int64), in_size - 1)
    if half_pixel:
        src = np.maximum(src, 0)
    return src


def _resize_inputs(node, inputs):
    x, size = inputs[0], _ints(inputs[1])
    if not _is_frame(x):
        raise GraphError(f"resizes a constant in node {node.name!r}")
    if x.dim() != 5 or len(size) != 2:
        raise GraphError(f"resizes a tensor of rank {x.dim() - 1} to {size} in node {node.name!r}")
    if min(size) < 1:
        raise GraphError(f"resizes to {size} in node {node.name!r}")
    return x, size, bool(node.attr.get("align_corners", False)), bool(node.attr.get("half_pixel_centers", False))


@_op("ResizeBilinear")
def _resize_bilinear(node, program):
    def run(ctx, inputs):
        x, (oh, ow), align, half = _resize_inputs(node, inputs)
        x = x if x.dtype == torch.float32 else x.float()
        h, w = x.shape[2], x.shape[3]
        ylo, yhi, ylerp = (torch.from_numpy(a).to(x.device, non_blocking=True)
                           for a in bilinear_table(h, oh, align, half))
        xlo, xhi, xlerp = (torch.from_numpy(a).to(x.device, non_blocking=True)
                           for a in bilinear_table(w, ow, align, half))
        if (oh, ow) == (h, w):
            # every lerp is 0 and every source pixel its own: TensorFlow's formula is x + (x - x) * 0 (twice), the
            # input where it is finite and NaN where it is not. On the CPU, where reading is free, a finite input
            # is given back as it is; elsewhere the formula runs, without a host read (a device synchronisation).
            if x.device.type != "cpu":
                return [x + (x - x).mul_(0)]
            if bool(torch.isfinite(x).all()):
                return [x]
        # Along the width first, on the input rows (few), then the output rows (many) from those: the same
        # values, in the same order of operations, as TensorFlow's top/bottom per output pixel.
        # (advanced indexing: torch's index_select along an inner axis is many times slower on the CPU)
        across = x[:, :, :, xlo]
        step = x[:, :, :, xhi]
        step.sub_(across).mul_(xlerp.view(1, 1, 1, -1, 1))
        across.add_(step)
        del step
        top = across[:, :, ylo]
        bottom = across[:, :, yhi]
        del across
        bottom.sub_(top).mul_(ylerp.view(1, 1, -1, 1, 1))
        return [top.add_(bottom)]
    return run


@_op("ResizeNearestNeighbor")
def _resize_nearest(node, program):
    def run(ctx, inputs):
        x, (oh, ow), align, half = _resize_inputs(node, inputs)
        h, w = x.shape[2], x.shape[3]
        ys = torch.from_numpy(nearest_table(h, oh, align, half)).to(x.device, non_blocking=True)
        xs = torch.from_numpy(nearest_table(w, ow, align, half)).to(x.device, non_blocking=True)
        return [x[:, :, ys][:, :, :, xs]]
    return run


#: Every op the interpreter runs.
SUPPORTED_OPS = frozenset(_COMPILERS)
#: Running out of GPU memory is not a property of the graph: it reaches the caller as it is.
_OUT_OF_MEMORY = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


# ---------------------------------------------------------------------------------------------- the program
@dataclass
class _Step:
    name: str
    op: str
    run: Callable
    inputs: list[tuple[str, int]]
    free: list[tuple[str, int]] = field(default_factory=list)


class GraphProgram(nn.Module):
    """The part of a graph that computes ``outputs`` from ``inputs``, compiled once (see the module docstring).

    ``program(feeds)`` with ``feeds = {input name: frames}`` (each a tensor whose first axis counts frames, the rest
    the placeholder's shape) returns the outputs, each with the frame axis first. The weights are parameters of
    this module (``.to(device)`` moves them); the frames' device is the one the computation runs on.
    """

    def __init__(self, graph: Graph, inputs: Sequence[str], outputs: Sequence[str]):
        super().__init__()
        self.input_names, self.output_names = list(inputs), list(outputs)
        self.params = nn.ParameterList()
        self._consts: list[np.ndarray] = []
        self._const_ids: set[int] = set()
        self._const_cache: dict = {}
        self._graph = graph
        for name in list(inputs) + list(outputs):
            if name not in graph:
                raise GraphError(f"has no node named {name!r}")
        order = self._order(graph, outputs, set(inputs))
        self.fused: set[str] = set()
        self._readers: dict[tuple[str, int], list[str]] = {}
        for name in order:
            for ref in graph.node(name).inputs:
                self._readers.setdefault(ref, []).append(name)
        for name in outputs:
            self._readers.setdefault((name, 0), []).append("")  # an output is read by the caller
        self._static: dict[tuple[str, int], np.ndarray] = {}
        self.steps: list[_Step] = []
        for name in order:
            node = graph.node(name)
            if name in self.input_names:
                if node.op not in ("Placeholder", "PlaceholderWithDefault"):
                    raise GraphError(f"has an input {name!r} that is a {node.op} node, not a placeholder")
                continue
            run = _COMPILERS[node.op](node, self)
            self.steps.append(_Step(name, node.op, run, list(node.inputs)))
            if node.op == "Const":
                self._static[(name, 0)] = node.attr["value"]
        self._graph = None
        self._readers = {}
        last_use: dict[tuple[str, int], int] = {}
        for i, step in enumerate(self.steps):
            for ref in step.inputs:
                last_use[ref] = i
        keep = {(name, 0) for name in outputs}
        for ref, i in last_use.items():
            if ref not in keep and ref not in self._static:
                self.steps[i].free.append(ref)

    # -- compile-time helpers used by the op compilers
    def _register_const(self, value: np.ndarray) -> None:
        self._consts.append(value)
        self._const_ids.add(id(value))

    def add_param(self, tensor: torch.Tensor) -> int:
        self.params.append(nn.Parameter(tensor, requires_grad=False))
        return len(self.params) - 1

    def sole_consumer(self, name: str, ops: Sequence[str]) -> Node | None:
        """The node that alone reads output 0 of ``name`` (and none of its other outputs), when its op is in
        ``ops``; else None."""
        readers = self._readers.get((name, 0), [])
        others = [ref for ref in self._readers if ref[0] == name and ref[1] != 0]
        if len(readers) != 1 or not readers[0] or others:
            return None
        node = self._graph.node(readers[0])
        return node if node.op in ops else None

    def static_input(self, node: Node, index: int) -> np.ndarray:
        """The value of ``node``'s input ``index`` when it is a constant (through Identity nodes)."""
        graph = self._graph
        src, out = node.inputs[index]
        seen = 0
        while True:
            producer = graph.node(src)
            if producer.op == "Const":
                return np.asarray(producer.attr["value"])
            if producer.op in ("Identity", "StopGradient", "Snapshot") and seen < 100:
                src, out = producer.inputs[0]
                seen += 1
                continue
            raise GraphError(f"computes input {index} of node {node.name!r} ({node.op}) at run time (from "
                             f"{producer.op} node {producer.name!r}); this reader needs a constant there")

    @staticmethod
    def _order(graph: Graph, outputs: Sequence[str], inputs: set[str]) -> list[str]:
        """The nodes ``outputs`` need (data and control inputs), each after its inputs; unsupported ops refused."""
        state: dict[str, int] = {}
        order: list[str] = []
        stack: list[tuple[str, bool, str]] = [(name, False, "") for name in reversed(list(outputs))]
        while stack:
            name, done, parent = stack.pop()
            if done:
                state[name] = 2
                order.append(name)
                continue
            st = state.get(name)
            if st == 2:
                continue
            if st == 1:
                raise GraphError(f"has a cycle through node {name!r} (a while loop?); only frozen feed-forward graphs "
                                 f"are read")
            if name not in graph:
                raise GraphError(f"has node {parent!r} reading {name!r}, which the graph does not hold; the file is "
                                 f"truncated or not a frozen graph")
            node = graph.node(name)
            if name not in inputs and node.op not in _COMPILERS:
                raise GraphError(f"uses the TensorFlow op {node.op!r} (node {name!r}), which this reader does not "
                                 f"implement")
            state[name] = 1
            stack.append((name, True, parent))
            if name in inputs:
                continue
            deps = [src for src, _ in node.inputs] + node.control
            for dep in reversed(deps):
                if state.get(dep) != 2:
                    stack.append((dep, False, name))
        return order

    @property
    def device(self) -> torch.device:
        return self.params[0].device if len(self.params) else torch.device("cpu")

    @torch.inference_mode()
    def forward(self, feeds: Mapping[str, torch.Tensor], outputs: Sequence[str] | None = None) -> list:
        wanted = list(outputs) if outputs is not None else self.output_names
        frames = {int(v.shape[0]) for v in feeds.values()}
        if len(frames) != 1:
            raise GraphError("was fed inputs with different numbers of frames")
        device = next(iter(feeds.values())).device
        ctx = _Context(self, device, frames.pop())
        env: dict[tuple[str, int], Any] = {}
        for name in self.input_names:
            if name not in feeds:
                raise GraphError(f"needs a value for the input {name!r}")
            env[(name, 0)] = feeds[name]
        keep = {(name, 0) for name in wanted}
        for step in self.steps:
            args = [env[ref] for ref in step.inputs]
            try:
                results = step.run(ctx, args)
            except (GraphError, _OUT_OF_MEMORY):
                raise
            except (RuntimeError, ValueError, IndexError) as exc:
                raise GraphError(f"cannot run node {step.name!r} ({step.op}) on this input: "
                                 f"{' '.join(str(exc).split())[:200]}") from None
            for i, value in enumerate(results):
                env[(step.name, i)] = value
            for ref in step.free:
                if ref not in keep:
                    env.pop(ref, None)
        missing = [name for name in wanted if (name, 0) not in env]
        if missing:
            raise GraphError(f"did not compute {missing[0]!r}; compile the program with it as an output")
        return [env[(name, 0)] for name in wanted]


def compile_graph(graph_def, inputs: Sequence[str], outputs: Sequence[str]) -> GraphProgram:
    """:class:`GraphProgram` of ``graph_def`` (a parsed ``GraphDef``) from ``inputs`` to ``outputs``."""
    return GraphProgram(Graph(graph_def), inputs, outputs)


def ops_needed(graph_def, outputs: Iterable[str]) -> dict[str, int]:
    """How many nodes of each op ``outputs`` need (without compiling; unsupported ops included)."""
    graph = Graph(graph_def)
    counts: dict[str, int] = {}
    seen: set[str] = set()
    stack = [n for n in outputs if n in graph]
    while stack:
        name = stack.pop()
        if name in seen or name not in graph:
            continue
        seen.add(name)
        node = graph.node(name)
        counts[node.op] = counts.get(node.op, 0) + 1
        stack += [src for src, _ in node.inputs] + node.control
    return counts
