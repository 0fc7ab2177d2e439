"""TRAdam / TRSGD bit for bit (``torch.equal``) against the same update written out around torch's own Adam / SGD.

The oracle tests (test_optim_oracle.py) check the algorithm to 1e-9 in float64; this file pins the exact floating-point
result of every implementation in float32, so that a refactoring of how a step is dispatched (which kernel, which
fold, in which order) cannot change a single bit unnoticed. The reference below shares no code with
pix2pix_tr.optim: it drives a plain ``torch.optim.Adam`` / ``SGD`` by hand, the way docs/optimizers.md says the
fast path works:

* k == 0: the anchor becomes a copy of the weights, the grad is left alone;
* k > 0: ``grad -= c * anchor`` (``+=`` with maximize) in one foreach op, and the kernel gets
  ``weight_decay = wd + c`` and ``lr = lr / (k + 1)``;
* reference mode: ``c = 2 * tr_lambda * lr0 / lr``, and TRAdam hands the kernel ``eps / sqrt(1 - beta2^t)``
  (the released TRAdam's eps placement);
* capturable: k, lr / (k + 1) and c are computed on the device from a counter tensor; the anchor is refreshed with
  ``lerp_`` and the proximal gradient ``g + c (w - anchor)`` is added exactly.

The TR side also goes through a ``state_dict()`` round trip (``torch.save``/``torch.load``) in the middle of a cycle.
"""

from __future__ import annotations

import io
import math

import pytest
import torch

from pix2pix_tr.optim import TRAdam, TRSGD

SHAPES = [(17, 9), (33,), (4, 3, 5)]
STEPS = 11
PERIOD = 4
LR0 = 0.01
LAM = 0.3
WD = 0.01


def factor(n: int) -> float:
    return 0.93 ** n


def init_params():
    gen = torch.Generator().manual_seed(0)
    return [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in SHAPES]


def grads_at(n: int):
    gen = torch.Generator().manual_seed(1000 + n)
    return [0.1 * torch.randn(s, generator=gen) for s in SHAPES]


def run_tr(make, resume_at=6):
    params = init_params()
    opt = make(params)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    for n in range(STEPS):
        if n == resume_at:
            buf = io.BytesIO()
            torch.save({"opt": opt.state_dict(), "sched": sched.state_dict()}, buf)
            buf.seek(0)
            saved = torch.load(buf, weights_only=False)
            params = [torch.nn.Parameter(p.detach().clone()) for p in params]
            opt = make(params)
            sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
            opt.load_state_dict(saved["opt"])
            sched.load_state_dict(saved["sched"])
        for p, g in zip(params, grads_at(n)):
            p.grad = g
        opt.step()
        sched.step()
    return [p.detach() for p in params]


def run_by_hand(base, params, *, mode, inner_decay=True, release_eps=False, maximize=False):
    """TRAlgo around ``base`` (a torch Adam/SGD over ``params``, one group) on torch's kernels, as in the docstring."""
    group = base.param_groups[0]
    wd0, eps0 = group["weight_decay"], group.get("eps")
    anchors = None
    for n in range(STEPS):
        k = n % PERIOD
        for p, g in zip(params, grads_at(n)):
            p.grad = g
        lr = LR0 * factor(n)
        if k == 0:
            anchors = [p.detach().clone() for p in params]
            group["weight_decay"] = wd0
        else:
            c = LAM if mode == "paper" else 2.0 * LAM * LR0 / lr
            torch._foreach_add_([p.grad for p in params], anchors, alpha=(1.0 if maximize else -1.0) * c)
            group["weight_decay"] = wd0 + c
        group["lr"] = lr / (k + 1) if inner_decay else lr
        if release_eps:
            group["eps"] = eps0 / math.sqrt(1.0 - group["betas"][1] ** float(n + 1))
        base.step()
    return [p.detach() for p in params]


def run_by_hand_capturable(base, params, *, mode, maximize=False):
    """The capturable path: counter, lr, k, c on the device; ``anchor.lerp_``; the exact proximal gradient."""
    group = base.param_groups[0]
    lr0_t = torch.tensor(LR0, dtype=torch.float32)  # lr lives on the device as a float32 tensor
    lr0 = float(lr0_t)  # the reference lr, as read back from it
    lr_t = lr0_t.clone()
    n_t = torch.tensor(0, dtype=torch.int64)
    anchors = [p.detach().clone() for p in params]
    last = torch.tensor(0, dtype=torch.int64)
    for n in range(STEPS):
        lr_t.fill_(lr0_t * factor(n))  # what LambdaLR computes for a tensor lr
        for p, g in zip(params, grads_at(n)):
            p.grad = g
        cycle = torch.div(n_t, PERIOD, rounding_mode="floor")
        for a, p in zip(anchors, params):
            a.lerp_(p.detach(), (cycle != last).to(a.dtype))
        last = cycle.clone()
        c = LAM if mode == "paper" else (2.0 * LAM * lr0) / lr_t
        diff = torch._foreach_sub([p.detach() for p in params], anchors)
        sign = -1.0 if maximize else 1.0
        if isinstance(c, torch.Tensor):
            torch._foreach_mul_(diff, c.to(diff[0].dtype))
            torch._foreach_add_([p.grad for p in params], diff, alpha=sign)
        else:
            torch._foreach_add_([p.grad for p in params], diff, alpha=sign * c)
        group["lr"] = lr_t / (torch.remainder(n_t, PERIOD) + 1).to(lr_t.dtype)
        base.step()
        n_t.add_(1)
    return [p.detach() for p in params]


def assert_bitwise(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and torch.equal(g, w), (g - w).abs().max().item()


IMPLS = {"fused": dict(fused=True), "foreach": dict(foreach=True), "forloop": dict(foreach=False, fused=False)}


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("mode", ["paper", "reference"])
@pytest.mark.parametrize("variant", ["plain", "amsgrad-maximize-no-inner-decay"])
def test_tradam_is_bitwise_the_fold_around_torch_adam(impl, mode, variant):
    extra = dict(amsgrad=True, maximize=True) if variant != "plain" else {}
    inner_decay = variant == "plain"
    kw = dict(lr=LR0, betas=(0.5, 0.999), weight_decay=WD, **extra, **IMPLS[impl])
    got = run_tr(lambda ps: TRAdam(ps, tr_lambda=LAM, tr_period=PERIOD, tr_mode=mode, tr_inner_decay=inner_decay,
                                   **kw))
    params = init_params()
    want = run_by_hand(torch.optim.Adam(params, **kw), params, mode=mode, inner_decay=inner_decay,
                       release_eps=mode == "reference", maximize=bool(extra))
    assert_bitwise(got, want)


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("mode", ["paper", "reference"])
@pytest.mark.parametrize("sgd_kw", [dict(momentum=0.9), dict(momentum=0.9, nesterov=True),
                                    dict(momentum=0.9, dampening=0.2, maximize=True), dict()],
                         ids=["momentum", "nesterov", "dampened-maximize", "plain"])
def test_trsgd_is_bitwise_the_fold_around_torch_sgd(impl, mode, sgd_kw):
    kw = dict(lr=LR0, weight_decay=WD, **sgd_kw, **IMPLS[impl])
    got = run_tr(lambda ps: TRSGD(ps, tr_lambda=LAM, tr_period=PERIOD, tr_mode=mode, **kw))
    params = init_params()
    want = run_by_hand(torch.optim.SGD(params, **kw), params, mode=mode, maximize=bool(sgd_kw.get("maximize")))
    assert_bitwise(got, want)


def test_default_implementation_is_the_fused_one_bit_for_bit():
    got = run_tr(lambda ps: TRAdam(ps, lr=LR0, tr_lambda=LAM, tr_period=PERIOD))
    want = run_tr(lambda ps: TRAdam(ps, lr=LR0, tr_lambda=LAM, tr_period=PERIOD, fused=True))
    assert_bitwise(got, want)
    got = run_tr(lambda ps: TRSGD(ps, lr=LR0, momentum=0.9, tr_lambda=LAM, tr_period=PERIOD))
    want = run_tr(lambda ps: TRSGD(ps, lr=LR0, momentum=0.9, tr_lambda=LAM, tr_period=PERIOD, fused=True))
    assert_bitwise(got, want)


@pytest.mark.parametrize("mode", ["paper", "reference"])
@pytest.mark.parametrize("maximize", [False, True])
def test_capturable_is_bitwise_the_device_side_update(mode, maximize):
    kw = dict(lr=LR0, betas=(0.5, 0.999), weight_decay=WD, maximize=maximize)
    got = run_tr(lambda ps: TRAdam(ps, tr_lambda=LAM, tr_period=PERIOD, tr_mode=mode, capturable=True, **kw))
    params = init_params()
    base = torch.optim.Adam(params, capturable=True, fused=True, **kw)
    assert_bitwise(got, run_by_hand_capturable(base, params, mode=mode, maximize=maximize))

    kw = dict(lr=LR0, momentum=0.9, nesterov=True, weight_decay=WD, maximize=maximize)
    got = run_tr(lambda ps: TRSGD(ps, tr_lambda=LAM, tr_period=PERIOD, tr_mode=mode, capturable=True, **kw))
    params = init_params()
    base = torch.optim.SGD(params, fused=True, **kw)
    assert_bitwise(got, run_by_hand_capturable(base, params, mode=mode, maximize=maximize))


def test_the_reference_is_sensitive_to_the_order_of_operations():
    """Guard: the comparison above can fail. Folding the proximal term in exactly (g + c (w - a), the same number in
    real arithmetic) instead of as ``(g - c a) + (c + wd) w`` changes the float32 result."""
    params = init_params()
    folded = run_by_hand(torch.optim.Adam(params, lr=LR0, weight_decay=WD, fused=True), params, mode="paper")
    params = init_params()
    base = torch.optim.Adam(params, lr=LR0, weight_decay=WD, fused=True)
    anchors = None
    for n in range(STEPS):
        k = n % PERIOD
        if k == 0:
            anchors = [p.detach().clone() for p in params]
        for p, g, a in zip(params, grads_at(n), anchors):
            p.grad = g + (LAM if k else 0.0) * (p.detach() - a)
        base.param_groups[0]["lr"] = LR0 * factor(n) / (k + 1)
        base.step()
    exact = [p.detach() for p in params]
    assert any(not torch.equal(a, b) for a, b in zip(folded, exact))
    for a, b in zip(folded, exact):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
