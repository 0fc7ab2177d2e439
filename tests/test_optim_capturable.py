"""capturable=True (counter and lr on the device, no host reads) and every mode on CUDA, against the float64 oracle.

The CPU tests run the capturable bookkeeping through torch's fused CPU kernels; the tests marked ``cuda`` (skipped
without a GPU) run every mode on CUDA tensors and replay a CUDA-graph-captured step against eager steps.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from pix2pix_tr.optim import TRAdam, TRSGD
from conftest import ORACLE_DT as DT
from conftest import ORACLE_LR0 as LR0
from conftest import ORACLE_PERIOD as PERIOD
from conftest import assert_close_to_oracle as assert_close
from conftest import oracle
from conftest import oracle_adam_update as adam_update
from conftest import oracle_init_weights as init_weights
from conftest import oracle_sgd_update as sgd_update
from conftest import run_against_oracle as run


def run_on(device, make_opt, resume_at=None, make_resumed=None):
    return run(make_opt, resume_at=resume_at, device=device, make_resumed=make_resumed)


ADAM_KW = dict(lr=LR0, betas=(0.5, 0.999), weight_decay=0.01, tr_lambda=0.3, tr_period=PERIOD)
SGD_KW = dict(lr=LR0, momentum=0.9, nesterov=True, weight_decay=0.01, tr_lambda=0.5, tr_period=PERIOD)


def want_adam(mode, capturable=True):
    # reference mode uses the released TRAdam's eps placement, except with capturable (it needs a host read)
    release = mode == "reference" and not capturable
    return oracle(adam_update(betas=(0.5, 0.999), release=release), lam=0.3, mode=mode, wd=0.01)


def want_sgd(mode):
    return oracle(sgd_update(momentum=0.9, nesterov=True), lam=0.5, mode=mode, wd=0.01)


@pytest.mark.parametrize("mode", ["paper", "reference"])
def test_capturable_matches_oracle_with_scheduler_and_resume_on_cpu(mode):
    make = lambda ps: TRAdam(ps, capturable=True, tr_mode=mode, **ADAM_KW)  # noqa: E731
    assert_close(run_on("cpu", make), want_adam(mode))
    assert_close(run_on("cpu", make, resume_at=6), want_adam(mode))  # k == 2 of the second cycle
    make = lambda ps: TRSGD(ps, capturable=True, tr_mode=mode, **SGD_KW)  # noqa: E731
    assert_close(run_on("cpu", make, resume_at=5), want_sgd(mode))


def test_capturable_keeps_counter_and_lr_on_the_device_and_checkpoints_move_between_modes():
    params = [torch.nn.Parameter(w.clone()) for w in init_weights()]
    opt = TRAdam(params, capturable=True, **ADAM_KW)
    group = opt.param_groups[0]
    assert isinstance(group["tr_step"], torch.Tensor) and group["tr_step"].dtype == torch.int64
    assert isinstance(group["lr"], torch.Tensor) and group["lr"].dtype == DT  # float64 params: float64 lr
    # a capturable run resumed without capturable, and the other way round, continue exactly
    plain = lambda ps: TRAdam(ps, foreach=True, **ADAM_KW)  # noqa: E731  (foreach refuses a tensor lr)
    capt = lambda ps: TRAdam(ps, capturable=True, **ADAM_KW)  # noqa: E731
    assert_close(run_on("cpu", capt, resume_at=6, make_resumed=plain), want_adam("paper"))
    assert_close(run_on("cpu", plain, resume_at=7, make_resumed=capt), want_adam("paper"))


def test_capturable_trsgd_needs_the_fused_kernel():
    params = [torch.nn.Parameter(torch.ones(3))]
    with pytest.raises(ValueError, match="capturable=True runs torch's fused SGD kernel.*leave foreach and fused unset"):
        TRSGD(params, lr=0.1, foreach=True, capturable=True)
    TRSGD(params, lr=0.1, capturable=True)  # the advice, followed, works


# ----------------------------------------------------------------------------- on CUDA
CUDA_MODES = {
    "default": {},
    "foreach": {"foreach": True},
    "forloop": {"foreach": False, "fused": False},
    "compiled": {"compiled": True},
    "capturable": {"capturable": True},
    "capturable-foreach": {"capturable": True, "foreach": True},
}


@pytest.mark.cuda
@pytest.mark.parametrize("impl", list(CUDA_MODES))
@pytest.mark.parametrize("mode", ["paper", "reference"])
def test_tradam_every_mode_matches_oracle_on_cuda(impl, mode):
    make = lambda ps: TRAdam(ps, tr_mode=mode, **ADAM_KW, **CUDA_MODES[impl])  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # compiled must not fall back to eager
        assert_close(run_on("cuda", make, resume_at=6), want_adam(mode, bool(CUDA_MODES[impl].get("capturable"))))


@pytest.mark.cuda
@pytest.mark.parametrize("impl", ["default", "foreach", "forloop", "compiled", "capturable"])
@pytest.mark.parametrize("mode", ["paper", "reference"])
def test_trsgd_every_mode_matches_oracle_on_cuda(impl, mode):
    make = lambda ps: TRSGD(ps, tr_mode=mode, **SGD_KW, **CUDA_MODES[impl])  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        assert_close(run_on("cuda", make, resume_at=5), want_sgd(mode))


@pytest.mark.cuda
@pytest.mark.parametrize("cls", [TRAdam, TRSGD])
def test_cuda_graph_replayed_step_equals_eager_steps(cls):
    """Capture one optimizer step in a CUDA graph, replay it across TR cycles (with a schedule changing lr in
    between): the weights equal those of the same optimizer stepped eagerly."""
    kw = dict(ADAM_KW if cls is TRAdam else SGD_KW, tr_mode="reference", capturable=True)
    shapes = [(64, 33), (7,), (3, 5, 2)]
    gen = torch.Generator().manual_seed(0)
    init = [torch.randn(s, generator=gen) for s in shapes]
    grads = [[torch.randn(s, generator=gen) for s in shapes] for _ in range(13)]

    def setup():
        ps = [torch.nn.Parameter(w.clone().cuda()) for w in init]
        opt = cls(ps, **kw)
        return ps, opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)

    eager_ps, eager_opt, eager_sched = setup()
    for gs in grads:
        for p, g in zip(eager_ps, gs):
            p.grad = g.cuda()
        eager_opt.step()
        eager_sched.step()

    ps, opt, sched = setup()
    for p in ps:
        p.grad = torch.zeros_like(p)
    warm = 3  # state allocation and first-step paths run eagerly, on a side stream as torch recommends
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for gs in grads[:warm]:
            for p, g in zip(ps, gs):
                p.grad.copy_(g.cuda())
            opt.step()
            sched.step()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        opt.step()
    # capture ran the Python but (by CUDA's rules) none of the kernels: the state is still after `warm` steps
    for gs in grads[warm:]:
        for p, g in zip(ps, gs):
            p.grad.copy_(g.cuda())
        graph.replay()
        sched.step()
    torch.cuda.synchronize()
    assert int(opt.param_groups[0]["tr_step"]) == len(grads)
    for p, q in zip(ps, eager_ps):
        torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-5, atol=1e-6)
