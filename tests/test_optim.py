"""Behaviour of the TR optimizers beyond the oracle: AMP, param groups, missing grads, errors, the claim."""

from __future__ import annotations

import copy
import math
import re

import pytest
import torch

from pix2pix_tr.optim import TRAdam, TRSGD, TrajectoryRegularized

OPTIMIZERS = {
    "TRAdam": lambda ps, **kw: TRAdam(ps, lr=0.01, **{"tr_period": 3, **kw}),
    "TRSGD": lambda ps, **kw: TRSGD(ps, lr=0.01, momentum=0.9, **{"tr_period": 3, **kw}),
    "wrapper": lambda ps, **kw: TrajectoryRegularized(torch.optim.AdamW(ps, lr=0.01), **{"tr_period": 3, **kw}),
}


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))


def batch(n):
    gen = torch.Generator().manual_seed(n)
    return torch.randn(5, 4, generator=gen), torch.randn(5, 2, generator=gen)


def loss_fn(model, n):
    x, y = batch(n)
    return torch.nn.functional.mse_loss(model(x), y)


def anchors(opt, model):
    return [opt.state[p]["tr_anchor"].clone() for p in model.parameters()]


# ----------------------------------------------------------------------------- anchors and counter
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_anchor_is_a_copy_of_the_weights_at_each_cycle_start(name):
    model = tiny_model()
    opt = OPTIMIZERS[name](model.parameters())
    for n in range(7):
        before = [p.detach().clone() for p in model.parameters()]
        opt.zero_grad()
        loss_fn(model, n).backward()
        opt.step()
        assert opt.param_groups[0]["tr_step"] == n + 1
        if n % 3 == 0:
            start = before
        for p, a, w0 in zip(model.parameters(), anchors(opt, model), start):
            assert torch.equal(a, w0)  # the weights before the cycle's first update, not zeros
            assert opt.state[p]["tr_anchor"].data_ptr() != p.data_ptr()  # never an alias
        assert not torch.equal(anchors(opt, model)[0], model[0].weight.detach())  # weights moved on


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_param_without_grad_is_skipped_and_anchored_lazily(name):
    model = tiny_model()
    opt = OPTIMIZERS[name](model.parameters())
    frozen = model[2].bias
    for n in range(5):  # steps 0..4: the cycle starting at step 3 begins without a grad for `frozen`
        opt.zero_grad()
        loss_fn(model, n).backward()
        if n != 4:
            frozen.grad = None
        w_before = frozen.detach().clone()
        opt.step()
        if n != 4:
            assert torch.equal(frozen.detach(), w_before)  # not touched, no weight decay either
            assert len(opt.state[frozen]) == 0  # nothing allocated for it
    # step 4 (k = 1 of the second cycle) is its first grad: anchor = weights at the cycle start
    assert torch.equal(opt.state[frozen]["tr_anchor"], w_before)
    assert not torch.equal(frozen.detach(), w_before)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_add_param_group_starts_its_own_cycle(name):
    model = tiny_model()
    extra = torch.nn.Parameter(torch.ones(3))
    opt = OPTIMIZERS[name](model.parameters())
    for n in range(2):
        opt.zero_grad()
        loss_fn(model, n).backward()
        opt.step()
    opt.add_param_group({"params": [extra], "lr": 0.02, "tr_lambda": 0.5})
    assert opt.param_groups[1]["tr_step"] == 0 and opt.param_groups[1]["tr_lr0"] == 0.02
    assert opt.param_groups[1]["tr_period"] == 3  # inherited default
    for n in range(2, 4):
        opt.zero_grad()
        (loss_fn(model, n) + extra.pow(2).sum()).backward()
        w_extra = extra.detach().clone()
        opt.step()
        if n == 2:
            assert torch.equal(opt.state[extra]["tr_anchor"], w_extra)
    assert opt.param_groups[0]["tr_step"] == 4 and opt.param_groups[1]["tr_step"] == 2
    assert opt.param_groups[1]["lr"] == 0.02


def test_add_param_group_rejects_bad_override():
    opt = TRAdam(tiny_model().parameters())
    with pytest.raises(ValueError, match="tr_period must be a positive integer"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.ones(2))], "tr_period": 0})


def test_closure_is_evaluated_and_its_loss_returned():
    model = tiny_model()
    opt = TRAdam(model.parameters(), lr=0.01)
    calls = []

    def closure():
        calls.append(1)
        opt.zero_grad()
        loss = loss_fn(model, 0)
        loss.backward()
        return loss

    w0 = model[0].weight.detach().clone()
    loss = opt.step(closure)
    assert calls == [1] and torch.is_tensor(loss) and loss.item() > 0
    assert not torch.equal(model[0].weight.detach(), w0)


def test_state_dict_carries_counter_anchor_and_adam_state():
    model = tiny_model()
    opt = TRAdam(model.parameters(), lr=0.01, tr_period=4)
    for n in range(5):
        opt.zero_grad()
        loss_fn(model, n).backward()
        opt.step()
    sd = opt.state_dict()
    assert sd["param_groups"][0]["tr_step"] == 5 and sd["param_groups"][0]["tr_lr0"] == 0.01
    st = sd["state"][0]
    assert {"tr_anchor", "tr_cycle", "exp_avg", "exp_avg_sq", "step"} <= set(st)
    assert st["step"].item() == 5  # Adam's own count, never reset by the TR cycles
    other = TRAdam(tiny_model(1).parameters(), lr=0.01, tr_period=4)
    other.load_state_dict(copy.deepcopy(sd))
    assert other.param_groups[0]["tr_step"] == 5
    assert torch.equal(other.state[next(iter(other.state))]["tr_anchor"], st["tr_anchor"])


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_deepcopy_of_model_and_optimizer_continues_identically(name):
    model = tiny_model()
    opt = OPTIMIZERS[name](model.parameters())
    for n in range(2):
        opt.zero_grad()
        loss_fn(model, n).backward()
        opt.step()
    model2, opt2 = copy.deepcopy((model, opt))
    for m, o in ((model, opt), (model2, opt2)):
        for n in range(2, 5):
            o.zero_grad()
            loss_fn(m, n).backward()
            o.step()
    for p, q in zip(model.parameters(), model2.parameters()):
        assert torch.equal(p, q)
    assert opt2.param_groups[0]["tr_step"] == 5


def test_plain_adam_checkpoint_loads_and_starts_a_fresh_cycle():
    model = tiny_model()
    adam = torch.optim.Adam(model.parameters(), lr=0.01)
    loss_fn(model, 0).backward()
    adam.step()
    opt = TRAdam(model.parameters(), lr=0.01)
    opt.load_state_dict(adam.state_dict())
    assert opt.param_groups[0]["tr_step"] == 0
    opt.step()
    assert opt.param_groups[0]["tr_step"] == 1
    assert opt.state[model[0].weight]["step"].item() == 2


# ----------------------------------------------------------------------------- AMP
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_grad_scaler_skip_leaves_counter_and_anchor_and_scaled_step_equals_unscaled(name):
    model = tiny_model()
    ref_model = copy.deepcopy(model)
    opt = OPTIMIZERS[name](model.parameters())
    ref = OPTIMIZERS[name](ref_model.parameters())
    assert not getattr(opt, "_step_supports_amp_scaling", False)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 8, growth_interval=1000)
    for n in range(5):
        opt.zero_grad()
        scaler.scale(loss_fn(model, n)).backward()
        skip = n == 4  # step 4 is k = 1 of the second cycle
        if skip:
            model[0].weight.grad[0, 0] = float("inf")
            state_before = (opt.param_groups[0]["tr_step"], anchors(opt, model),
                            [p.detach().clone() for p in model.parameters()])
        scaler.step(opt)
        scaler.update()
        if skip:
            assert opt.param_groups[0]["tr_step"] == state_before[0]
            for a, b in zip(anchors(opt, model), state_before[1]):
                assert torch.equal(a, b)
            for p, w in zip(model.parameters(), state_before[2]):
                assert torch.equal(p.detach(), w)
            assert scaler.get_scale() == 2.0 ** 7
        else:
            ref.zero_grad()
            loss_fn(ref_model, n).backward()
            ref.step()
            for p, q in zip(model.parameters(), ref_model.parameters()):
                torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


# ----------------------------------------------------------------------------- schedulers
def test_schedulers_see_and_set_the_group_lr():
    model = tiny_model()
    opt = TRAdam(model.parameters(), lr=0.1, tr_period=4)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
    seen = []
    for n in range(7):
        opt.zero_grad()
        loss_fn(model, n).backward()
        opt.step()
        sched.step()
        seen.append(opt.param_groups[0]["lr"])
    assert seen == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025])
    assert sched.get_last_lr() == pytest.approx([0.025])


def test_wrapper_works_with_schedulers_built_on_it():
    model = tiny_model()
    opt = TrajectoryRegularized(torch.optim.SGD(model.parameters(), lr=0.1))
    sched = torch.optim.lr_scheduler.LinearLR(opt, start_factor=1.0, end_factor=0.5, total_iters=2)
    for n in range(3):
        opt.zero_grad()
        loss_fn(model, n).backward()
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)
    assert opt.base_optimizer.param_groups[0]["tr_step"] == 3
    assert opt.state_dict()["param_groups"][0]["tr_step"] == 3


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize("kw,msg", [
    (dict(tr_period=0), "tr_period must be a positive integer"),
    (dict(tr_period=2.5), "tr_period must be a positive integer"),
    (dict(tr_period=True), "tr_period must be a positive integer"),
    (dict(tr_lambda=-0.1), "tr_lambda must be a finite number >= 0"),
    (dict(tr_lambda=float("nan")), "tr_lambda must be a finite number >= 0"),
    (dict(tr_mode="authors"), "tr_mode must be 'paper'"),
    (dict(tr_inner_decay="yes"), "tr_inner_decay must be True or False"),
])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_bad_hyperparameters_are_clear_errors(name, kw, msg):
    with pytest.raises(ValueError, match=msg):
        OPTIMIZERS[name](tiny_model().parameters(), **kw)


def test_reference_mode_with_zero_lr_is_a_clear_error():
    with pytest.raises(ValueError, match="reference.*initial lr > 0"):
        TRAdam(tiny_model().parameters(), lr=0.0, tr_mode="reference")
    model = tiny_model()
    opt = TRSGD(model.parameters(), lr=0.1, tr_mode="reference")
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0 if e == 0 else 0.0)
    for n in range(2):
        opt.zero_grad()
        loss_fn(model, n).backward()
        if n == 1:
            with pytest.raises(ValueError, match="lr is 0; use tr_mode='paper'"):
                opt.step()
        else:
            opt.step()
            sched.step()
    assert opt.param_groups[0]["lr"] == 0.0  # restored after the failed step
    assert opt.param_groups[0]["tr_step"] == 1


def test_wrapper_rejects_non_optimizers_and_double_wrapping():
    with pytest.raises(TypeError, match="must be a torch.optim.Optimizer instance"):
        TrajectoryRegularized(tiny_model().parameters())
    with pytest.raises(TypeError, match="already trajectory regularized"):
        TrajectoryRegularized(TRAdam(tiny_model().parameters()))


def test_sparse_gradients_are_a_clear_error():
    emb = torch.nn.Embedding(10, 3, sparse=True)
    opt = TRSGD(emb.parameters(), lr=0.1, foreach=False)
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse gradients are not supported"):
        opt.step()


# ----------------------------------------------------------------------------- the paper's claim
def fluctuation(make_opt, seeds=8, dim=50, steps=400, noise=1.0):
    """Batch-1 noisy quadratic: mean squared distance of the iterates to the optimum (second half).

    Each row of ``w`` is an independent run (its own seed); returns one figure per run.
    """
    gen = torch.Generator().manual_seed(1234)
    optimum = torch.randn(seeds, dim, generator=gen)
    curv = torch.linspace(0.5, 2.0, dim)
    w = torch.nn.Parameter(optimum.clone())  # start at the optimum: measure the stationary noise
    opt = make_opt([w])
    msd = torch.zeros(seeds)
    for t in range(steps):
        w.grad = curv * (w.detach() - optimum) + noise * torch.randn(seeds, dim, generator=gen)
        opt.step()
        if t >= steps // 2:
            msd += (w.detach() - optimum).pow(2).mean(dim=1)
    return msd / (steps - steps // 2)


@pytest.mark.parametrize("momentum,lr,worst", [(0.0, 0.05, 0.75), (0.9, 0.01, 0.5)])
def test_trsgd_fluctuates_less_than_sgd_at_the_same_lr(momentum, lr, worst):
    # for-loop kernels on both sides: tiny tensors, where fused kernels' thread start-up dominates
    kw = dict(lr=lr, momentum=momentum, foreach=False, fused=False)
    sgd = fluctuation(lambda ps: torch.optim.SGD(ps, **kw))
    tr = fluctuation(lambda ps: TRSGD(ps, tr_lambda=0.1, tr_period=10, **kw))
    ratio = tr / sgd  # measured: 0.43-0.61 without momentum, 0.28-0.34 with momentum 0.9
    assert ratio.max().item() < worst, ratio  # every seed, with margin
    assert ratio.mean().item() < worst - 0.1, ratio


# ----------------------------------------------------------------------------- torch.compile
@pytest.mark.slow
def test_compiled_training_step_matches_eager():
    """torch.compile of a whole training step that calls opt.step() (a graph break at the step)."""
    model, ref_model = tiny_model(), tiny_model()
    opt = TRAdam(model.parameters(), lr=0.01, tr_period=2)
    ref = TRAdam(ref_model.parameters(), lr=0.01, tr_period=2)

    def train_step(m, o, x, y):
        o.zero_grad()
        loss = torch.nn.functional.mse_loss(m(x), y)
        loss.backward()
        o.step()
        return loss.detach()

    compiled = torch.compile(train_step)
    for n in range(4):
        x, y = batch(n)
        loss = compiled(model, opt, x, y)
        ref_loss = train_step(ref_model, ref, x, y)
        torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-6)
    for p, q in zip(model.parameters(), ref_model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    assert opt.param_groups[0]["tr_step"] == 4


# ----------------------------------------------------------------------------- implementation choice
def test_default_picks_fused_kernel_by_capability():
    opt = TRAdam([torch.nn.Parameter(torch.ones(3))])
    assert opt.param_groups[0]["fused"] is True
    opt = TRAdam([torch.nn.Parameter(torch.ones(3, dtype=torch.complex64))])
    assert opt.param_groups[0]["fused"] is None  # complex: torch's own default path
    opt = TRSGD([torch.nn.Parameter(torch.ones(3))], lr=0.1, foreach=True)
    assert opt.param_groups[0]["fused"] is None and opt.param_groups[0]["foreach"] is True


def test_compiled_mode_falls_back_to_eager_with_a_warning(monkeypatch):
    from pix2pix_tr.optim import _compiled

    def broken_compile(*args, **kwargs):
        raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(_compiled, "_FAILED", False)
    monkeypatch.setattr(_compiled, "_COMPILED", {})
    monkeypatch.setattr(torch, "compile", broken_compile)
    model, ref_model = tiny_model(), tiny_model()
    opt = TRSGD(model.parameters(), lr=0.05, momentum=0.9, tr_period=2, compiled=True)
    ref = TRSGD(ref_model.parameters(), lr=0.05, momentum=0.9, tr_period=2)
    with pytest.warns(RuntimeWarning, match="compiled=True could not compile its kernel.*eagerly"):
        for n in range(4):
            for m, o in ((model, opt), (ref_model, ref)):
                o.zero_grad()
                loss_fn(m, n).backward()
                o.step()
    for p, q in zip(model.parameters(), ref_model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- no temporaries
def big_allocations(opt, steps, threshold):
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        for _ in range(steps):
            opt.step()
    return [(e.name, e.cpu_memory_usage) for e in prof.events() if e.cpu_memory_usage >= threshold]


def test_default_fast_path_allocates_nothing_param_sized():
    n = 200_000
    p = torch.nn.Parameter(torch.randn(n))
    p.grad = torch.randn(n)
    for opt in (TRAdam([p], tr_period=2), TRSGD([p], lr=0.1, momentum=0.9, tr_period=2)):
        opt.step()  # state and anchor are allocated once, here
        assert big_allocations(opt, 4, threshold=n) == []  # k = 1, 0, 1, 0: both kinds of step
    # the check can fail: the generic wrapper computes w - anchor into a temporary
    wrapped = TrajectoryRegularized(torch.optim.SGD([p], lr=0.1, momentum=0.9, fused=True), tr_period=2)
    wrapped.step()
    assert big_allocations(wrapped, 2, threshold=n) != []


@pytest.mark.slow
@pytest.mark.parametrize("amsgrad", [False, True])
def test_compiled_mode_equals_default_with_uneven_adam_steps(amsgrad):
    """A parameter that skips steps has its own Adam step count (the per-tensor scalars path)."""
    model, ref_model = tiny_model(), tiny_model()
    opt = TRAdam(model.parameters(), lr=0.01, amsgrad=amsgrad, tr_period=3, compiled=True)
    ref = TRAdam(ref_model.parameters(), lr=0.01, amsgrad=amsgrad, tr_period=3)
    for n in range(7):
        for m, o in ((model, opt), (ref_model, ref)):
            o.zero_grad()
            loss_fn(m, n).backward()
            if n in (1, 2):
                m[2].bias.grad = None
            o.step()
    assert opt.state[model[2].bias]["step"].item() == 5 and opt.state[model[0].weight]["step"].item() == 7
    from pix2pix_tr.optim import _compiled

    assert not _compiled._FAILED and ("_amsgrad" if amsgrad else "_adam") in _compiled._COMPILED
    for p, q in zip(model.parameters(), ref_model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("maximize", [False, True])
@pytest.mark.parametrize("wd", [0.0, 0.05])
def test_tradam_with_decoupled_weight_decay_equals_the_wrapper_over_adamw(wd, maximize):
    """A group with AdamW-style decay (e.g. from an AdamW state_dict) must not get the proximal term folded into
    its weight decay: TRAdam then equals TrajectoryRegularized(AdamW), exactly."""
    torch.manual_seed(0)
    w0 = torch.randn(5, dtype=torch.float64)

    def run(make):
        p = torch.nn.Parameter(w0.clone())
        opt = make([p])
        for t in range(7):
            p.grad = torch.sin(p.detach() * (t + 1)).clone()
            opt.step()
        return p.detach()

    def decoupled(ps):
        opt = TRAdam(ps, lr=0.01, weight_decay=wd, tr_period=3, maximize=maximize)
        opt.param_groups[0]["decoupled_weight_decay"] = True
        return opt

    wrapped = run(lambda ps: TrajectoryRegularized(torch.optim.AdamW(ps, lr=0.01, weight_decay=wd,
                                                                     maximize=maximize), tr_period=3))
    torch.testing.assert_close(run(decoupled), wrapped, rtol=0, atol=1e-15)


@pytest.mark.parametrize("cls", [TRAdam, TRSGD])
def test_step_hooks_run_once_per_step_even_after_a_plain_torch_optimizer_exists(cls):
    p = torch.nn.Parameter(torch.ones(3))
    torch.optim.Adam([torch.nn.Parameter(torch.ones(1))])  # makes torch wrap Adam.step / SGD.step with hooks
    torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.1)
    opt = cls([p], lr=0.1)
    calls = []
    opt.register_step_pre_hook(lambda *a: calls.append("pre"))
    opt.register_step_post_hook(lambda *a: calls.append("post"))
    for _ in range(2):
        p.grad = torch.ones(3)
        opt.step()
    assert calls == ["pre", "post", "pre", "post"]


def test_lr0_of_a_plain_torch_checkpoint_is_its_initial_lr_not_the_decayed_one():
    p = torch.nn.Parameter(torch.ones(3))
    plain = torch.optim.Adam([p], lr=1e-3)
    sched = torch.optim.lr_scheduler.StepLR(plain, step_size=1, gamma=0.1)
    p.grad = torch.ones(3)
    plain.step()
    sched.step()  # lr is now 1e-4, initial_lr 1e-3
    tr = TRAdam([p], lr=1e-3, tr_mode="reference")
    tr.load_state_dict(plain.state_dict())
    assert tr.param_groups[0]["lr"] == pytest.approx(1e-4)
    assert tr.param_groups[0]["tr_lr0"] == pytest.approx(1e-3)


# ----------------------------------------------------------------------------- loading another optimizer's state
def _stepped(opt, params):
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    return opt


def _params(n=2):
    return [torch.nn.Parameter(torch.full((3,), float(i + 1))) for i in range(n)]


MAKERS = {
    "TRAdam": lambda ps: TRAdam(ps, lr=0.01),
    "TRSGD": lambda ps: TRSGD(ps, lr=0.01, momentum=0.9),
    "TR(RMSprop)": lambda ps: TrajectoryRegularized(torch.optim.RMSprop(ps, lr=0.01)),
    "TR(Adam)": lambda ps: TrajectoryRegularized(torch.optim.Adam(ps, lr=0.01)),
    "Adam": lambda ps: torch.optim.Adam(ps, lr=0.01),
    "AdamW": lambda ps: torch.optim.AdamW(ps, lr=0.01),
    "SGD": lambda ps: torch.optim.SGD(ps, lr=0.01, momentum=0.9),
}


@pytest.mark.parametrize("writer,loader,says", [
    ("TRAdam", "TRSGD", "written by TRAdam, not by a TRSGD (its param groups lack dampening, momentum)"),
    ("TRSGD", "TRAdam", "written by TRSGD, not by a TRAdam (its param groups lack betas, eps)"),
    ("TRAdam", "TR(RMSprop)", "written by TRAdam, not by a TrajectoryRegularized(RMSprop)"),
    ("TR(RMSprop)", "TRAdam", "written by TrajectoryRegularized(RMSprop), not by a TRAdam"),
    ("Adam", "TRSGD", "written by torch.optim.Adam, not by a TRSGD"),
    ("SGD", "TRAdam", "written by torch.optim.SGD, not by a TRAdam"),
])
def test_loading_another_kind_of_optimizers_state_is_one_clear_sentence(writer, loader, says):
    from pix2pix_tr.optim import OptimizerStateMismatch

    saved = _stepped(MAKERS[writer](_params()), []).state_dict()
    params = _params()
    opt = _stepped(MAKERS[loader](params), params)
    before = copy.deepcopy(opt.state_dict())
    with pytest.raises(OptimizerStateMismatch, match=re.escape(says)) as info:
        opt.load_state_dict(saved)
    assert isinstance(info.value, ValueError)  # command-line tools turn it into exit 2
    assert str(info.value).count(". ") == 0 and str(info.value).endswith("load it into the kind of optimizer "
                                                                          "that saved it.")
    after = opt.state_dict()  # refused before anything was replaced; the optimizer still steps
    assert after["param_groups"] == before["param_groups"]
    _stepped(opt, params)


@pytest.mark.parametrize("writer,loader", [("Adam", "TRAdam"), ("AdamW", "TRAdam"), ("SGD", "TRSGD"),
                                           ("TR(Adam)", "TRAdam"), ("TRAdam", "TR(Adam)"), ("Adam", "TR(Adam)")])
def test_states_of_the_same_base_optimizer_still_load(writer, loader):
    params = _params()
    saved = _stepped(MAKERS[writer](params), params).state_dict()
    params = _params()
    opt = MAKERS[loader](params)
    opt.load_state_dict(saved)
    _stepped(opt, params)
    assert opt.param_groups[0]["tr_step"] >= 1


def test_load_state_dict_of_something_else_is_one_sentence():
    from pix2pix_tr.optim import OptimizerStateMismatch

    with pytest.raises(OptimizerStateMismatch, match="needs an optimizer state_dict"):
        TRAdam(_params()).load_state_dict({"weight": torch.ones(1)})


# ----------------------------------------------------------------------------- the plan of a group
def test_a_groups_plan_is_made_once_and_remade_when_a_flag_it_depends_on_changes():
    params = _params()
    opt = TRAdam(params, lr=0.01, tr_period=3)
    group = opt.param_groups[0]
    _stepped(opt, params)
    plan = opt._tr_plan(group)
    assert plan.impl == "torch" and not plan.release_eps and not plan.decoupled
    _stepped(opt, params)
    assert opt._tr_plan(group) is plan  # the same decision, not remade per step
    group["tr_mode"] = "reference"
    assert opt._tr_plan(group).release_eps
    group["decoupled_weight_decay"] = True
    assert opt._tr_plan(group).decoupled
    opt.load_state_dict(opt.state_dict())  # new group dicts: new plans
    assert opt._tr_plan(opt.param_groups[0]) is not plan and opt.param_groups[0] is not group


def test_a_failing_group_moves_no_weight_of_any_group():
    first, second = _params(1), [torch.nn.Parameter(torch.ones(3))]
    opt = TRSGD([{"params": first}, {"params": second, "lr": 0.1}], lr=0.1, tr_mode="reference", tr_period=2)
    _stepped(opt, first + second)
    opt.param_groups[1]["lr"] = 0.0
    before = [p.detach().clone() for p in first + second]
    with pytest.raises(ValueError, match="lr is 0; use tr_mode='paper'"):
        _stepped(opt, first + second)
    assert all(torch.equal(p.detach(), b) for p, b in zip(first + second, before))
    assert [g["tr_step"] for g in opt.param_groups] == [1, 1]


@pytest.mark.parametrize("name", ["TRAdam", "TRSGD"])
def test_parameters_converted_after_the_state_exists_get_a_clear_error_whose_advice_works(name):
    model = tiny_model()
    opt = OPTIMIZERS[name](model.parameters())
    for n in range(2):
        opt.zero_grad()
        loss_fn(model, n).backward()
        opt.step()
    model.double()  # the state (float32) no longer matches the parameters
    opt.zero_grad()
    model(batch(2)[0].double()).sum().backward()
    with pytest.raises(RuntimeError, match=r"param group 0, parameter 0: its optimizer state .* is on cpu/torch.float32 "
                                           r"but the parameter is on cpu/torch.float64.*optimizer.load_state_dict"
                                           r"\(optimizer.state_dict\(\)\)"):
        opt.step()
    opt.load_state_dict(opt.state_dict())  # the advice, as written
    opt.step()
    assert opt.param_groups[0]["tr_step"] == 3
    assert all(opt.state[p]["tr_anchor"].dtype == torch.float64 for p in model.parameters())


def test_the_optim_folder_lifts_out_and_runs_on_its_own(tmp_path):
    """DESIGN.md: optim/ imports nothing else from pix2pix_tr (its torch compat layer included), so a copy of the
    folder under another name is a complete library."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    import pix2pix_tr.optim

    shutil.copytree(Path(pix2pix_tr.optim.__file__).parent, tmp_path / "lifted_tr", ignore=shutil.ignore_patterns(
        "__pycache__"))
    code = ("import sys, torch, lifted_tr\n"
            "p = torch.nn.Parameter(torch.ones(3)); p.grad = torch.ones(3)\n"
            "opt = lifted_tr.TRAdam([p], lr=0.1, tr_mode='reference'); opt.step(); opt.step()\n"
            "assert opt.param_groups[0]['tr_step'] == 2 and lifted_tr.TR_MODES == ('paper', 'reference')\n"
            "print(sorted(m for m in sys.modules if m.startswith('pix2pix_tr')))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
