"""The Trajectory Regularized bookkeeping shared by TRAdam, TRSGD and TrajectoryRegularized.

TRAlgo (Algorithm 1 of Zhang et al., IJCAI 2019) in the terms used here:

* step ``n`` (0-based) is counted per param group in ``group["tr_step"]``; ``k = n % S`` with
  ``S = group["tr_period"]``;
* when ``k == 0`` the anchor of every parameter becomes a copy of its weights;
* the base optimizer then sees the gradient of the proximal objective
  ``G(w) = f(w) + c/2 ||w - anchor||^2``, i.e. ``g + c (w - anchor)`` (Definition 1), followed by the
  base optimizer's own coupled weight decay;
* the base update runs with ``lr_eff = lr / (k + 1)`` (``lr`` when ``tr_inner_decay`` is False).

``c = tr_lambda`` in ``"paper"`` mode and ``c = 2 * tr_lambda * lr0 / lr`` in ``"reference"`` mode
(what the authors' released code computes; ``lr0`` is the group's lr when it was added).

Where things live (so that ``state_dict()``/``load_state_dict()`` carry them with no extra code):

* ``group["tr_step"]``, ``group["tr_lr0"]`` and the per-group hyper-parameters ``tr_lambda``,
  ``tr_period``, ``tr_inner_decay``, ``tr_mode`` are param-group entries;
* ``state[p]["tr_anchor"]`` (a tensor like ``p``) and ``state[p]["tr_cycle"]`` (the cycle ``n // S``
  the anchor belongs to) are per-parameter state. They are written *after* the base optimizer's step,
  because torch optimizers such as Adam initialise their own state when ``len(state[p]) == 0``.

A parameter that had no gradient when its group's cycle began is anchored lazily, the first time it
gets a gradient in that cycle: the optimizer has not moved it since the cycle began, so its current
weights are exactly the weights at the start of the cycle (the anchor Algorithm 1 prescribes).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

TR_MODES = ("paper", "reference")
TR_KEYS = ("tr_lambda", "tr_period", "tr_inner_decay", "tr_mode")


def no_dynamo(fn):
    """Keep Dynamo out of ``fn`` (a graph break when a compiled training step calls ``step()``).

    ``torch._disable_dynamo`` is what torch.optim uses: it imports Dynamo only on first call, so
    importing this package stays cheap. Falls back to the public ``torch.compiler.disable``.
    """
    lazy = getattr(torch, "_disable_dynamo", None)
    return lazy(fn) if lazy is not None else torch.compiler.disable(fn)


def check_tr_hparams(tr_lambda: Any, tr_period: Any, tr_inner_decay: Any, tr_mode: Any, *, where: str) -> dict:
    """Validate the TR hyper-parameters and return them as a dict of group defaults.

    Raises ValueError with one sentence naming the argument and what to do.
    """
    if isinstance(tr_period, bool) or not isinstance(tr_period, numbers.Integral) or tr_period < 1:
        raise ValueError(
            f"{where}: tr_period must be a positive integer (the number of inner steps S per anchor), "
            f"got {tr_period!r}."
        )
    if isinstance(tr_lambda, bool) or not isinstance(tr_lambda, numbers.Real) or not math.isfinite(tr_lambda) \
            or tr_lambda < 0:
        raise ValueError(
            f"{where}: tr_lambda must be a finite number >= 0 (the proximal strength; the paper uses 0.1), "
            f"got {tr_lambda!r}."
        )
    if tr_mode not in TR_MODES:
        raise ValueError(
            f"{where}: tr_mode must be 'paper' (c = tr_lambda) or 'reference' (c = 2*tr_lambda*lr0/lr, "
            f"as in the authors' code), got {tr_mode!r}."
        )
    if not isinstance(tr_inner_decay, bool):
        raise ValueError(f"{where}: tr_inner_decay must be True or False, got {tr_inner_decay!r}.")
    return {
        "tr_lambda": float(tr_lambda),
        "tr_period": int(tr_period),
        "tr_inner_decay": tr_inner_decay,
        "tr_mode": tr_mode,
    }


def init_group(group: dict, tr_defaults: dict, *, where: str) -> None:
    """Fill a param group's TR entries (counter at 0, lr0 = its lr) and validate its overrides."""
    for key, value in tr_defaults.items():
        group.setdefault(key, value)
    check_tr_hparams(group["tr_lambda"], group["tr_period"], group["tr_inner_decay"], group["tr_mode"],
                     where=where)
    group.setdefault("tr_step", 0)
    # lr0 is the group's initial lr: a scheduler records it as "initial_lr" (present when a plain torch
    # optimizer's state_dict with a schedule is loaded, where "lr" may already be decayed)
    group.setdefault("tr_lr0", _as_float(group.get("initial_lr", group["lr"])))
    if group["tr_mode"] == "reference" and group["tr_lr0"] == 0:
        raise ValueError(
            f"{where}: tr_mode='reference' needs an initial lr > 0 (c = 2*tr_lambda*lr0/lr); "
            f"use tr_mode='paper' or a positive lr."
        )


def restart(groups) -> None:
    """``tr_restart()``: the next step of every group starts a new cycle (k = 0, a new anchor).

    The counter moves up to the next multiple of S (it is left alone when the next step already starts
    a cycle), so k, the cycle tags of the anchors and a checkpoint taken in between all stay consistent.
    This is what the authors' released code does at the start of every epoch (it counts inner steps
    from the epoch's first batch).
    """
    for group in groups:
        if "tr_step" not in group:
            continue
        n, period = group["tr_step"], group["tr_period"]
        nxt = (n + period - 1) // period * period
        if isinstance(n, Tensor):  # a counter kept on the device (capturable): update it in place
            n.copy_(nxt)
        else:
            group["tr_step"] = int(nxt)


def _as_float(x: Any) -> float:
    return float(x.item()) if isinstance(x, Tensor) else float(x)


@dataclass
class GroupPlan:
    """What one param group does in this step (computed before the base step)."""

    group: dict
    k: int
    cycle: int
    c: float  # proximal coefficient actually applied this step (0.0 at k == 0)
    lr: Any  # the scheduler's lr, restored after the base step
    lr_eff: Any  # lr / (k + 1)
    params: list = field(default_factory=list)  # params with a grad
    grads: list = field(default_factory=list)
    anchors: list = field(default_factory=list)  # aligned with params
    new_anchor: list = field(default_factory=list)  # bools: anchor tensor created this step
    stale: tuple = ((), ())  # (anchors, weights) still to copy

    def copy_stale(self) -> None:
        if self.stale[0]:
            foreach_copy_(*self.stale)
        self.stale = ((), ())


def plan_group(group: dict, state: dict, tr_defaults: dict, *, where: str, copy_stale: bool = True) -> GroupPlan:
    """Compute k, c, lr_eff for ``group`` and make every anchor current (copying weights if needed).

    Anchors are not stored into ``state`` here (see ``finish_group``); new anchor tensors are
    allocated once per parameter, stale ones are refreshed in place with one foreach copy (or, with
    ``copy_stale=False``, by the caller: ``plan.copy_stale()``, or a kernel that writes the anchor).
    """
    if "tr_step" not in group:  # a group added straight to a wrapped base optimizer
        init_group(group, tr_defaults, where=where)
    period = group["tr_period"]
    n = group["tr_step"]
    k = n % period
    cycle = n // period
    lr = group["lr"]
    lr_eff = lr / (k + 1) if group["tr_inner_decay"] else lr
    if group["tr_mode"] == "paper":
        c = group["tr_lambda"]
    else:
        lr_f = _as_float(lr)
        if lr_f == 0:
            raise ValueError(
                f"{where}: tr_mode='reference' divides by the current lr (c = 2*tr_lambda*lr0/lr) but a param "
                f"group's lr is 0; use tr_mode='paper' or a schedule whose lr stays > 0."
            )
        c = 2.0 * group["tr_lambda"] * group["tr_lr0"] / lr_f
    plan = GroupPlan(group=group, k=k, cycle=cycle, c=c if k != 0 else 0.0, lr=lr, lr_eff=lr_eff)

    stale_dst, stale_src = [], []
    for p, st, anchor, new in _stepped(plan, state, where):
        if not new and st.get("tr_cycle") != cycle:
            stale_dst.append(anchor)
            stale_src.append(p.detach())
    plan.stale = (stale_dst, stale_src)
    if copy_stale:
        plan.copy_stale()
    return plan


def _stepped(plan: GroupPlan, state: dict, where: str):
    """Yield ``(p, state[p], anchor, new)`` for the parameters of ``plan.group`` that have a grad, recording them
    in ``plan``; a parameter's first anchor is allocated here as a copy of its weights (``new`` is True)."""
    for p in plan.group["params"]:
        if p.grad is None:
            continue
        if p.grad.is_sparse:
            raise RuntimeError(f"{where}: sparse gradients are not supported; use a dense embedding.")
        st = state[p]
        anchor = st.get("tr_anchor")
        new = anchor is None
        if new:
            anchor = p.detach().clone(memory_format=torch.preserve_format)
        plan.params.append(p)
        plan.grads.append(p.grad)
        plan.anchors.append(anchor)
        plan.new_anchor.append(new)
        yield p, st, anchor, new


def finish_group(plan: GroupPlan, state: dict) -> None:
    """Store new anchors and cycle tags, advance the counter (in place on the device when capturable)."""
    on_device = isinstance(plan.cycle, Tensor)
    for p, anchor, new in zip(plan.params, plan.anchors, plan.new_anchor):
        st = state[p]
        if new:
            st["tr_anchor"] = anchor
        if on_device and isinstance(st.get("tr_cycle"), Tensor):
            st["tr_cycle"].copy_(plan.cycle)
        else:
            st["tr_cycle"] = plan.cycle.clone() if on_device else plan.cycle
    if on_device:
        plan.group["tr_step"].add_(1)
    else:
        plan.group["tr_step"] = plan.group["tr_step"] + 1


def _grouped(tensorlists):
    """Split aligned tensor lists by (device, dtype) so that foreach kernels accept them."""
    buckets: dict = {}
    for items in zip(*tensorlists):
        key = (items[0].device, items[0].dtype)
        bucket = buckets.setdefault(key, [[] for _ in tensorlists])
        for lst, t in zip(bucket, items):
            lst.append(t)
    return buckets.values()


def foreach_copy_(dst: list, src: list) -> None:
    for d, s in _grouped([dst, src]):
        torch._foreach_copy_(d, s)


def foreach_add_(dst: list, other: list, alpha: float) -> None:
    """dst[i] += alpha * other[i], in place, no allocation."""
    for d, o in _grouped([dst, other]):
        torch._foreach_add_(d, o, alpha=alpha)


def add_prox_exact_(grads: list, params: list, anchors: list, c: float | Tensor, sign: float = 1.0) -> None:
    """grads[i] += sign * c * (params[i] - anchors[i]) computed as written (allocates one temporary list).

    Used by the generic wrapper, whose base optimizer does its own weight decay, so the proximal term
    cannot be folded into the base's weight decay as TRAdam/TRSGD do, and by capturable groups, whose ``c`` may
    be a tensor on the device.
    """
    for g, p, a in _grouped([grads, params, anchors]):
        diff = torch._foreach_sub(p, a)
        if isinstance(c, Tensor):
            torch._foreach_mul_(diff, c.to(diff[0].dtype))
            torch._foreach_add_(g, diff, alpha=sign)
        else:
            torch._foreach_add_(g, diff, alpha=sign * c)


# ----------------------------------------------------------------------------- capturable=True
# CUDA graphs replay kernels, not Python: a captured step must not read the counter on the host. With
# capturable=True the counter (group["tr_step"]) and each anchor's cycle (state[p]["tr_cycle"]) are int64
# tensors on the parameters' device, and everything that depends on k is computed there:
#   k = n mod S, lr_eff = lr / (k + 1) (lr: a tensor, so schedulers reach a captured step), the anchor
#   refresh anchor.lerp_(w, refresh) with refresh = 1.0 when the anchor belongs to an older cycle (lerp is
#   exact at 0 and 1), and the proximal gradient g + c (w - anchor) added exactly (at a cycle start
#   w - anchor is exactly 0, so no branch is needed). No host-device synchronisation anywhere.


def device_of(group: dict) -> torch.device:
    params = group["params"]
    return params[0].device if params else torch.device("cpu")


def make_capturable(group: dict) -> None:
    """Put a capturable group's counter and lr on its device as tensors (idempotent; not during capture)."""
    device = device_of(group)
    n = group["tr_step"]
    if not isinstance(n, Tensor) or n.device != device or n.dtype != torch.int64:
        group["tr_step"] = torch.as_tensor(_as_float(n) if isinstance(n, Tensor) else n).to(
            device=device, dtype=torch.int64)
    lr = group["lr"]
    if not isinstance(lr, Tensor) or lr.device != device:  # float64 for float64 parameters, else float32
        wide = any(p.dtype == torch.float64 for p in group["params"])
        dtype = lr.dtype if isinstance(lr, Tensor) else torch.float64 if wide else torch.float32
        group["lr"] = torch.as_tensor(lr, dtype=dtype).to(device)


def make_host_counter(group: dict, state: dict) -> None:
    """The inverse for a group that is not capturable (a capturable checkpoint loaded without it)."""
    if isinstance(group.get("tr_step"), Tensor):  # a capturable checkpoint: its lr is a tensor too
        group["tr_step"] = int(group["tr_step"].item())
        if isinstance(group.get("lr"), Tensor):
            group["lr"] = float(group["lr"].item())
    for p in group["params"]:
        cyc = state[p].get("tr_cycle") if p in state else None
        if isinstance(cyc, Tensor):
            state[p]["tr_cycle"] = int(cyc.item())


def plan_group_capturable(group: dict, state: dict, tr_defaults: dict, *, where: str) -> GroupPlan:
    """Like :func:`plan_group` for a capturable group: k, lr_eff, c and the anchor refresh stay on the device.

    The anchors are made current here, and the proximal term is added to the grads here (``plan.c`` is 0 so
    that the caller adds nothing more); ``plan.cycle`` is the cycle as a device tensor."""
    if "tr_step" not in group:
        init_group(group, tr_defaults, where=where)
    make_capturable(group)
    period = group["tr_period"]
    n = group["tr_step"]
    cycle = torch.div(n, period, rounding_mode="floor")
    lr = group["lr"]
    lr_eff = lr / (torch.remainder(n, period) + 1).to(lr.dtype) if group["tr_inner_decay"] else lr
    if group["tr_mode"] == "paper":
        c: Any = group["tr_lambda"]
    else:  # 2 * lambda * lr0 / lr, from the lr tensor (an lr of 0 gives inf: use paper mode then)
        c = (2.0 * group["tr_lambda"] * group["tr_lr0"]) / lr
    plan = GroupPlan(group=group, k=-1, cycle=cycle, c=0.0, lr=lr, lr_eff=lr_eff)
    for p, st, anchor, new in _stepped(plan, state, where):
        if not new:
            last = st.get("tr_cycle")
            if not isinstance(last, Tensor):
                last = st["tr_cycle"] = torch.tensor(-1 if last is None else last, device=n.device)
            anchor.lerp_(p.detach(), (cycle != last).to(anchor.dtype))
    if plan.params:  # maximize negates the grad: pull towards the anchor anyway
        add_prox_exact_(plan.grads, [p.detach() for p in plan.params], plan.anchors, c,
                        -1.0 if group.get("maximize", False) else 1.0)
    return plan
