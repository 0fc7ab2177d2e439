"""Loading a generator checkpoint (ours or the official pix2pix's) and matching it to the network options.

Where the network options come from, in order (:func:`network_options`):

1. ``checkpoints/NAME/train_opt.json``, written by our train.py;
2. ``checkpoints/NAME/train_opt.txt``, the official pix2pix's (and our) human-readable table
   ``----------------- Options --------------- / name: value [default: d] / ----------------- End ---``;
   the official repository's older names (``which_direction``, ``which_model_netG``, ``loadSize``, ``fineSize``,
   ``resize_or_crop``) are read too;
3. the command line alone (a folder holding only ``latest_net_G.pth``, as the official pretrained models come):
   then ``--direction`` must be given, because a silent default would synthesize the wrong way round.

Flags given on the command line always win over the file. When the checkpoint's keys or shapes disagree with
the options, :func:`diagnose_mismatch` reads the architecture off the state dict itself (the first and last
convolutions, the U-Net depth, the ResNet blocks, batch-norm statistics) and names the flags to change.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn as nn

from pix2pix_tr.safe_load import UnloadableCheckpointError, check_finite_state, load_weights_only

__all__ = ["InferenceError", "CheckpointMismatchError", "generator_options", "checkpoint_path", "load_state_dict",
           "build_generator", "diagnose_mismatch", "read_options_txt", "network_options"]

#: What older official pix2pix versions called today's options.
_LEGACY_NAMES = {"which_direction": "direction", "which_model_netG": "netG", "loadSize": "load_size",
                 "fineSize": "crop_size", "resize_or_crop": "preprocess", "which_epoch": "epoch"}
#: The network flags test.py can take from the command line when the folder has no options file.
NETWORK_FLAGS = ("--netG", "--ngf", "--norm", "--no_dropout", "--input_nc", "--output_nc", "--direction")


class InferenceError(Exception):
    """A user-facing problem with test.py's input; the message is one sentence saying what to do."""


class CheckpointMismatchError(InferenceError):
    """The checkpoint's state_dict does not fit the generator built from the options."""


# ------------------------------------------------------------------------------------------------ options
def generator_options(opt: argparse.Namespace | Mapping[str, Any]) -> dict[str, Any]:
    """The :func:`pix2pix_tr.models.define_G` arguments that decide the weights' keys and shapes."""
    get = opt.get if isinstance(opt, Mapping) else (lambda k, d=None: getattr(opt, k, d))
    norm = get("norm", "batch")
    return {
        "netG": get("netG", "unet_256"),
        "input_nc": int(get("input_nc", 3)),
        "output_nc": int(get("output_nc", 3)),
        "ngf": int(get("ngf", 64)),
        # SyncBatchNorm has the same parameters as BatchNorm; a single test process needs plain BatchNorm
        "norm": "batch" if norm == "syncbatch" else norm,
        "use_dropout": not bool(get("no_dropout", False)),
    }


def _txt_value(text: str) -> Any:
    text = text.strip()
    if text in ("True", "False"):
        return text == "True"
    if text == "None":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def read_options_txt(path: str | os.PathLike) -> dict[str, Any]:
    """The options in a ``train_opt.txt`` (the official pix2pix's format, which our train.py writes too).

    One ``name: value`` per line between the ``Options`` and ``End`` rulers, each optionally followed by
    ``[default: d]``; values become bool/int/float/None where they read as such. Raises InferenceError naming
    the file when no option line is found."""
    options: dict[str, Any] = {}
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        match = re.match(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*:\s?(.*?)\s*(\[default: .*\])?\s*$", line)
        if match is None or line.lstrip().startswith("-"):
            continue
        key, value = match.group(1), _txt_value(match.group(2))
        options[_LEGACY_NAMES.get(key, key)] = value
    if not options:
        raise InferenceError(f"{path} holds no 'name: value' option lines; restore the train_opt.txt the training "
                             f"wrote, or remove it and pass the network options ({' '.join(NETWORK_FLAGS)}) to "
                             f"test.py")
    return options


def network_options(checkpoint_dir: Path, opt: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """The training options of a run and where they came from (see the module docstring).

    Returns ``(options, source)``; ``source`` is a phrase for the "network options from ..." line."""
    from pix2pix_tr.options import load_train_options

    json_path, txt_path = checkpoint_dir / "train_opt.json", checkpoint_dir / "train_opt.txt"
    if json_path.is_file():
        try:
            return load_train_options(checkpoint_dir), str(json_path)
        except ValueError as exc:
            raise InferenceError(f"{json_path} is not valid JSON ({exc}): restore it, or delete it so that "
                                 f"train_opt.txt or the command line gives the network options") from exc
    if txt_path.is_file():
        return read_options_txt(txt_path), f"{txt_path} (the official pix2pix's format)"
    if not checkpoint_dir.is_dir():
        raise InferenceError(f"no experiment folder {checkpoint_dir}: check --name and --checkpoints_dir")
    if getattr(opt, "direction", None) is None:
        raise InferenceError(
            f"{checkpoint_dir} has neither train_opt.json (ours) nor train_opt.txt (the official pix2pix's), so the "
            f"network options must come from the command line: pass at least --direction AtoB or BtoA, plus any of "
            f"--netG --ngf --norm --no_dropout that differ from pix2pix's defaults (unet_256, 64, batch, dropout)")
    return {}, "the command line (no train_opt.json or train_opt.txt; unset options take pix2pix's defaults)"


# ------------------------------------------------------------------------------------------------ the checkpoint
def checkpoint_path(checkpoint_dir: str | os.PathLike, epoch: str | int) -> Path:
    """``checkpoint_dir/{epoch}_net_G.pth``; a InferenceError listing the saved epochs if it is missing."""
    checkpoint_dir = Path(checkpoint_dir)
    path = checkpoint_dir / f"{epoch}_net_G.pth"
    if not path.is_file():
        if not checkpoint_dir.is_dir():
            raise InferenceError(f"no experiment folder {checkpoint_dir}: check --name and --checkpoints_dir")
        saved = sorted((p.name[: -len("_net_G.pth")] for p in checkpoint_dir.glob("*_net_G.pth")),
                       key=lambda e: (not e.isdigit(), int(e) if e.isdigit() else 0, e))
        hint = f"saved epochs: {', '.join(saved)}" if saved else "no *_net_G.pth there at all"
        raise InferenceError(f"checkpoint {path} not found ({hint}): pick one with --epoch")
    return path


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a plain generator state_dict with ``weights_only=True``, stripping DDP/compile prefixes."""
    try:
        state = load_weights_only(path, advice="test.py needs the plain netG.state_dict() that train.py saves as "
                                               "{epoch}_net_G.pth")
    except UnloadableCheckpointError as exc:
        raise InferenceError(str(exc)) from exc
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InferenceError(f"{path} is not a generator state_dict (a dict of tensors); test.py needs the "
                             f"{{epoch}}_net_G.pth files train.py saves, not training_state.pth")
    out = {}
    for key, value in state.items():
        for prefix in ("module.", "_orig_mod."):
            while key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    check_finite_state(out, path)  # a diverged run's weights would give blank images with exit status 0
    return out


def _shapes(module_or_state) -> dict[str, tuple[int, ...]]:
    items = module_or_state.state_dict().items() if isinstance(module_or_state, nn.Module) else module_or_state.items()
    return {k: tuple(v.shape) for k, v in items}


def _fits(state_shapes: Mapping[str, tuple], net_shapes: Mapping[str, tuple]) -> bool:
    """Keys and shapes agree. A BatchNorm ``num_batches_tracked`` counter may be missing from the checkpoint
    (PyTorch < 0.4.1 saved none; many published pix2pix models lack it): ``load_state_dict(strict=True)`` then
    fills it in itself."""
    wanted = {k: v for k, v in net_shapes.items()
              if k in state_shapes or not k.endswith(".num_batches_tracked")}
    return dict(state_shapes) == wanted


def _read_architecture(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, Any]:
    """What a generator state dict says about its options, read off its keys and shapes (nothing is built).

    Keys as :mod:`pix2pix_tr.models.networks` (and the official pix2pix) name them: a U-Net nests
    ``model.model.1.model...`` once per level (6, 7, 8 levels = unet_64/128/256); a ResNet generator has
    ``model.N.conv_block...`` per block, whose second convolution moves from index 5 to 6 with dropout."""
    convs = [(k, s) for k, s in shapes.items() if len(s) == 4 and k.endswith(".weight")]
    if not convs:
        return {}
    found: dict[str, Any] = {}
    first_key, first = convs[0]
    last = convs[-1][1]
    found["ngf"], found["input_nc"] = first[0], first[1]
    blocks = {m.group(1) for k in shapes for m in [re.match(r"^model\.(\d+)\.conv_block\.", k)] if m}
    if blocks:
        found["netG"] = f"resnet_{len(blocks)}blocks"
        found["output_nc"] = last[0]
        second = {m.group(1) for k, _ in convs for m in [re.search(r"\.conv_block\.(\d+)\.weight$", k)] if m}
        if second & {"5", "6"}:
            found["use_dropout"] = "6" in second
    elif first_key.startswith("model.model."):
        levels = max(k.split(".").count("model") for k in shapes) - 1
        found["netG"] = f"unet_{2 ** levels}"
        found["output_nc"] = last[1]  # the outermost ConvTranspose2d: (in, out, k, k)
    found["norm"] = "batch" if any(k.endswith(".running_mean") for k in shapes) else "instance"
    return found


def _flag(key: str, value: Any) -> str:
    if key == "use_dropout":
        return "--no_dropout" if not value else "(dropout on)"
    return f"--{key} {value}"


def diagnose_mismatch(state: Mapping[str, torch.Tensor], gen: Mapping[str, Any], *, source: str = "",
                      tool: str = "test.py") -> str:
    """Explain why ``state`` does not fit ``define_G(**gen)``: which options to change, else which keys differ.

    The checkpoint's options are read off its own keys and shapes (:func:`_read_architecture`) and compared
    with ``gen`` option by option; ``source`` names where ``gen`` came from (for the dropout advice), ``tool``
    the command the flags are for."""
    from pix2pix_tr.models import define_G

    ckpt = _shapes(state)
    try:
        with torch.device("meta"):
            net = _shapes(define_G(**gen))
    except Exception:  # noqa: BLE001 - an options set that cannot be built has no shapes to compare
        net = {}
    found = _read_architecture(ckpt)
    diff = {k: found[k] for k in ("netG", "ngf", "norm", "input_nc", "output_nc", "use_dropout")
            if k in found and gen[k] != found[k] and not (k == "norm" and (gen[k], found[k]) == ("none", "instance"))}
    built = ", ".join(_flag(k, gen[k]) for k in ("netG", "ngf", "norm", "input_nc", "output_nc"))
    missing = [k for k in net if k not in ckpt and not k.endswith(".num_batches_tracked")]
    unexpected = [k for k in ckpt if k not in net]
    wrong = [f"{k} {ckpt[k]} vs {net[k]}" for k in net if k in ckpt and ckpt[k] != net[k]]
    detail = "; ".join(
        f"{label}: {len(items)} (e.g. {', '.join(items[:2])})"
        for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", wrong))
        if items)
    if diff:
        changes = ", ".join(f"{k} {gen[k]} -> {v}" for k, v in diff.items())
        flags = " ".join(_flag(k, v) for k, v in diff.items() if k != "use_dropout" or not v)
        todo = [f"pass {flags} to {tool}"] if flags else []
        if diff.get("use_dropout") and tool == "test.py":
            todo.append(f'set "no_dropout": false in {source or "train_opt.json"} (the checkpoint has dropout)')
        elif diff.get("use_dropout"):
            todo.append("drop --no_dropout (the checkpoint has dropout)")
        note = " (the checkpoint has no batch-norm statistics: --norm instance or none)" \
            if diff.get("norm") == "instance" else ""
        return (f"the checkpoint was trained with different generator options ({changes}){note}; "
                f"{' and '.join(todo)}; built {built}; {detail}")
    return (f"the checkpoint does not fit the generator built with {built}, and its keys and shapes do not say "
            f"which option differs; check --name/--epoch ({detail})")


def build_generator(gen: Mapping[str, Any], state: Mapping[str, torch.Tensor], *,
                    source: str = "the checkpoint", options_source: str = "") -> nn.Module:
    """``define_G(**gen)`` with ``state`` loaded (strictly); CheckpointMismatchError explaining a misfit."""
    from pix2pix_tr.models import define_G

    try:
        net = define_G(**gen, init_type="normal", init_gain=0.02)
    except ValueError as exc:
        raise InferenceError(f"cannot build the generator: {exc}") from exc
    if not _fits(_shapes(state), _shapes(net)):
        raise CheckpointMismatchError(f"{source} does not fit: {diagnose_mismatch(state, gen, source=options_source)}")
    net.load_state_dict(state, strict=True)
    return net
