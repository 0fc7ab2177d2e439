"""TRAdam / TRSGD / TrajectoryRegularized against a direct float64 transcription of Algorithm 1.

The oracle below is written from the paper (Algorithm 1 + Definition 1) and DESIGN.md, with Adam and
momentum SGD spelled out by hand; it shares no code with pix2pix_tr.optim. Every run spans several
TR cycles, a LambdaLR scheduler changes lr every step, and a resumed run (state_dict round trip
through torch.save in the middle of a cycle) must match the uninterrupted one.
"""

from __future__ import annotations

import io
import math
import warnings

import pytest
import torch

from pix2pix_tr.optim import TRAdam, TRSGD, TrajectoryRegularized

DT = torch.float64
SHAPES = [(3, 4), (4,), (2, 3, 2)]
N_STEPS = 15
PERIOD = 4
LR0 = 0.05


def factor(epoch: int) -> float:
    return 0.9 ** epoch


def lr_at(n: int) -> float:
    return LR0 * factor(n)


def init_weights():
    gen = torch.Generator().manual_seed(1)
    return [torch.randn(s, generator=gen, dtype=DT) for s in SHAPES]


def grads_at(n: int, ws):
    """Gradient of a step-dependent nonlinear loss (a new 'mini-batch' each step)."""
    gen = torch.Generator().manual_seed(100 + n)
    ws = [w.detach().clone().requires_grad_(True) for w in ws]
    loss = 0.0
    for w in ws:
        target = torch.randn(w.shape, generator=gen, dtype=DT)
        loss = loss + (torch.tanh(w * 1.5) - target).pow(2).sum() + 0.3 * torch.sin(2 * w).sum()
    return list(torch.autograd.grad(loss, ws))


# ----------------------------------------------------------------------------- the oracle
def oracle(update, n_steps=N_STEPS, *, lam=0.1, period=PERIOD, mode="paper", inner_decay=True,
           wd=0.0, maximize=False):
    """Algorithm 1: anchor at k == 0, gradient g + c (w - anchor) (+ wd w), lr / (k + 1)."""
    w = init_weights()
    state = [dict() for _ in w]
    anchor = None
    for n in range(n_steps):
        k = n % period
        if k == 0:
            anchor = [t.clone() for t in w]
        g = grads_at(n, w)
        lr = lr_at(n)
        c = lam if mode == "paper" else 2 * lam * LR0 / lr
        lr_eff = lr / (k + 1) if inner_decay else lr
        for i in range(len(w)):
            d = (-g[i] if maximize else g[i]) + c * (w[i] - anchor[i]) + wd * w[i]
            w[i] = update(w[i], d, lr_eff, state[i])
    return w


def adam_update(betas=(0.9, 0.999), eps=1e-8, amsgrad=False, release=False):
    """torch's Adam; ``release=True``: the authors' TRAdam's placement of eps (TRAdam's reference mode)."""
    b1, b2 = betas

    def update(w, d, lr, st):
        st["t"] = st.get("t", 0) + 1
        st["m"] = b1 * st.get("m", torch.zeros_like(w)) + (1 - b1) * d
        st["v"] = b2 * st.get("v", torch.zeros_like(w)) + (1 - b2) * d * d
        v = st["v"]
        if amsgrad:
            st["vmax"] = torch.maximum(st.get("vmax", torch.zeros_like(w)), v)
            v = st["vmax"]
        bc1, bc2 = 1 - b1 ** st["t"], 1 - b2 ** st["t"]
        if release:
            return w - lr * math.sqrt(bc2) / bc1 * st["m"] / (v.sqrt() + eps)
        return w - lr * (st["m"] / bc1) / ((v / bc2).sqrt() + eps)

    return update


def sgd_update(momentum=0.0, dampening=0.0, nesterov=False):
    def update(w, d, lr, st):
        if momentum:
            if "buf" not in st:
                st["buf"] = d.clone()
            else:
                st["buf"] = momentum * st["buf"] + (1 - dampening) * d
            d = d + momentum * st["buf"] if nesterov else st["buf"]
        return w - lr * d

    return update


# ----------------------------------------------------------------------------- running ours
def run(make_opt, n_steps=N_STEPS, resume_at=None, check_lr=True, device="cpu", make_resumed=None):
    """Step ``make_opt(params)`` on ``device`` with a LambdaLR schedule; at ``resume_at`` the state goes through
    torch.save/load into a fresh optimizer (``make_resumed``, default the same kind). Returns CPU weights."""
    params = [torch.nn.Parameter(w.clone().to(device)) for w in init_weights()]
    opt = make_opt(params)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    for n in range(n_steps):
        if n == resume_at:
            buf = io.BytesIO()
            torch.save({"opt": opt.state_dict(), "sched": sched.state_dict()}, buf)
            buf.seek(0)
            saved = torch.load(buf, weights_only=False, map_location="cpu")
            params = [torch.nn.Parameter(p.detach().clone()) for p in params]
            opt = (make_resumed or make_opt)(params)
            sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
            opt.load_state_dict(saved["opt"])
            sched.load_state_dict(saved["sched"])
        for p, g in zip(params, grads_at(n, [p.detach().cpu() for p in params])):
            p.grad = g.to(device)
        opt.step()
        sched.step()
        if check_lr:  # the group's lr is the scheduler's (a tensor with capturable=True), never the inner one
            assert float(opt.param_groups[0]["lr"]) == pytest.approx(lr_at(n + 1), rel=1e-12)
    return [p.detach().cpu() for p in params]


def assert_close(got, want):
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-11)


IMPLS = {
    "default": {},
    "fused": {"fused": True},
    "foreach": {"foreach": True},
    "forloop": {"foreach": False, "fused": False},
}


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("mode", ["paper", "reference"])
def test_tradam_matches_oracle_across_cycles_with_scheduler_and_resume(impl, mode):
    kw = dict(lr=LR0, betas=(0.5, 0.999), weight_decay=0.01, tr_lambda=0.3, tr_period=PERIOD, tr_mode=mode)
    want = oracle(adam_update(betas=(0.5, 0.999), release=mode == "reference"), lam=0.3, mode=mode, wd=0.01)
    make = lambda ps: TRAdam(ps, **kw, **IMPLS[impl])  # noqa: E731
    assert_close(run(make), want)
    assert_close(run(make, resume_at=6), want)  # k == 2 in the second cycle


@pytest.mark.parametrize("impl", ["fused", "foreach", "forloop"])
def test_tradam_amsgrad_maximize_no_inner_decay(impl):
    kw = dict(lr=LR0, amsgrad=True, maximize=True, weight_decay=0.02, tr_lambda=0.2, tr_period=3,
              tr_inner_decay=False)
    want = oracle(adam_update(amsgrad=True), lam=0.2, period=3, inner_decay=False, wd=0.02, maximize=True)
    assert_close(run(lambda ps: TRAdam(ps, **kw, **IMPLS[impl]), resume_at=7), want)


@pytest.mark.parametrize("impl", ["fused", "foreach", "forloop"])  # default is fused wherever it can be
@pytest.mark.parametrize("mode", ["paper", "reference"])
@pytest.mark.parametrize("sgd_kw", [dict(momentum=0.9, dampening=0.1), dict(momentum=0.9, nesterov=True),
                                    dict()], ids=["dampened", "nesterov", "plain"])
def test_trsgd_matches_oracle(impl, mode, sgd_kw):
    want = oracle(sgd_update(**sgd_kw), lam=0.5, mode=mode, wd=0.01)
    make = lambda ps: TRSGD(ps, lr=LR0, weight_decay=0.01, tr_lambda=0.5, tr_period=PERIOD,  # noqa: E731
                            tr_mode=mode, **sgd_kw, **IMPLS[impl])
    assert_close(run(make), want)
    assert_close(run(make, resume_at=5), want)


def test_trsgd_maximize():
    want = oracle(sgd_update(momentum=0.5), lam=0.5, wd=0.01, maximize=True)
    got = run(lambda ps: TRSGD(ps, lr=LR0, momentum=0.5, weight_decay=0.01, tr_lambda=0.5,
                               tr_period=PERIOD, maximize=True))
    assert_close(got, want)


@pytest.mark.parametrize("mode", ["paper", "reference"])
def test_wrapper_over_adam_and_sgd_matches_oracle(mode):
    want = oracle(adam_update(amsgrad=True), lam=0.3, mode=mode, wd=0.01)
    make = lambda ps: TrajectoryRegularized(  # noqa: E731
        torch.optim.Adam(ps, lr=LR0, amsgrad=True, weight_decay=0.01), tr_lambda=0.3, tr_period=PERIOD,
        tr_mode=mode)
    assert_close(run(make), want)
    assert_close(run(make, resume_at=6), want)
    want = oracle(sgd_update(momentum=0.9), lam=0.3, mode=mode)
    make = lambda ps: TrajectoryRegularized(  # noqa: E731
        torch.optim.SGD(ps, lr=LR0, momentum=0.9), tr_lambda=0.3, tr_period=PERIOD, tr_mode=mode)
    assert_close(run(make, resume_at=9), want)


def manual_tr_around(base_cls, base_kw, *, lam, mode, maximize=False):
    """Algorithm 1 written out around a torch base optimizer that only sees the modified gradient."""
    w = [torch.nn.Parameter(t) for t in init_weights()]
    base = base_cls(w, lr=LR0, maximize=maximize, **base_kw)
    anchor = None
    for n in range(N_STEPS):
        k = n % PERIOD
        if k == 0:
            anchor = [p.detach().clone() for p in w]
        lr = lr_at(n)
        c = lam if mode == "paper" else 2 * lam * LR0 / lr
        sign = -1.0 if maximize else 1.0  # maximize negates the grad: pull towards the anchor anyway
        for p, g, a in zip(w, grads_at(n, [p.detach() for p in w]), anchor):
            p.grad = g + sign * c * (p.detach() - a)
        base.param_groups[0]["lr"] = lr / (k + 1)
        base.step()
    return [p.detach() for p in w]


@pytest.mark.parametrize("base_cls,base_kw", [
    (torch.optim.AdamW, dict(weight_decay=0.05)),
    (torch.optim.RMSprop, dict(momentum=0.5, weight_decay=0.01)),
    (torch.optim.Adagrad, dict()),
], ids=["AdamW", "RMSprop", "Adagrad"])
@pytest.mark.parametrize("maximize", [False, True])
def test_wrapper_over_other_optimizers(base_cls, base_kw, maximize):
    want = manual_tr_around(base_cls, base_kw, lam=0.3, mode="reference", maximize=maximize)
    make = lambda ps: TrajectoryRegularized(base_cls(ps, lr=LR0, maximize=maximize, **base_kw),  # noqa: E731
                                            tr_lambda=0.3, tr_period=PERIOD, tr_mode="reference")
    assert_close(run(make, resume_at=7), want)


def test_wrapper_with_adam_maximize_matches_oracle():
    want = oracle(adam_update(), lam=0.3, maximize=True)
    make = lambda ps: TrajectoryRegularized(torch.optim.Adam(ps, lr=LR0, maximize=True),  # noqa: E731
                                            tr_lambda=0.3, tr_period=PERIOD)
    assert_close(run(make), want)


def test_lambda_zero_without_inner_decay_is_plain_adam():
    want = run(lambda ps: torch.optim.Adam(ps, lr=LR0, foreach=False))
    got = run(lambda ps: TRAdam(ps, lr=LR0, tr_lambda=0.0, tr_inner_decay=False))
    assert_close(got, want)


def test_oracle_is_not_trivially_plain_adam():
    """Guard for the tests above: TR really changes the trajectory (so matching the oracle means something)."""
    plain = oracle(adam_update(), lam=0.0, inner_decay=False)
    tr = oracle(adam_update(), lam=0.3)
    ref = oracle(adam_update(), lam=0.3, mode="reference")
    assert min((a - b).abs().max().item() for a, b in zip(plain, tr)) > 1e-3
    assert min((a - b).abs().max().item() for a, b in zip(tr, ref)) > 1e-4
    assert math.isfinite(sum(t.sum().item() for t in tr))


@pytest.mark.slow
def test_compiled_mode_matches_oracle():
    """compiled=True: one torch.compile'd kernel per optimizer (first step via torch, then compiled)."""
    kw = dict(lr=LR0, betas=(0.5, 0.999), weight_decay=0.01, tr_lambda=0.3, tr_period=PERIOD,
              maximize=True)  # reference mode runs on torch's kernels (its eps placement), not the compiled one
    want = oracle(adam_update(betas=(0.5, 0.999)), lam=0.3, wd=0.01, maximize=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a fallback to eager would hide a compile failure
        assert_close(run(lambda ps: TRAdam(ps, compiled=True, **kw), resume_at=6), want)
        want = oracle(sgd_update(momentum=0.9, nesterov=True), lam=0.5, wd=0.01)
        got = run(lambda ps: TRSGD(ps, lr=LR0, momentum=0.9, nesterov=True, weight_decay=0.01, tr_lambda=0.5,
                                   tr_period=PERIOD, compiled=True))
    assert_close(got, want)
