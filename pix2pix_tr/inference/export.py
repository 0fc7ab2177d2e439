"""``pix2pix-tr-export``: a trained generator as ONNX, TorchScript or a ``torch.export`` program.

    pix2pix-tr-export --name NAME [--checkpoints_dir DIR] [--epoch E] [--eval] \\
        --format onnx|torchscript|exported-program --output FILE
    python -m pix2pix_tr.inference.export ...   (the same)

The file holds the generator with test.py's semantics and the run's input size:

* input ``float32 (N, input_nc, S, S)`` in [-1, 1], ``S`` = the run's ``--crop_size``, any batch ``N`` (the batch
  axis is dynamic); output ``float32 (N, output_nc, S, S)`` in [-1, 1]. Pre-processing (not in the file): resize
  the image as in training (bicubic, to ``S x S`` under ``resize_and_crop``), scale ``x / 127.5 - 1``;
  post-processing: ``round((y + 1) * 127.5)`` clipped to 0..255 (what test.py writes). docs/inference.md shows it
  with onnxruntime, numpy and PIL alone. The run's settings travel in the file (ONNX ``metadata_props``, the
  TorchScript/exported-program extra file ``pix2pix_tr.json``).
* ``--eval``: BatchNorm's running statistics and no dropout (deterministic).
* without it, pix2pix's train-mode test (test.py's default): BatchNorm normalises with the statistics of the batch
  it is given (feed one image per batch to reproduce pix2pix) and dropout stays on. TorchScript and the exported
  program keep PyTorch's own train-mode operators: with the same ``torch.manual_seed`` they give PyTorch's
  images exactly. ONNX exporters fold BatchNorm with the running statistics and turn dropout off whatever the
  mode (a train-mode export would silently be an eval one), so for ONNX the train-mode generator is rewritten
  before export: BatchNorm as explicit batch statistics (``ReduceMean``...), dropout as an explicit random mask
  (``RandomUniformLike``: the runtime draws a new mask on every run, from its own random numbers, so the noise
  has PyTorch's distribution but not its samples).

Every export is checked before it is kept: the written file is loaded back and run on a batch of two random
inputs next to PyTorch (ONNX through onnxruntime when it is installed); a difference above 1e-4 (max abs) removes
it with one sentence. The file is written to a temporary name and renamed; ``--output`` may not be an input
(the checkpoint, its folder). ONNX needs ``pip install 'pix2pix-tr[export]'`` (onnx, onnxscript, onnxruntime).
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import sys
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn as nn

from pix2pix_tr.cli import json_clean, positive_int, run_cli
from pix2pix_tr.inference.checkpoint import InferenceError
from pix2pix_tr.io import atomic_open, atomic_write_bytes
from pix2pix_tr.paths import PathError, is_within, join_name

__all__ = ["FORMATS", "ExportError", "export_generator", "export_module", "main", "TOLERANCE"]

FORMATS = ("onnx", "torchscript", "exported-program")
#: the largest difference (max abs, on [-1, 1] outputs) an export may show against PyTorch
TOLERANCE = 1e-4
META_KEY = "pix2pix_tr"


class ExportError(InferenceError):
    """An export that cannot be done or did not check out; the message says what to do."""


# ------------------------------------------------------------------------------------------------ train mode for ONNX
class BatchStatisticsNorm(nn.Module):
    """Train-mode BatchNorm2d as explicit operations: normalise with the mean and (biased) variance of the batch
    itself, as ``nn.BatchNorm2d`` does in train mode (the running statistics are not used and not updated)."""

    def __init__(self, bn: nn.BatchNorm2d) -> None:
        super().__init__()
        self.eps = float(bn.eps)
        self.weight = None if bn.weight is None else nn.Parameter(bn.weight.detach().clone(), requires_grad=False)
        self.bias = None if bn.bias is None else nn.Parameter(bn.bias.detach().clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        var = (x - mean).pow(2).mean(dim=(0, 2, 3), keepdim=True)
        y = (x - mean) * torch.rsqrt(var + self.eps)
        if self.weight is not None:
            y = y * self.weight[None, :, None, None]
        if self.bias is not None:
            y = y + self.bias[None, :, None, None]
        return y


class RandomMaskDropout(nn.Module):
    """Dropout that stays on in any mode, as an explicit mask: keep each value with probability ``1 - p`` and
    scale by ``1 / (1 - p)`` (``nn.Dropout`` in train mode); exported to ONNX as ``RandomUniformLike``."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keep = (torch.rand_like(x) >= self.p).to(x.dtype)
        return x * keep * (1.0 / (1.0 - self.p))


def train_mode_as_explicit_ops(net: nn.Module) -> nn.Module:
    """A copy of ``net`` in eval mode that computes what ``net`` computes in train mode (see the module docs)."""
    out = copy.deepcopy(net)
    for module in list(out.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.BatchNorm2d):
                setattr(module, name, BatchStatisticsNorm(child))
            elif isinstance(child, nn.Dropout):
                setattr(module, name, RandomMaskDropout(child.p))
    return out.eval()


def _has_dropout(net: nn.Module) -> bool:
    return any(isinstance(m, nn.Dropout) for m in net.modules())


# ------------------------------------------------------------------------------------------------ the formats
def _need(modules: Sequence[str], fmt: str) -> None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ExportError(f"--format {fmt} needs the package(s) {', '.join(missing)}: pip install "
                          f"'pix2pix-tr[export]' (onnx, onnxscript, onnxruntime)")


def _to_onnx(net: nn.Module, example: torch.Tensor, meta: Mapping[str, Any]):
    """The ONNX ModelProto of ``net`` (batch axis dynamic, input "input", output "output")."""
    _need(("onnx", "onnxscript"), "onnx")
    import onnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(net, (example,), None, dynamo=True, input_names=["input"],
                                    output_names=["output"], dynamic_shapes=({0: torch.export.Dim("batch")},),
                                    external_data=False, verbose=False)
    proto = program.model_proto
    entry = onnx.StringStringEntryProto(key=META_KEY, value=json.dumps(json_clean(meta)))
    proto.metadata_props.append(entry)
    return proto


def _to_torchscript(net: nn.Module, example: torch.Tensor):
    with warnings.catch_warnings():  # torch.jit is deprecated upstream; the format is still widely read
        warnings.simplefilter("ignore")
        return torch.jit.trace(net, (example,), check_trace=False)


def _to_exported_program(net: nn.Module, example: torch.Tensor):
    return torch.export.export(net, (example,), dynamic_shapes=({0: torch.export.Dim("batch")},))


def export_module(net: nn.Module, fmt: str, output: str | Path, *, eval_mode: bool, input_nc: int, size: int,
                  meta: Mapping[str, Any] | None = None, check: bool = True) -> dict[str, Any]:
    """Write ``net`` (a loaded generator) to ``output`` in ``fmt`` with test.py's semantics (``eval_mode``) and an
    ``(N, input_nc, size, size)`` input; check it against PyTorch (:data:`TOLERANCE`). Returns what was done:
    ``{"format", "output", "checked", "max_abs_diff", "random"}``."""
    if fmt not in FORMATS:
        raise ExportError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    output = Path(output)
    meta = dict(meta or {}, format=fmt, eval=eval_mode,
                input=f"float32 (N, {input_nc}, {size}, {size}) in [-1, 1]", output_range="[-1, 1]")
    net = copy.deepcopy(net).cpu().float()
    net.eval() if eval_mode else net.train()
    random = not eval_mode and _has_dropout(net)
    generator = torch.Generator().manual_seed(0)
    example = torch.rand(2, input_nc, size, size, generator=generator) * 2 - 1  # batch 2: the batch axis stays free
    text = json.dumps(json_clean(meta), indent=1)
    with torch.no_grad():
        if fmt == "onnx":
            model = net if eval_mode else train_mode_as_explicit_ops(net)
            atomic_write_bytes(output, _to_onnx(model, example, meta).SerializeToString())
        elif fmt == "torchscript":
            traced = _to_torchscript(net, example)
            with atomic_open(output, "wb") as handle, warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch.jit's deprecation notice
                torch.jit.save(traced, handle, _extra_files={f"{META_KEY}.json": text})
        else:
            program = _to_exported_program(net, example)
            with atomic_open(output, "wb") as handle:
                torch.export.save(program, handle, extra_files={f"{META_KEY}.json": text})
    result = {"format": fmt, "output": str(output), "random": random, "checked": False, "max_abs_diff": None}
    if check:
        try:
            result.update(_check(net, fmt, output, example, random=random))
        except BaseException:
            output.unlink(missing_ok=True)
            raise
    return result


def _check(net: nn.Module, fmt: str, output: Path, example: torch.Tensor, *, random: bool) -> dict[str, Any]:
    """Load the written file back, run it next to PyTorch, and refuse a difference above :data:`TOLERANCE`.

    Random (train mode with dropout): TorchScript and the exported program draw torch's masks, so they are run
    with the same seed as PyTorch; the ONNX file draws its own, so its graph is checked with the masks' source
    fixed (every random draw replaced by 1, i.e. all kept): the deterministic part of the graph must match
    PyTorch with dropout's masks all kept."""
    with torch.no_grad():
        if fmt == "onnx":
            if importlib.util.find_spec("onnxruntime") is None:
                return {"checked": False, "note": "not checked: onnxruntime is not installed"}
            got, reference = _run_onnx(output, example, net, random=random)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch.jit's deprecation notice
                loaded = torch.jit.load(str(output)) if fmt == "torchscript" else torch.export.load(str(output)).module()
            torch.manual_seed(1234)
            reference = net(example)
            torch.manual_seed(1234)
            got = loaded(example)
    diff = float((got - reference).abs().max())
    if not diff <= TOLERANCE:
        raise ExportError(f"the exported {fmt} file disagrees with PyTorch by {diff:.2g} (max abs, tolerance "
                          f"{TOLERANCE:g}) on a check batch, so it was removed: try another --format, and report "
                          f"the torch version ({torch.__version__}) with the command")
    return {"checked": True, "max_abs_diff": diff}


def _run_onnx(path: Path, example: torch.Tensor, net: nn.Module, *, random: bool):
    import numpy as np
    import onnx
    import onnxruntime as ort

    data = path.read_bytes()
    reference_net = net
    if random:  # the masks' source fixed on both sides: every value kept (and scaled by 1 / (1 - p))
        model = onnx.load_from_string(data)
        for node in model.graph.node:
            if node.op_type == "RandomUniformLike":
                for attr in node.attribute:
                    if attr.name in ("low", "high"):
                        attr.f = 1.0
        data = model.SerializeToString()
        reference_net = copy.deepcopy(net).train()
        for module in list(reference_net.modules()):
            for name, child in list(module.named_children()):
                if isinstance(child, nn.Dropout):
                    setattr(module, name, _Scale(1.0 / (1.0 - child.p)))
    reference = reference_net(example)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": example.numpy()})[0]
    return torch.from_numpy(np.asarray(got)), reference


class _Scale(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


# ------------------------------------------------------------------------------------------------ from a run
def export_generator(run_dir: str | Path, fmt: str, output: str | Path, *, epoch: str | int = "latest",
                     eval_mode: bool = False, options: Mapping[str, Any] | None = None,
                     check: bool = True) -> dict[str, Any]:
    """Export the generator of ``run_dir`` at ``epoch`` (see the module docstring); ``options`` override the
    run's settings as test.py's flags do. Returns :func:`export_module`'s summary plus the settings written."""
    from pix2pix_tr.inference.translator import Translator

    run_dir = Path(run_dir)
    output = Path(output)
    if output.is_dir():
        raise PathError(f"--output {output} is a folder: pass a file name, e.g. {output / ('generator.' + _ext(fmt))}")
    if is_within(output, run_dir):
        raise PathError(f"--output {output} is inside the run folder {run_dir}, an input of the export: choose an "
                        f"--output outside {run_dir}")
    if fmt == "exported-program" and output.suffix != ".pt2":
        raise PathError(f"--output {output}: an exported program is read back by torch.export.load from a .pt2 file; "
                        f"pass --output {output.with_suffix('.pt2')}")
    if fmt == "onnx":
        _need(("onnx", "onnxscript"), fmt)
    translator, info = Translator._load(run_dir, epoch, dict(options or {}), device="cpu", eval=eval_mode)
    spec, gen = translator.preprocess_spec, info["generator"]
    from pix2pix_tr.models import required_multiple

    size = spec.crop_size
    if spec.preprocess in ("scale_width", "none") or size % required_multiple(gen["netG"]):
        raise ExportError(f"the run's --preprocess {spec.preprocess} gives inputs of varying size, but an export "
                          f"takes one: pass --preprocess resize_and_crop --crop_size N (N a multiple of "
                          f"{required_multiple(gen['netG'])}) to fix the exported input to N x N")
    meta = {"run": str(run_dir), "checkpoint": str(info["checkpoint"]), "epoch": str(epoch), "generator": gen,
            "direction": info["options"]["direction"], "preprocess": spec.preprocess, "load_size": spec.load_size,
            "crop_size": spec.crop_size}
    result = export_module(translator.net, fmt, output, eval_mode=eval_mode, input_nc=gen["input_nc"], size=size,
                           meta=meta, check=check)
    return {**result, **meta, "size": size, "input_nc": gen["input_nc"], "output_nc": gen["output_nc"]}


def _ext(fmt: str) -> str:
    return {"onnx": "onnx", "torchscript": "pt", "exported-program": "pt2"}[fmt]


def export_parser() -> argparse.ArgumentParser:
    from pix2pix_tr.data.aligned import DIRECTIONS, PREPROCESS_MODES
    from pix2pix_tr.models import GENERATORS, NORMS

    p = argparse.ArgumentParser(
        prog="pix2pix-tr-export", description="Write a trained generator as ONNX, TorchScript or a torch.export "
        "program, with test.py's semantics; input float32 (N, C, S, S) in [-1, 1], output the same range.")
    p.add_argument("--name", required=True, help="the run: CHECKPOINTS_DIR/NAME")
    p.add_argument("--checkpoints_dir", default="./checkpoints", help="where runs are saved")
    p.add_argument("--epoch", default="latest", help="which checkpoint: latest or an epoch number")
    p.add_argument("--eval", action="store_true",
                   help="eval mode (BatchNorm running statistics, no dropout: deterministic); without it, pix2pix's "
                        "train-mode test (batch statistics, dropout on)")
    p.add_argument("--format", required=True, choices=FORMATS, help="onnx (needs pix2pix-tr[export]), torchscript "
                   "(torch.jit, deprecated upstream), exported-program (torch.export.save; load with "
                   "torch.export.load)")
    p.add_argument("--output", required=True, help="the file to write (e.g. generator.onnx, .pt, .pt2)")
    n = p.add_argument_group("network and data (default: as in training)")
    n.add_argument("--netG", choices=GENERATORS, default=None)
    n.add_argument("--ngf", type=positive_int, default=None)
    n.add_argument("--norm", choices=NORMS, default=None)
    n.add_argument("--no_dropout", action="store_true", default=None)
    n.add_argument("--input_nc", type=positive_int, default=None)
    n.add_argument("--output_nc", type=positive_int, default=None)
    n.add_argument("--direction", choices=DIRECTIONS, default=None)
    n.add_argument("--preprocess", choices=PREPROCESS_MODES, default=None)
    n.add_argument("--load_size", type=positive_int, default=None)
    n.add_argument("--crop_size", type=positive_int, default=None, help="the exported input size S")
    return p


def _export(argv: Sequence[str] | None) -> int:
    from pix2pix_tr.data.errors import DatasetError
    from pix2pix_tr.safe_load import NonFiniteStateError

    opt = export_parser().parse_args(argv)
    if opt.epoch != "latest" and not opt.epoch.isdigit():
        export_parser().error(f"--epoch must be 'latest' or an epoch number, got {opt.epoch!r}")
    options = {k: getattr(opt, k) for k in ("netG", "ngf", "norm", "no_dropout", "input_nc", "output_nc",
                                            "direction", "preprocess", "load_size", "crop_size")}
    try:
        run_dir = join_name(opt.checkpoints_dir, opt.name)
        result = export_generator(run_dir, opt.format, opt.output, epoch=opt.epoch, eval_mode=opt.eval,
                                  options=options)
    except (PathError, DatasetError, NonFiniteStateError) as exc:
        raise InferenceError(str(exc)) from exc
    mode = "eval (running statistics, no dropout)" if opt.eval else "train (batch statistics" + (
        ", dropout on: every run draws new masks)" if result["random"] else ")")
    checked = (f"checked against PyTorch: max abs difference {result['max_abs_diff']:.2g}" if result["checked"]
               else result.get("note", "not checked"))
    print(f"wrote {result['output']} ({opt.format}, {mode}): input float32 (N, {result['input_nc']}, "
          f"{result['size']}, {result['size']}) in [-1, 1], output (N, {result['output_nc']}, {result['size']}, "
          f"{result['size']}) in [-1, 1]; {checked}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``pix2pix-tr-export``: one sentence and exit status 2 on bad input, 3 on a full disk."""
    return run_cli(_export, argv, user_errors=InferenceError, prog="pix2pix-tr-export")


if __name__ == "__main__":
    sys.exit(main())
