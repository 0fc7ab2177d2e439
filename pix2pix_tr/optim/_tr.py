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
    for p in group["params"]:
        if p.grad is None:
            continue
        if p.grad.is_sparse:
            raise RuntimeError(f"{where}: sparse gradients are not supported; use a dense embedding.")
        st = state[p]
        anchor = st.get("tr_anchor")
        new = False
        if anchor is None:
            anchor = p.detach().clone(memory_format=torch.preserve_format)
            new = True
        elif st.get("tr_cycle") != cycle:
            stale_dst.append(anchor)
            stale_src.append(p.detach())
        plan.params.append(p)
        plan.grads.append(p.grad)
        plan.anchors.append(anchor)
        plan.new_anchor.append(new)
    plan.stale = (stale_dst, stale_src)
    if copy_stale:
        plan.copy_stale()
    return plan


def finish_group(plan: GroupPlan, state: dict) -> None:
    """Store new anchors and cycle tags, restore the scheduler's lr, advance the counter."""
    for p, anchor, new in zip(plan.params, plan.anchors, plan.new_anchor):
        st = state[p]
        if new:
            st["tr_anchor"] = anchor
        st["tr_cycle"] = plan.cycle
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


def add_prox_exact_(grads: list, params: list, anchors: list, c: float) -> None:
    """grads[i] += c * (params[i] - anchors[i]) computed as written (allocates one temporary list).

    Used by the generic wrapper, whose base optimizer does its own weight decay, so the proximal term
    cannot be folded into the base's weight decay as TRAdam/TRSGD do.
    """
    for g, p, a in _grouped([grads, params, anchors]):
        diff = torch._foreach_sub(p, a)
        torch._foreach_add_(g, diff, alpha=c)
