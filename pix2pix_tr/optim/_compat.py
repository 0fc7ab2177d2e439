"""Every private torch API that ``pix2pix_tr.optim`` uses, in one file.

Why here and not only in ``pix2pix_tr/_torch_compat.py``: ``optim/`` is a standalone library that a user can lift
out as one folder (docs/optimizers.md, DESIGN.md), so it imports nothing from the rest of pix2pix_tr. Its torch
compatibility layer therefore lives inside it, and ``pix2pix_tr/_torch_compat.py`` re-exports these functions beside
the ones the rest of the package needs: one place to look, and the folder still lifts out whole.

Each function says what it relies on. ``tests/test_torch_compat.py`` tests each one where it touches torch, so a
torch upgrade that breaks one fails there, not in a training run. Checked on torch 2.11 and 2.14.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor
from torch.optim import SGD, Adam, Optimizer
from torch.optim.adam import adam as _adam
from torch.optim.sgd import sgd as _sgd

__all__ = [
    "fused_kernel_devices", "no_dynamo", "foreach_copy_", "foreach_add_", "foreach_sub", "foreach_mul_",
    "opt_out_of_amp_scaling", "graph_capture_health_check", "init_optimizer_shell", "adam_group_step",
    "sgd_group_step",
]


# ----------------------------------------------------------------------------- capability and tracing
def fused_kernel_devices() -> frozenset:
    """The device types that have torch's fused optimizer kernels (e.g. ``{"cpu", "cuda", ...}``).

    Relies on: ``torch.utils._foreach_utils._get_fused_kernels_supported_devices()``, the list torch.optim itself
    checks ``fused=True`` against. Without it nothing is reported, so the TR optimizers fall back to torch's own
    default kernel choice (slower, never wrong)."""
    try:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices
    except ImportError:  # pragma: no cover - exercised only by a torch that dropped it
        return frozenset()
    return frozenset(_get_fused_kernels_supported_devices())


def no_dynamo(fn: Callable) -> Callable:
    """Keep Dynamo out of ``fn`` (a graph break where a compiled training step calls ``step()``).

    Relies on: ``torch._disable_dynamo``, what torch.optim's own ``step`` uses; it imports Dynamo only when ``fn`` is
    first called, so importing the optimizers stays cheap. Falls back to the public ``torch.compiler.disable``."""
    lazy = getattr(torch, "_disable_dynamo", None)
    return lazy(fn) if lazy is not None else torch.compiler.disable(fn)


# ----------------------------------------------------------------------------- multi-tensor ops
# Relies on: ATen's multi-tensor ``torch._foreach_*`` ops, which torch.optim's foreach paths use. Each takes lists of
# tensors on one device and of one dtype (callers split their lists by (device, dtype) first); one kernel launch
# per list on an accelerator instead of one per tensor.
def foreach_copy_(dst: list, src: list) -> None:
    """``dst[i].copy_(src[i])``."""
    torch._foreach_copy_(dst, src)


def foreach_add_(dst: list, other: list, alpha: float) -> None:
    """``dst[i] += alpha * other[i]``, in place (``alpha`` a Python number)."""
    torch._foreach_add_(dst, other, alpha=alpha)


def foreach_sub(a: list, b: list) -> list:
    """``[a[i] - b[i]]``, new tensors."""
    return torch._foreach_sub(a, b)


def foreach_mul_(tensors: list, scalar: Tensor) -> None:
    """``tensors[i] *= scalar`` with ``scalar`` a 0-dim tensor on the tensors' device (no host read)."""
    torch._foreach_mul_(tensors, scalar)


# ----------------------------------------------------------------------------- optimizer internals
def opt_out_of_amp_scaling(optimizer: Optimizer) -> None:
    """Make ``GradScaler.step(optimizer)`` unscale the grads and skip a step with inf/NaN grads itself.

    Relies on: ``GradScaler.step`` reading ``optimizer._step_supports_amp_scaling`` (torch sets it True on Adam and
    SGD with ``fused=True``, whose kernels would then unscale inside the step). The TR optimizers add the proximal
    term to the grads before the kernel runs, so the kernel must never receive scaled grads."""
    optimizer._step_supports_amp_scaling = False


def graph_capture_health_check(optimizer: Optimizer) -> None:
    """torch's check at the top of ``Adam.step``: refuse to be captured in a CUDA/XPU graph unless every param group
    is capturable (and warn once when capturable groups run uncaptured).

    Relies on: ``Optimizer._accelerator_graph_capture_health_check`` (torch >= 2.10; earlier
    ``_cuda_graph_capture_health_check``); a torch with neither gets no check."""
    check = getattr(optimizer, "_accelerator_graph_capture_health_check", None) \
        or getattr(optimizer, "_cuda_graph_capture_health_check", None)
    if check is not None:
        check()


def init_optimizer_shell(optimizer: Optimizer, defaults: dict) -> None:
    """``Optimizer.__init__`` for an optimizer that keeps no param groups or state of its own (the TR wrapper, which
    reads and writes its base optimizer's).

    Relies on: ``Optimizer.__init__`` (1) setting up the step/state-dict hook tables and wrapping ``step`` with the
    hook runner, (2) assigning ``self.state`` and ``self.param_groups`` (the wrapper's properties ignore both while
    it is not ready) and (3) calling ``self.add_param_group`` for the one empty group it is given (which the wrapper
    ignores too): torch refuses an empty parameter list, not a group with no parameters."""
    Optimizer.__init__(optimizer, [{"params": []}], defaults)


def adam_group_step(optimizer: Adam, group: dict, *, lr, weight_decay: float, eps: float) -> None:
    """What ``torch.optim.Adam.step`` does for one param group, with this step's ``lr``, ``weight_decay`` and ``eps``
    given instead of the group's (the group is not modified): lazy state initialisation, then torch's Adam kernel
    (fused, foreach or for-loop, capturable or not, as the group's flags say).

    Relies on: ``Adam._init_group`` (fills the lists and creates the state; torch 2.11-2.14) and the functional
    ``torch.optim.adam.adam`` with the keyword arguments ``Adam.step`` passes. ``grad_scale``/``found_inf`` are never
    passed: the TR optimizers opt out of AMP scaling (see :func:`opt_out_of_amp_scaling`)."""
    params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps = [], [], [], [], [], []
    has_complex = Adam._init_group(optimizer, group, params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs,
                                   state_steps)
    beta1, beta2 = group["betas"]
    _adam(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, amsgrad=group["amsgrad"],
          has_complex=has_complex, beta1=beta1, beta2=beta2, lr=lr, weight_decay=weight_decay, eps=eps,
          maximize=group["maximize"], foreach=group["foreach"], capturable=group["capturable"],
          differentiable=group["differentiable"], fused=group["fused"], grad_scale=None, found_inf=None,
          decoupled_weight_decay=group.get("decoupled_weight_decay", False))


def sgd_group_step(optimizer: SGD, group: dict, *, lr, weight_decay: float, fused) -> None:
    """What ``torch.optim.SGD.step`` does for one param group, with this step's ``lr``, ``weight_decay`` and ``fused``
    given instead of the group's (the group is not modified), momentum buffers stored back into the state.

    Relies on: ``SGD._init_group`` (fills the lists; torch 2.11-2.14) and the functional ``torch.optim.sgd.sgd`` with
    the keyword arguments ``SGD.step`` passes (no ``grad_scale``/``found_inf``, as for Adam)."""
    params, grads, momentum_buffers = [], [], []
    has_sparse_grad = SGD._init_group(optimizer, group, params, grads, momentum_buffers)
    _sgd(params, grads, momentum_buffers, weight_decay=weight_decay, momentum=group["momentum"], lr=lr,
         dampening=group["dampening"], nesterov=group["nesterov"], maximize=group["maximize"],
         has_sparse_grad=has_sparse_grad, foreach=group["foreach"], fused=fused, grad_scale=None, found_inf=None)
    if group["momentum"] != 0:
        state = optimizer.state
        for p, buf in zip(params, momentum_buffers):
            state[p]["momentum_buffer"] = buf
