"""TRAdam / TRSGD / TrajectoryRegularized against a direct float64 transcription of Algorithm 1.

The oracle (in tests/conftest.py, shared with test_optim_capturable.py) is written from the paper
(Algorithm 1 + Definition 1) and DESIGN.md, with Adam and momentum SGD spelled out by hand; it shares no
code with pix2pix_tr.optim. Every run spans several
TR cycles, a LambdaLR scheduler changes lr every step, and a resumed run (state_dict round trip
through torch.save in the middle of a cycle) must match the uninterrupted one.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from pix2pix_tr.optim import TRAdam, TRSGD, TrajectoryRegularized
from conftest import ORACLE_LR0 as LR0
from conftest import ORACLE_PERIOD as PERIOD
from conftest import ORACLE_STEPS as N_STEPS
from conftest import assert_close_to_oracle as assert_close
from conftest import oracle
from conftest import oracle_adam_update as adam_update
from conftest import oracle_grads_at as grads_at
from conftest import oracle_init_weights as init_weights
from conftest import oracle_lr_at as lr_at
from conftest import oracle_sgd_update as sgd_update
from conftest import run_against_oracle as run

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
