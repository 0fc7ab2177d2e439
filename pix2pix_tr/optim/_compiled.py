"""``compiled=True``: a torch.compile'd update that does the whole TR step in one pass per tensor.

Why: the default path adds the proximal term with its own foreach pass (grad -= c * anchor) before
torch's fused kernel, so it moves 10 values per element where fused Adam moves 7. A single fused loop
reads p, g, anchor, m, v and writes p, m, v: 8 values, the floor for TRAdam (8/7 of fused Adam; for
momentum SGD 6 against 5). At ``k == 0`` (c = 0) a second variant of the loop writes the anchor, the
weights before the update, instead of reading it (writing it as ``p * one``, ``one`` a runtime 1.0: a plain
``a.copy_(p)`` was scheduled by inductor after the write of ``p`` and stored the *updated* weights; the oracle
tests catch that). On the CPU the store of a value that is not read first costs a read-for-ownership, so this
step moves about 7 values per element: measured 1.75x fused SGD's step against 1.31x for the other steps,
still cheaper than the separate foreach copy it replaces (0.71x on its own).

How: one compiled function per optimizer kind loops over the (device, dtype) bucket of a param
group, with dynamic shapes on flattened (1-D) views, so inductor emits one fused loop per tensor and
the whole group costs one Python call per step (a compiled call costs ~0.1 ms of Python: one call
per tensor was 4x fused Adam on small models). It is compiled once per group structure (about a
minute for the pix2pix generator's 43 tensors on 2 busy CPU cores; inductor caches it on disk).
All per-step numbers (lr / (k + 1), c, c + weight decay, betas, Adam's bias corrections) enter as
small tensors on the parameter's device, so a changing lr or step count never recompiles. They are
computed outside the elementwise loop (inside it, inductor evaluated the bias corrections' powers
per element: 3.7x slower); on an accelerator from the step tensor on the device, with no
host-device sync. The state has torch's own keys and layout (``exp_avg``, ``exp_avg_sq``,
``max_exp_avg_sq``, ``step``, ``momentum_buffer``), so checkpoints move freely between the compiled,
fused and foreach modes.

If compilation fails (no C++ compiler, an unsupported device), a warning is issued and the very same
functions run eagerly from then on: the results stay exact, only slower.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor


# ----------------------------------------------------------------------------- math (plain torch)
def _opmath(t: Tensor, like: Tensor) -> Tensor:
    return t if t.dtype == like.dtype else t.to(like.dtype)


def _refresh_anchor(a, pf, one):
    # At k == 0 the anchor becomes the weights *before* this update. Written as pf * one (one: a runtime 1.0)
    # so that inductor stores it from inside the fused loop; a plain a.copy_(p) was moved after the write of
    # p and stored the *updated* weights (seen with torch 2.14's inductor).
    a.copy_((pf * one).to(a.dtype))


def _adam_math(p, g, a, m, v, vmax, s, amsgrad: bool, refresh: bool):
    # s = [1.0, c, c + weight_decay, beta1, beta2, eps, sign, lr_eff / bias_correction1,
    #      1 / sqrt(bias_correction2)]: per-step numbers, computed outside the elementwise loop
    c, c_wd, b1, b2, eps, sign = s[1], s[2], s[3], s[4], s[5], s[6]
    step_size, inv_bc2_sqrt = s[7], s[8]
    pf = _opmath(p, s)
    if refresh:  # k == 0: c == 0, the anchor is written, not read
        _refresh_anchor(a, pf, s[0])
        d = sign * _opmath(g, s) + c_wd * pf
    else:  # g + c (w - a) + wd w, as (c + wd) w - c a: fewer operations per element
        d = sign * _opmath(g, s) + c_wd * pf - c * _opmath(a, s)
    m_new = _opmath(m, s) * b1 + (1 - b1) * d
    v_new = _opmath(v, s) * b2 + (1 - b2) * d * d
    m.copy_(m_new)
    v.copy_(v_new)
    if amsgrad:
        v_new = torch.maximum(_opmath(vmax, s), v_new)
        vmax.copy_(v_new)
    denom = v_new.sqrt() * inv_bc2_sqrt + eps
    p.copy_(pf - step_size * m_new / denom)


def _sgd_math(p, g, a, buf, s, nesterov: bool, has_momentum: bool, refresh: bool):
    # s = [lr_eff, c, c + weight_decay, momentum, dampening, sign, 1.0]
    lr, c, c_wd, mom, damp, sign = s[0], s[1], s[2], s[3], s[4], s[5]
    pf = _opmath(p, s)
    if refresh:
        _refresh_anchor(a, pf, s[6])
        d = sign * _opmath(g, s) + c_wd * pf
    else:
        d = sign * _opmath(g, s) + c_wd * pf - c * _opmath(a, s)
    if has_momentum:
        b = _opmath(buf, s) * mom + (1 - damp) * d
        buf.copy_(b)
        d = d + mom * b if nesterov else b
    p.copy_(pf - lr * d)


# One function per variant, over the lists of a (device, dtype) bucket: one call per step instead of
# one per tensor (a compiled call costs ~0.1 ms of Python; per tensor that was 4x fused Adam on small
# models). Dynamo compiles one graph per list structure, i.e. per optimizer, and its recompile limit
# counts per code object.
# ``refresh`` (k == 0: write the anchors inside the loop) is a Python bool: Dynamo compiles one graph for
# each value.
def _adam(P, G, A, M, V, S, refresh: bool):
    for p, g, a, m, v, s in zip(P, G, A, M, V, S):
        _adam_math(p, g, a, m, v, None, s, False, refresh)


def _adam_shared(P, G, A, M, V, s, refresh: bool):  # every tensor at the same Adam step: one scalar tensor
    for p, g, a, m, v in zip(P, G, A, M, V):
        _adam_math(p, g, a, m, v, None, s, False, refresh)


def _amsgrad(P, G, A, M, V, VM, S, refresh: bool):
    for p, g, a, m, v, vm, s in zip(P, G, A, M, V, VM, S):
        _adam_math(p, g, a, m, v, vm, s, True, refresh)


def _sgd(P, G, A, B, s, nesterov: bool, has_momentum: bool, refresh: bool):
    for p, g, a, b in zip(P, G, A, B):
        _sgd_math(p, g, a, b, s, nesterov, has_momentum, refresh)


_EAGER = {f.__name__: f for f in (_adam, _adam_shared, _amsgrad, _sgd)}
_COMPILED: dict = {}
_FAILED = False


def _kernel(name: str):
    global _FAILED
    if _FAILED:
        return _EAGER[name]
    fn = _COMPILED.get(name)
    if fn is None:
        fn = _COMPILED[name] = torch.compile(_EAGER[name], dynamic=True, fullgraph=True)
    return fn


def _call(name: str, *args):
    global _FAILED
    try:
        _kernel(name)(*args)
    except Exception as exc:  # compilation problems surface at the first call, before any write
        if _FAILED:
            raise
        _FAILED = True
        warnings.warn(f"TR optimizers: compiled=True could not compile its kernel ({type(exc).__name__}: "
                      f"{str(exc).splitlines()[0] if str(exc) else ''}); running the same update eagerly.",
                      RuntimeWarning, stacklevel=3)
        _EAGER[name](*args)


def _flat(*tensors):
    """1-D views when every tensor is contiguous (one compiled graph for all sizes), else as is."""
    if all(t is None or t.is_contiguous() for t in tensors):
        return [None if t is None else t.view(-1) for t in tensors]
    return list(tensors)


def _scalars(values, like: Tensor) -> Tensor:
    dtype = torch.float64 if like.dtype == torch.float64 else torch.float32
    return torch.tensor(values, dtype=dtype).to(like.device, non_blocking=True)


# ----------------------------------------------------------------------------- per-group steps
def adam_eligible(group: dict) -> bool:
    """Whether a TRAdam group can ever take the compiled kernel (decided once per group, see tradam.GroupPlan): not
    differentiable, not capturable (its own device-side path), not AdamW-style decay, not reference mode (the
    kernel has torch's eps placement, reference mode the release's)."""
    return not (group.get("differentiable") or group.get("capturable") or group.get("decoupled_weight_decay")
                or group["tr_mode"] == "reference")


def adam_state_ready(group: dict, state, params) -> bool:
    """Per step: the compiled kernel needs torch's Adam state to exist (a parameter's first step goes through torch)."""
    return all("exp_avg" in state[p] and not torch.is_complex(p) for p in params)


def _buckets(inner):
    out: dict = {}
    for p, g, a in zip(inner.params, inner.grads, inner.anchors):
        out.setdefault((p.device, p.dtype), []).append((p, g, a))
    return out.values()


def _refresh_in_loop(inner) -> bool:
    """True at a cycle start (k == 0: every anchor is rewritten inside the loop, 6 values per element for SGD
    instead of 5 + 2 for a separate copy); otherwise anchors made lazily stale are copied first."""
    if inner.k == 0:
        inner.stale = ((), ())
        return True
    inner.copy_stale()
    return False


def adam_group_step(group: dict, state, inner) -> None:
    """One TRAdam step of ``group`` on the compiled kernel (``inner``: the step's TR numbers and tensors)."""
    b1, b2 = group["betas"]
    sign = -1.0 if group["maximize"] else 1.0
    amsgrad = group["amsgrad"]
    refresh = _refresh_in_loop(inner)
    base = [1.0, inner.c, inner.c + group["weight_decay"], b1, b2, group["eps"], sign]
    for bucket in _buckets(inner):
        steps = []
        for p, _, _ in bucket:
            step = state[p]["step"]
            step.add_(1)  # torch's layout: a float tensor per parameter (on p's device when fused)
            steps.append(step)
        tensors = [[p.detach(), g, a, state[p]["exp_avg"], state[p]["exp_avg_sq"]]
                   + ([state[p]["max_exp_avg_sq"]] if amsgrad else []) for p, g, a in bucket]
        cols = [list(col) for col in zip(*(_flat(*ts) for ts in tensors))]
        like = bucket[0][0]
        if all(step.device.type == "cpu" for step in steps):  # reading them is free
            ts = [float(step.item()) for step in steps]
            scal = {t: _scalars(base + [float(inner.lr_eff) / (1 - b1 ** t), 1 / math.sqrt(1 - b2 ** t)], like)
                    for t in set(ts)}
            if len(scal) == 1 and not amsgrad:  # the usual case: one small tensor for the bucket
                _call("_adam_shared", *cols, scal[ts[0]], refresh)
                continue
            per_tensor = [scal[t].clone() for t in ts]  # distinct tensors: no aliasing for Dynamo to guard
        else:  # on an accelerator: compute them there, no host-device sync
            head = _scalars(base, like)
            lr_eff = float(inner.lr_eff)
            per_tensor = [torch.cat([head, torch.stack([lr_eff / (1 - b1 ** t), (1 - b2 ** t).rsqrt()])])
                          for t in (step.to(head.dtype) for step in steps)]
        _call("_amsgrad" if amsgrad else "_adam", *cols, per_tensor, refresh)


def sgd_eligible(group: dict) -> bool:
    """Whether a TRSGD group can ever take the compiled kernel: not differentiable, not capturable."""
    return not (group.get("differentiable") or group.get("capturable"))


def sgd_state_ready(group: dict, state, params) -> bool:
    """Per step: with momentum, every parameter needs its buffer (its first step goes through torch)."""
    if group["momentum"] == 0:
        return True
    return all(state[p].get("momentum_buffer") is not None for p in params)


def sgd_group_step(group: dict, state, inner) -> None:
    """One TRSGD step of ``group`` on the compiled kernel (``inner``: the step's TR numbers and tensors)."""
    sign = -1.0 if group["maximize"] else 1.0
    has_momentum = group["momentum"] != 0
    refresh = _refresh_in_loop(inner)
    for bucket in _buckets(inner):
        s = _scalars([float(inner.lr_eff), inner.c, inner.c + group["weight_decay"], group["momentum"],
                      group["dampening"], sign, 1.0], bucket[0][0])
        cols: list = [[], [], [], []]
        for p, g, a in bucket:
            buf = state[p].get("momentum_buffer") if has_momentum else None
            for col, t_ in zip(cols, _flat(p.detach(), g, a, buf)):
                col.append(t_)
        _call("_sgd", *cols, s, group["nesterov"], has_momentum, refresh)
