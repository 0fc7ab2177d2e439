"""DeepLab's Cityscapes DPC-Xception71 (the TRAdam paper's Table 3 scorer) from its frozen graph, in PyTorch.

TensorFlow DeepLab's model zoo publishes the model as ``deeplab_cityscapes_xception71_trainfine_2018_09_08.tar.gz``
(http://download.tensorflow.org/models/, 445MB per the model zoo table; val mIoU 80.31% at output stride 16, one
scale, no flipping). The tarball holds a frozen inference graph ``frozen_inference_graph.pb`` (the weights are
constants in it) next to a checkpoint (``model.ckpt.*``), under ``train_fine/``. The graph was written by
DeepLab's ``export_model.py``: input ``ImageTensor`` (uint8 ``[1, H, W, 3]``, RGB), output ``SemanticPredictions``
(``[1, H, W]``, Cityscapes train ids 0..18). In between, the graph itself

1. pads the frame with the mean pixel (127.5) at the bottom and right to its *crop size* (the size it was exported
   with; a frame larger than that cannot be labelled by the Cityscapes export);
2. scales it to ``[-1, 1]``, runs Xception-71 (output stride 16), the dense prediction cell and the decoder;
3. resizes the logits bilinearly (``align_corners``) to the padded size, takes the argmax, cuts the frame's
   region out and resizes it (nearest neighbour) to the frame's size (a no-op here).

:func:`load_deeplab` reads the ``.pb`` or the tarball (recognised by content, the tarball read without unpacking it
to disk) and returns a :class:`DeepLabGraph`, an ``nn.Module`` that runs that graph with
:mod:`evaluation.tf_graph` (no TensorFlow): ``model(x)`` takes uint8 frames ``(N, H, W, 3)`` (RGB; every frame run
as TensorFlow runs a batch of one) and returns the ``(N, H, W)`` int64 train ids TensorFlow computes from the same
graph. It runs on the CPU or a GPU (``model.to(device)``).
"""

from __future__ import annotations

import gzip
import tarfile
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from evaluation.common import ScorerCheckpointError
from evaluation.tf_graph import GraphError, GraphProgram, compile_graph, looks_like_graph_def, parse_graph_def

INPUT_NODE = "ImageTensor"
OUTPUT_NODE = "SemanticPredictions"
#: The published file (TensorFlow DeepLab model zoo, ``g3doc/model_zoo.md``).
TARBALL_NAME = "deeplab_cityscapes_xception71_trainfine_2018_09_08.tar.gz"
TARBALL_URL = f"http://download.tensorflow.org/models/{TARBALL_NAME}"
GRAPH_NAME = "frozen_inference_graph.pb"
PUBLISHED = {"model": "xception71_dpc_cityscapes_trainfine", "val_miou": 80.31, "eval_output_stride": 16,
             "eval_scales": [1.0], "flip": False, "multiply_adds": "502.07B", "tarball_size": "445MB"}
_HEAD = 4096


def _fail(path, why: str) -> ScorerCheckpointError:
    return ScorerCheckpointError(f"DeepLab graph {path} {why}")


def _is_archive(head: bytes) -> bool:
    return head[:2] == b"\x1f\x8b" or head[:3] == b"BZh" or head[:6] == b"\xfd7zXZ\x00" or head[257:262] == b"ustar"


def is_deeplab_file(path: str | Path) -> bool:
    """Whether ``path`` looks like a frozen TensorFlow graph or an archive (a tarball) by its first bytes."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(_HEAD)
    except OSError:
        return False
    if head[257:262] == b"ustar" and head[:8] == b"sys_info":
        return False  # PyTorch's legacy tar checkpoint format (its first member is sys_info), not an archive of ours
    return looks_like_graph_def(head) or _is_archive(head)


def read_graph_bytes(path: str | Path) -> tuple[bytes, str]:
    """The bytes of the frozen graph in ``path`` (a ``.pb``, or a tar archive holding one, possibly compressed) and
    where they came from (``path`` or ``path:member``). Archives are searched by content: the first member that
    parses as a graph with the ``ImageTensor`` and ``SemanticPredictions`` nodes."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(_HEAD)
    except OSError as exc:
        raise _fail(path, f"cannot be read ({exc.strerror or exc})") from None
    if not _is_archive(head):
        return path.read_bytes(), str(path)
    looked: list[str] = []
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                handle = tar.extractfile(member)
                if handle is None:
                    continue
                first = handle.read(_HEAD)
                looked.append(member.name)
                if not looks_like_graph_def(first):
                    continue
                data = first + handle.read()
                try:
                    graph = parse_graph_def(data)
                except GraphError:
                    continue
                names = {node.name for node in graph.node}
                if INPUT_NODE in names and OUTPUT_NODE in names:
                    return data, f"{path}:{member.name}"
    except tarfile.ReadError:
        if head[:2] == b"\x1f\x8b":  # a gzipped graph, not a tar
            try:
                return gzip.decompress(path.read_bytes()), str(path)
            except (OSError, EOFError, zlib.error) as exc:
                raise _fail(path, f"is a damaged gzip file ({exc}); download it again") from None
        raise _fail(path, "is neither a frozen graph nor a readable tar archive; pass frozen_inference_graph.pb or "
                          f"{TARBALL_NAME}") from None
    except (EOFError, OSError, zlib.error) as exc:
        raise _fail(path, f"is a damaged or truncated archive ({exc}); download {TARBALL_NAME} again") from None
    shown = ", ".join(looked[:5]) + (", ..." if len(looked) > 5 else "")
    raise _fail(path, f"is an archive without a frozen DeepLab graph (a GraphDef with {INPUT_NODE} and {OUTPUT_NODE}) "
                      f"among its files ({shown or 'none'}); pass {TARBALL_NAME} or its {GRAPH_NAME}")


class DeepLabGraph(nn.Module):
    """A DeepLab export (``ImageTensor`` -> ``SemanticPredictions``) run by :class:`~evaluation.tf_graph.GraphProgram`.

    ``forward(x)``: uint8 ``(N, H, W, 3)`` RGB frames of one size -> ``(N, H, W)`` int64 train ids.
    ``crop_size``: the (height, width) the graph pads frames to (None when it does not pad).
    ``frames_per_run``: how many frames go through the graph at once (default: 1 on the CPU, where more gains
    little and each frame of the Cityscapes export needs a few GB at its 1025x2049 crop; 4 on a GPU).
    """

    frames_per_run: int | None = None

    def __init__(self, program: GraphProgram, padding: GraphProgram | None, source: str, ops: dict[str, int]):
        super().__init__()
        self.program = program
        self._padding = padding
        self.source, self.ops = source, ops
        self._crop: tuple[int, int] | None | bool = False

    @property
    def crop_size(self) -> tuple[int, int] | None:
        if self._crop is False:
            self._crop = self.padded_size(1, 1) if self._padding is not None else None
        return self._crop  # type: ignore[return-value]

    def padded_size(self, height: int, width: int) -> tuple[int, int]:
        """The (height, width) the graph pads a ``height x width`` frame to (its preprocessing only, on CPU)."""
        if self._padding is None:
            return (height, width)
        frame = torch.zeros((1, 1, height, width, 3), dtype=torch.uint8)
        try:
            out = self._padding({INPUT_NODE: frame})[0]
        except GraphError as exc:
            raise _fail(self.source, str(exc)) from None
        shape = tuple(out.shape[1:])
        return (int(shape[-3]), int(shape[-2]))

    @property
    def device(self) -> torch.device:
        return self.program.device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[-1] != 3 or x.dtype != torch.uint8:
            raise ValueError(f"DeepLabGraph takes uint8 frames (N, H, W, 3), got {x.dtype} {tuple(x.shape)}")
        step = self.frames_per_run or (4 if x.is_cuda else 1)
        out = []
        for start in range(0, x.shape[0], step):
            try:
                labels = self.program({INPUT_NODE: x[start:start + step].unsqueeze(1)})[0]
            except GraphError as exc:
                raise self._explain(exc, tuple(x.shape[1:3])) from None
            if not isinstance(labels, torch.Tensor):
                raise _fail(self.source, "computes SemanticPredictions without looking at the image")
            out.append(labels.reshape(labels.shape[0], *labels.shape[-2:]).to(torch.int64))
        return torch.cat(out) if len(out) > 1 else out[0]

    def _explain(self, exc: GraphError, size: tuple[int, int]) -> ScorerCheckpointError:
        crop = self.crop_size
        if crop is not None and (size[0] > crop[0] or size[1] > crop[1]):
            return _fail(self.source, f"cannot label a {size[0]}x{size[1]} frame (height x width): the export pads "
                                      f"frames up to its crop size {crop[0]}x{crop[1]} and cannot take larger ones "
                                      f"(TensorFlow fails on it too); resize the frames to fit (the graph "
                                      f"stopped with: {exc})")
        return _fail(self.source, str(exc))


def _first_pad(graph_def) -> str | None:
    """The name of the first ``Pad``/``PadV2`` node fed (through any path) by the input: DeepLab's padding."""
    consumers: dict[str, list[str]] = {}
    for node in graph_def.node:
        for text in node.input:
            if text.startswith("^"):
                continue
            consumers.setdefault(text.split(":")[0], []).append(node.name)
    ops = {node.name: node.op for node in graph_def.node}
    frontier, seen = [INPUT_NODE], {INPUT_NODE}
    while frontier:  # breadth first: the nearest pad
        nxt = []
        for name in frontier:
            for consumer in consumers.get(name, []):
                if consumer in seen:
                    continue
                if ops.get(consumer) in ("Pad", "PadV2"):
                    return consumer
                seen.add(consumer)
                nxt.append(consumer)
        frontier = nxt
    return None


def deeplab_from_bytes(data: bytes, source: str | Path) -> DeepLabGraph:
    """Parse and compile a frozen DeepLab graph; every problem is one sentence naming ``source``."""
    try:
        graph_def = parse_graph_def(data)
    except GraphError as exc:
        raise _fail(source, f"{exc}; download {TARBALL_NAME} again or pass its {GRAPH_NAME}") from None
    names = {node.name: node.op for node in graph_def.node}
    missing = [n for n in (INPUT_NODE, OUTPUT_NODE) if n not in names]
    if missing:
        kind = "an empty graph" if not names else f"a graph of {len(names)} nodes"
        raise _fail(source, f"is {kind} without the node{'s' if len(missing) > 1 else ''} {' and '.join(missing)} that "
                            f"DeepLab's export_model.py writes; it is not a DeepLab frozen inference graph, or the "
                            f"file is truncated (download {TARBALL_NAME} again)")
    try:
        program = compile_graph(graph_def, [INPUT_NODE], [OUTPUT_NODE])
        pad = _first_pad(graph_def)
        padding = compile_graph(graph_def, [INPUT_NODE], [pad]) if pad else None
    except GraphError as exc:
        raise _fail(source, str(exc)) from None
    from evaluation.tf_graph import ops_needed

    model = DeepLabGraph(program, padding, str(source), ops_needed(graph_def, [OUTPUT_NODE]))
    return model.eval()


def load_deeplab(path: str | Path, device: str | torch.device = "cpu") -> DeepLabGraph:
    """Read DeepLab's ``frozen_inference_graph.pb`` or the model-zoo tarball holding it (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise _fail(path, f"does not exist; download {TARBALL_URL} (you fetch it; nothing here downloads) and pass "
                          f"the tarball or its {GRAPH_NAME}")
    data, source = read_graph_bytes(path)
    model = deeplab_from_bytes(data, source)
    return model.to(device)


def predict_frames(model: DeepLabGraph, frames: Sequence[np.ndarray] | torch.Tensor,
                   device: str | torch.device | None = None) -> torch.Tensor:
    """Labels of uint8 ``(H, W, 3)`` frames of one size: ``(N, H, W)`` int64 on the CPU."""
    x = frames if isinstance(frames, torch.Tensor) else torch.from_numpy(np.stack([np.asarray(f) for f in frames]))
    x = x.to(device or model.device)
    return model(x).cpu()
