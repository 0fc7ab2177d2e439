"""Loading checkpoints safely, and refusing ones whose numbers are not finite.

:func:`load_weights_only` is the one ``torch.load`` of the application: always ``weights_only=True`` (a pickle
that asks to build Python objects is refused, never run), and a failure becomes one sentence in our words
(damaged/truncated file, or objects that weights-only loading refuses) instead of torch's long message cut in
the middle. :func:`nonfinite_entries` / :func:`check_finite_state` find NaN/inf in a state_dict (weights *and*
buffers such as BatchNorm's running statistics), so that a diverged run is neither saved as good nor tested.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Mapping

import torch

__all__ = ["UnloadableCheckpointError", "NonFiniteStateError", "load_weights_only", "describe_load_error",
           "nonfinite_entries", "check_finite_state"]


class UnloadableCheckpointError(ValueError):
    """The file is not a checkpoint we can load with ``weights_only=True``; the message says why, in one sentence."""


class NonFiniteStateError(ValueError):
    """A state_dict holds NaN or inf values; the message names the file and some of the tensors."""


def describe_load_error(exc: BaseException) -> str:
    """Why ``torch.load(weights_only=True)`` failed, in one clause of our words (never torch's long text)."""
    text = f"{type(exc).__name__}: {exc}".lower()
    if "global" in text:  # weights_only refused to build an object (a class, a function such as os.system)
        return ("it asks to build Python objects, which weights-only loading refuses to do (it was not saved as "
                "plain tensors and numbers, or it is not from this program)")
    if isinstance(exc, IsADirectoryError):
        return "it is a folder"
    if isinstance(exc, PermissionError):
        return "it cannot be read (permission denied)"
    if isinstance(exc, FileNotFoundError):
        return "it does not exist"
    return "it is damaged, truncated or not a torch checkpoint file"


def load_weights_only(path: str | os.PathLike, *, advice: str) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``; on failure UnloadableCheckpointError saying
    "{path} is not a checkpoint we can load safely: {why}; {advice}"."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every failure becomes one sentence naming the file
        raise UnloadableCheckpointError(f"{path} is not a checkpoint we can load safely: {describe_load_error(exc)}; "
                                        f"{advice}") from exc


def _tensors(state: Any, prefix: str = "") -> Iterable[tuple[str, torch.Tensor]]:
    if isinstance(state, torch.Tensor):
        yield prefix, state
    elif isinstance(state, Mapping):
        for key, value in state.items():
            yield from _tensors(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(state, (list, tuple)):
        for i, value in enumerate(state):
            yield from _tensors(value, f"{prefix}.{i}" if prefix else str(i))


def nonfinite_entries(state: Any) -> list[str]:
    """Names of the floating-point tensors of ``state`` (a tensor, or dicts/lists of them) holding NaN or inf.

    One device synchronisation in all: the per-tensor flags are stacked and copied to the host once."""
    named = [(name, t) for name, t in _tensors(state) if t.is_floating_point() or t.is_complex()]
    if not named:
        return []
    with torch.no_grad():
        flags = torch.stack([torch.isfinite(t).all().to(named[0][1].device) for _, t in named]).cpu()
    return [name for (name, _), ok in zip(named, flags.tolist()) if not ok]


def check_finite_state(state: Any, path: str | os.PathLike) -> None:
    """NonFiniteStateError naming ``path`` when ``state`` holds NaN/inf (weights or buffers)."""
    bad = nonfinite_entries(state)
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise NonFiniteStateError(
            f"{path} holds NaN or inf values in {len(bad)} tensor(s) ({shown}): the training that wrote it "
            f"diverged, so its images would be meaningless; test an earlier --epoch, or retrain with a lower --lr")
