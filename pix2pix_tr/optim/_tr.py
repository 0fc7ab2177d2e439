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

from . import _compat

#: the two definitions of the proximal coefficient c (see :func:`coefficient`)
TR_MODES = ("paper", "reference")
#: the TR hyper-parameters: constructor arguments, group defaults, overridable per param group like ``lr``
TR_KEYS = ("tr_lambda", "tr_period", "tr_inner_decay", "tr_mode")
#: what the optimizer keeps per param group: the step counter n and the initial lr lr0 of reference mode
TR_GROUP_STATE_KEYS = ("tr_step", "tr_lr0")
#: what the optimizer keeps per parameter: the anchor and the cycle n // S it belongs to
TR_PARAM_STATE_KEYS = ("tr_anchor", "tr_cycle")


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
    if "tr_lr0" not in group:  # (not setdefault: reading a tensor lr of a loaded group would be a host read)
        # lr0 is the group's initial lr: a scheduler records it as "initial_lr" (present when a plain torch
        # optimizer's state_dict with a schedule is loaded, where "lr" may already be decayed)
        group["tr_lr0"] = _as_float(group.get("initial_lr", group["lr"]))
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


def coefficient(group: dict, lr: Any, *, where: str) -> Any:
    """The proximal coefficient c of ``group`` at the scheduler's lr ``lr``: the one place that defines it.

    ``"paper"``: ``c = tr_lambda``. ``"reference"`` (the authors' released code): ``c = 2 * tr_lambda * lr0 / lr``.
    ``lr`` is a Python number, or (capturable groups) a tensor on the device, in which case c is one too and an lr
    of 0 gives inf (it cannot be checked without a host read)."""
    if group["tr_mode"] == "paper":
        return group["tr_lambda"]
    if not isinstance(lr, Tensor) and lr == 0:
        raise ValueError(
            f"{where}: tr_mode='reference' divides by the current lr (c = 2*tr_lambda*lr0/lr) but a param "
            f"group's lr is 0; use tr_mode='paper' or a schedule whose lr stays > 0."
        )
    return 2.0 * group["tr_lambda"] * group["tr_lr0"] / lr


# ----------------------------------------------------------------------------- one step of one group
@dataclass
class InnerStep:
    """The TR numbers and tensors of one param group for one step (computed before the base update)."""

    group: dict
    k: int
    cycle: Any  # n // S (an int64 tensor on the device for capturable groups)
    c: float  # proximal coefficient the caller still has to apply (0.0 at k == 0, and for capturable groups)
    lr: Any  # the scheduler's lr
    lr_eff: Any  # lr / (k + 1)
    params: list = field(default_factory=list)  # params with a grad
    grads: list = field(default_factory=list)
    anchors: list = field(default_factory=list)  # aligned with params
    new_anchor: list = field(default_factory=list)  # bools: anchor tensor created this step
    stale: tuple = ((), ())  # (anchors, weights) still to copy
    kernel_eps: tuple | None = None  # TRAdam reference mode: (Adam step t, the eps its kernel gets)

    def copy_stale(self) -> None:
        if self.stale[0]:
            foreach_copy_(*self.stale)
        self.stale = ((), ())


def begin_step(group: dict, state: dict, tr_defaults: dict, *, where: str, copy_stale: bool = True) -> InnerStep:
    """Compute k, c, lr_eff for ``group`` and make every anchor current (copying weights if needed).

    Anchors are not stored into ``state`` here (see :func:`finish_step`); new anchor tensors are
    allocated once per parameter, stale ones are refreshed in place with one foreach copy (or, with
    ``copy_stale=False``, by the caller: ``inner.copy_stale()``, or a kernel that writes the anchor).
    """
    if "tr_step" not in group:  # a group added straight to a wrapped base optimizer, or appended by hand
        init_group(group, tr_defaults, where=where)
    period = group["tr_period"]
    n = group["tr_step"]
    k = n % period
    cycle = n // period
    lr = group["lr"]
    lr_eff = lr / (k + 1) if group["tr_inner_decay"] else lr
    c = coefficient(group, _as_float(lr) if group["tr_mode"] == "reference" else lr, where=where)
    inner = InnerStep(group=group, k=k, cycle=cycle, c=c if k != 0 else 0.0, lr=lr, lr_eff=lr_eff)

    stale_dst, stale_src = [], []
    for p, st, anchor, new in _stepped(inner, state, where):
        if not new and st.get("tr_cycle") != cycle:
            stale_dst.append(anchor)
            stale_src.append(p.detach())
    inner.stale = (stale_dst, stale_src)
    if copy_stale:
        inner.copy_stale()
    return inner


def _stepped(inner: InnerStep, state: dict, where: str):
    """Yield ``(p, state[p], anchor, new)`` for the parameters of ``inner.group`` that have a grad, recording them
    in ``inner``; a parameter's first anchor is allocated here as a copy of its weights (``new`` is True)."""
    for p in inner.group["params"]:
        if p.grad is None:
            continue
        if p.grad.is_sparse:
            raise RuntimeError(f"{where}: sparse gradients are not supported; use a dense embedding.")
        st = state[p]
        anchor = st.get("tr_anchor")
        new = anchor is None
        if new:
            anchor = p.detach().clone(memory_format=torch.preserve_format)
        inner.params.append(p)
        inner.grads.append(p.grad)
        inner.anchors.append(anchor)
        inner.new_anchor.append(new)
        yield p, st, anchor, new


def finish_step(inner: InnerStep, state: dict) -> None:
    """Store new anchors and cycle tags, advance the counter (in place on the device when capturable)."""
    on_device = isinstance(inner.cycle, Tensor)
    for p, anchor, new in zip(inner.params, inner.anchors, inner.new_anchor):
        st = state[p]
        if new:
            st["tr_anchor"] = anchor
        if on_device and isinstance(st.get("tr_cycle"), Tensor):
            st["tr_cycle"].copy_(inner.cycle)
        else:
            st["tr_cycle"] = inner.cycle.clone() if on_device else inner.cycle
    if on_device:
        inner.group["tr_step"].add_(1)
    else:
        inner.group["tr_step"] = inner.group["tr_step"] + 1


def fold_proximal_(inner: InnerStep, *, decoupled: bool) -> float:
    """Fold this step's proximal term into the grads; return the extra (coupled) weight decay for the kernel.

    ``g + c (w - a) + wd w == (g - c a) + (c + wd) w``: the grads get ``-c a`` (``+c a`` with maximize, whose kernel
    negates the grad before adding the decay) in one in-place foreach op and the kernel gets ``wd + c``. A group
    with AdamW-style decoupled decay (its kernel's decay is not L2) gets ``+c w`` in the grads instead."""
    c = inner.c
    if c == 0.0 or not inner.params:
        return 0.0
    sign = 1.0 if inner.group["maximize"] else -1.0
    foreach_add_(inner.grads, inner.anchors, alpha=sign * c)
    if decoupled:
        foreach_add_(inner.grads, inner.params, alpha=-sign * c)
        return 0.0
    return c


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
        _compat.foreach_copy_(d, s)


def foreach_add_(dst: list, other: list, alpha: float) -> None:
    """dst[i] += alpha * other[i], in place, no allocation."""
    for d, o in _grouped([dst, other]):
        _compat.foreach_add_(d, o, alpha=alpha)


def add_prox_exact_(grads: list, params: list, anchors: list, c: float | Tensor, sign: float = 1.0) -> None:
    """grads[i] += sign * c * (params[i] - anchors[i]) computed as written (allocates one temporary list).

    Used by the generic wrapper, whose base optimizer does its own weight decay, so the proximal term
    cannot be folded into the base's weight decay as TRAdam/TRSGD do, and by capturable groups, whose ``c`` may
    be a tensor on the device.
    """
    for g, p, a in _grouped([grads, params, anchors]):
        diff = _compat.foreach_sub(p, a)
        if isinstance(c, Tensor):
            _compat.foreach_mul_(diff, c.to(diff[0].dtype))
            _compat.foreach_add_(g, diff, alpha=sign)
        else:
            _compat.foreach_add_(g, diff, alpha=sign * c)


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


def make_capturable(group: dict, state: dict | None = None) -> None:
    """Put a capturable group's counter and lr on its device as tensors (idempotent; not during capture), and with
    ``state`` its parameters' cycle tags too (int64 again: a checkpoint load casts them to the parameter's dtype).
    Moves tensors, never reads them on the host."""
    device = device_of(group)
    n = group["tr_step"]
    if not isinstance(n, Tensor):
        group["tr_step"] = torch.tensor(n, dtype=torch.int64, device=device)
    elif n.device != device or n.dtype != torch.int64:
        group["tr_step"] = n.to(device=device, dtype=torch.int64)
    lr = group["lr"]
    if not isinstance(lr, Tensor) or lr.device != device:  # float64 for float64 parameters, else float32
        wide = any(p.dtype == torch.float64 for p in group["params"])
        dtype = lr.dtype if isinstance(lr, Tensor) else torch.float64 if wide else torch.float32
        group["lr"] = torch.as_tensor(lr, dtype=dtype).to(device)
    if state is not None:
        for p in group["params"]:
            cyc = state[p].get("tr_cycle") if p in state else None
            if isinstance(cyc, Tensor) and (cyc.device != p.device or cyc.dtype != torch.int64):
                state[p]["tr_cycle"] = cyc.to(device=p.device, dtype=torch.int64)


def make_host_counter(group: dict, state: dict) -> None:
    """The inverse for a group that is not capturable (a capturable checkpoint loaded without it): reads the
    counters on the host, once, when the checkpoint is loaded."""
    if isinstance(group.get("tr_step"), Tensor):  # a capturable checkpoint: its lr is a tensor too
        group["tr_step"] = int(group["tr_step"].item())
        if isinstance(group.get("lr"), Tensor):
            group["lr"] = float(group["lr"].item())
    for p in group["params"]:
        cyc = state[p].get("tr_cycle") if p in state else None
        if isinstance(cyc, Tensor):
            state[p]["tr_cycle"] = int(cyc.item())


def begin_step_capturable(group: dict, state: dict, tr_defaults: dict, *, where: str) -> InnerStep:
    """Like :func:`begin_step` for a capturable group: k, lr_eff, c and the anchor refresh stay on the device.

    The anchors are made current here, and the proximal term is added to the grads here (``inner.c`` is 0 so
    that the caller adds nothing more); ``inner.cycle`` is the cycle as a device tensor."""
    if "tr_step" not in group:
        init_group(group, tr_defaults, where=where)
    make_capturable(group)
    period = group["tr_period"]
    n = group["tr_step"]
    cycle = torch.div(n, period, rounding_mode="floor")
    lr = group["lr"]
    lr_eff = lr / (torch.remainder(n, period) + 1).to(lr.dtype) if group["tr_inner_decay"] else lr
    c = coefficient(group, lr, where=where)
    inner = InnerStep(group=group, k=-1, cycle=cycle, c=0.0, lr=lr, lr_eff=lr_eff)
    for p, st, anchor, new in _stepped(inner, state, where):
        if not new:
            last = st.get("tr_cycle")
            if not isinstance(last, Tensor):
                last = st["tr_cycle"] = torch.tensor(-1 if last is None else last, device=n.device)
            anchor.lerp_(p.detach(), (cycle != last).to(anchor.dtype))
    if inner.params:  # maximize negates the grad: pull towards the anchor anyway
        add_prox_exact_(inner.grads, [p.detach() for p in inner.params], inner.anchors, c,
                        -1.0 if group.get("maximize", False) else 1.0)
    return inner


# ----------------------------------------------------------------------------- state placement
def misplaced_state(group: dict, state: dict, *, step_on_host: bool) -> tuple | None:
    """``(param index, key, where the state is, where the parameter is)`` for the first parameter-sized state tensor
    of ``group`` that is not on its parameter's device and of its dtype (None when all are), e.g. after
    ``model.to(device)`` or ``model.double()`` once the optimizer had state. 0-dim counters are left out: torch keeps
    Adam's ``step`` on the CPU for its non-fused, non-capturable kernels (``step_on_host``), and capturable groups
    move their cycle tags with :func:`make_capturable`."""
    for i, p in enumerate(group["params"]):
        for key, value in (state[p].items() if p in state else ()):
            if not isinstance(value, Tensor):
                continue
            if value.dim() == 0:
                if key == "tr_cycle" or (key == "step" and step_on_host) or value.device == p.device:
                    continue
            elif value.device == p.device and (value.dtype == p.dtype or not value.is_floating_point()):
                continue
            return i, key, f"{value.device}/{value.dtype}", f"{p.device}/{p.dtype}"
    return None


# ----------------------------------------------------------------------------- loading another optimizer's state
class OptimizerStateMismatch(ValueError):
    """An optimizer ``state_dict`` written by one kind of optimizer was loaded into another (e.g. TRAdam's into
    TRSGD). A ValueError: command-line tools report it as bad input (exit 2)."""


# distinguishing hyper-parameters of torch's optimizers, most specific first (for naming the writer only)
_FAMILIES = (
    ("NAdam", ("momentum_decay",)), ("Adadelta", ("rho",)), ("ASGD", ("lambd", "t0")), ("Rprop", ("etas",)),
    ("Adagrad", ("lr_decay", "initial_accumulator_value")), ("RMSprop", ("alpha",)), ("Adam", ("betas", "eps")),
    ("SGD", ("momentum", "dampening")),
)


def hyperparameter_keys(group_or_defaults: dict) -> set:
    """The keys that define an optimizer's update: every entry except the parameters, the TR bookkeeping, the
    scheduler's ``initial_lr`` and the on/off switches (booleans and None: implementation flags such as
    ``fused``/``foreach``/``capturable`` and options such as ``amsgrad``/``nesterov``, which torch fills in when an
    older checkpoint lacks them)."""
    return {k for k, v in group_or_defaults.items()
            if k not in ("params", "param_names", "initial_lr") and not k.startswith("tr_")
            and v is not None and not isinstance(v, bool)}


def describe_optimizer(group: dict) -> str:
    """A short name for the optimizer that wrote a param group, from its keys (e.g. "TRAdam", "torch.optim.SGD")."""
    keys = set(group)
    base = next((name for name, marks in _FAMILIES if all(m in keys for m in marks)), None)
    if "tr_step" in keys:
        return {"Adam": "TRAdam", "SGD": "TRSGD"}.get(base, f"TrajectoryRegularized({base or 'an optimizer'})")
    return f"torch.optim.{base}" if base else "another optimizer"


def check_state_kind(state_dict: Any, defaults: dict, *, loader: str) -> None:
    """Refuse, in one sentence, an optimizer ``state_dict`` whose param groups lack hyper-parameters the loading
    optimizer needs (written by another kind of optimizer), instead of a bare KeyError at the next step."""
    if not isinstance(state_dict, dict) or not isinstance(state_dict.get("param_groups"), list):
        raise OptimizerStateMismatch(
            f"{loader}: load_state_dict needs an optimizer state_dict (a dict with 'state' and 'param_groups', as "
            f"optimizer.state_dict() returns), got {type(state_dict).__name__}.")
    needed = hyperparameter_keys(defaults)
    for group in state_dict["param_groups"]:
        missing = sorted(needed - set(group)) if isinstance(group, dict) else sorted(needed)
        if missing:
            writer = describe_optimizer(group) if isinstance(group, dict) else "something else"
            raise OptimizerStateMismatch(
                f"{loader}: this optimizer state was written by {writer}, not by a {loader} (its param groups lack "
                f"{', '.join(missing)}); load it into the kind of optimizer that saved it.")
