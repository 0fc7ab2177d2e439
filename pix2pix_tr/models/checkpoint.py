"""Matching a saved generator state_dict to the network options (shared by test.py and train.py).

:func:`load_state_dict` reads a plain state_dict safely (weights only, DDP/compile prefixes stripped, finite
values); :func:`state_shapes` / :func:`state_fits` compare its keys and shapes with a built network, and when they
disagree :func:`diagnose_mismatch` reads the architecture off the state dict itself (the first and last
convolutions, the U-Net depth, the ResNet blocks, batch-norm statistics) and names the flags to change.
:func:`generator_options` gives the :func:`~pix2pix_tr.models.define_G` arguments of a set of options.
"""

from __future__ import annotations

import argparse
import os
import re
from typing import Any, Mapping

import torch
import torch.nn as nn

from pix2pix_tr.safe_load import UnloadableCheckpointError, check_finite_state, load_weights_only

__all__ = ["CheckpointError", "generator_options", "load_state_dict", "state_shapes", "state_fits",
           "read_architecture", "diagnose_mismatch"]


class CheckpointError(ValueError):
    """A weights file that cannot be used as a generator state_dict; the message is one sentence naming it."""


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


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a plain generator state_dict with ``weights_only=True``, stripping DDP/compile prefixes.
    CheckpointError naming the file when it is not one, or when it holds NaN/inf values."""
    try:
        state = load_weights_only(path, advice="test.py needs the plain netG.state_dict() that train.py saves as "
                                               "{epoch}_net_G.pth")
    except UnloadableCheckpointError as exc:
        raise CheckpointError(str(exc)) from exc
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} is not a generator state_dict (a dict of tensors); test.py needs the "
                              f"{{epoch}}_net_G.pth files train.py saves, not training_state.pth")
    out = {}
    for key, value in state.items():
        for prefix in ("module.", "_orig_mod."):
            while key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    check_finite_state(out, path)  # a diverged run's weights would give blank images with exit status 0
    return out


def state_shapes(module_or_state: nn.Module | Mapping[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    """``{key: shape}`` of a network's state_dict, or of a state_dict."""
    items = module_or_state.state_dict().items() if isinstance(module_or_state, nn.Module) else module_or_state.items()
    return {k: tuple(v.shape) for k, v in items}


def state_fits(state_shapes: Mapping[str, tuple], net_shapes: Mapping[str, tuple]) -> bool:
    """Keys and shapes agree. A BatchNorm ``num_batches_tracked`` counter may be missing from the checkpoint
    (PyTorch < 0.4.1 saved none; many published pix2pix models lack it): ``load_state_dict(strict=True)`` then
    fills it in itself."""
    wanted = {k: v for k, v in net_shapes.items()
              if k in state_shapes or not k.endswith(".num_batches_tracked")}
    return dict(state_shapes) == wanted


def read_architecture(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, Any]:
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

    The checkpoint's options are read off its own keys and shapes (:func:`read_architecture`) and compared
    with ``gen`` option by option; ``source`` names where ``gen`` came from (for the dropout advice), ``tool``
    the command the flags are for."""
    from .networks import define_G

    ckpt = state_shapes(state)
    try:
        with torch.device("meta"):
            net = state_shapes(define_G(**gen))
    except Exception:  # noqa: BLE001 - an options set that cannot be built has no shapes to compare
        net = {}
    found = read_architecture(ckpt)
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
