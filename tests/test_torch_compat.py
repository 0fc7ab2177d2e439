"""pix2pix_tr/_torch_compat.py (and optim/_compat.py, which it re-exports): each private torch API we rely on, tested
where it touches torch, so that a torch upgrade that breaks one fails here and not in a training run.

The last test keeps it the one place: no other module of pix2pix_tr/ names a private torch API.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
import torch

from pix2pix_tr import _torch_compat as compat
from pix2pix_tr.optim import _compat as optim_compat

ROOT = Path(__file__).resolve().parents[1]


def test_the_package_list_re_exports_every_optim_compat_function():
    assert set(optim_compat.__all__) <= set(compat.__all__)
    for name in compat.__all__:
        assert callable(getattr(compat, name)), name
    for name in optim_compat.__all__:
        assert getattr(compat, name) is getattr(optim_compat, name)


# ----------------------------------------------------------------------------- capability and tracing
def test_fused_kernel_devices_comes_from_torch_and_matches_what_adam_accepts():
    from torch.utils._foreach_utils import _get_fused_kernels_supported_devices  # the private itself

    devices = compat.fused_kernel_devices()
    assert devices == frozenset(_get_fused_kernels_supported_devices())
    assert {"cuda", "cpu"} <= devices
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.ones(3)
    torch.optim.Adam([p], fused=True).step()  # "cpu" listed: the fused CPU kernel really runs
    assert not torch.equal(p.detach(), torch.ones(3))


def test_no_dynamo_keeps_the_function_out_of_a_compiled_graph():
    assert callable(getattr(torch, "_disable_dynamo", None))  # the private itself (else: the public fallback)
    seen = []

    @compat.no_dynamo
    def eager(x):
        seen.append(torch.compiler.is_compiling())  # True only while Dynamo traces it
        return x + 1

    compiled = torch.compile(lambda x: eager(x) * 2, backend="eager")
    assert torch.equal(compiled(torch.ones(2)), torch.full((2,), 4.0))
    assert seen == [False]


# ----------------------------------------------------------------------------- multi-tensor ops
def test_foreach_ops_equal_their_per_tensor_forms():
    gen = torch.Generator().manual_seed(0)
    a = [torch.randn(s, generator=gen) for s in [(3, 4), (5,), (2, 2, 2)]]
    b = [torch.randn(t.shape, generator=gen) for t in a]
    dst = [torch.empty_like(t) for t in a]
    compat.foreach_copy_(dst, a)
    assert all(torch.equal(d, t) for d, t in zip(dst, a))
    compat.foreach_add_(dst, b, alpha=-0.3)
    assert all(torch.equal(d, t.add(u, alpha=-0.3)) for d, t, u in zip(dst, a, b))
    diff = compat.foreach_sub(a, b)
    assert all(torch.equal(d, t - u) for d, t, u in zip(diff, a, b))
    assert all(d.data_ptr() != t.data_ptr() for d, t in zip(diff, a))  # new tensors
    scale = torch.tensor(0.7)
    compat.foreach_mul_(diff, scale)
    assert all(torch.equal(d, (t - u) * scale) for d, t, u in zip(diff, a, b))


# ----------------------------------------------------------------------------- optimizer internals
class _Recorder(torch.optim.SGD):
    """An optimizer whose step only records the grads it sees."""

    def step(self, closure=None):
        self.seen = [p.grad.clone() for group in self.param_groups for p in group["params"]]


def test_opt_out_of_amp_scaling_makes_grad_scaler_unscale_first():
    assert torch.optim.Adam([torch.nn.Parameter(torch.ones(1))], fused=True)._step_supports_amp_scaling is True

    def scaled_step(opt, p):
        scaler = torch.amp.GradScaler("cpu", init_scale=4.0)
        scaler.scale((p * 1.0).sum()).backward()
        scaler.step(opt)
        return opt.seen[0]

    p = torch.nn.Parameter(torch.ones(3))
    opt = _Recorder([p], lr=0.1)
    opt._step_supports_amp_scaling = True  # what torch's fused kernels claim: the scaler passes scaled grads
    assert torch.equal(scaled_step(opt, p), torch.full((3,), 4.0))
    p = torch.nn.Parameter(torch.ones(3))
    opt = _Recorder([p], lr=0.1)
    opt._step_supports_amp_scaling = True
    compat.opt_out_of_amp_scaling(opt)
    assert torch.equal(scaled_step(opt, p), torch.ones(3))  # unscaled by the scaler before step()


def test_graph_capture_health_check_exists_and_passes_outside_a_capture():
    names = ("_accelerator_graph_capture_health_check", "_cuda_graph_capture_health_check")
    assert any(callable(getattr(torch.optim.Optimizer, n, None)) for n in names)
    opt = torch.optim.Adam([torch.nn.Parameter(torch.ones(1))])
    compat.graph_capture_health_check(opt)  # no capture running: no error


def test_init_optimizer_shell_sets_up_hooks_and_offers_one_empty_group():
    class Shell(torch.optim.Optimizer):
        def __init__(self):
            self.added = []
            compat.init_optimizer_shell(self, {"lr": 0.1})

        def add_param_group(self, param_group):
            self.added.append(param_group)

        def step(self, closure=None):
            calls.append("step")

    calls = []
    shell = Shell()
    assert shell.added == [{"params": []}]  # the only call: what the TR wrapper ignores while not ready
    assert shell.defaults == {"lr": 0.1}
    shell.register_step_pre_hook(lambda *a: calls.append("pre"))
    shell.register_step_post_hook(lambda *a: calls.append("post"))
    shell.register_state_dict_pre_hook(lambda *a: None)
    shell.step()
    assert calls == ["pre", "step", "post"]


def _params(n_groups=2):
    gen = torch.Generator().manual_seed(1)
    params = [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in [(4, 3), (5,), (2, 3)]]
    return params, [{"params": params[:2]}, {"params": params[2:], "lr": 0.05}][:n_groups]


def _grads(params, n):
    gen = torch.Generator().manual_seed(10 + n)
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen)


def _assert_same_run(make, replay):
    """``make(groups)`` stepped by torch's own ``step()`` and by ``replay(opt, group)`` per group: bit for bit."""
    results = []
    for use_replay in (False, True):
        params, groups = _params()
        opt = make(groups)
        for n in range(3):
            _grads(params, n)
            if use_replay:
                before = [dict((k, v) for k, v in g.items() if k != "params") for g in opt.param_groups]
                with torch.no_grad():  # as torch's step (grad mode on only for differentiable=True)
                    for group in opt.param_groups:
                        replay(opt, group)
                after = [dict((k, v) for k, v in g.items() if k != "params") for g in opt.param_groups]
                assert before == after  # the group is not modified
            else:
                opt.step()
        results.append((params, opt.state_dict()["state"]))
    (p1, s1), (p2, s2) = results
    assert all(torch.equal(a, b) for a, b in zip(p1, p2))
    assert s1.keys() == s2.keys()
    for i in s1:
        assert s1[i].keys() == s2[i].keys()
        for key in s1[i]:
            assert torch.equal(s1[i][key], s2[i][key]) and s1[i][key].device == s2[i][key].device, key


# (capturable with foreach needs an accelerator: torch refuses CPU tensors there)
ADAM_CASES = [dict(fused=True), dict(foreach=True), dict(foreach=False), dict(fused=True, capturable=True)]


@pytest.mark.parametrize("flags", ADAM_CASES, ids=lambda d: "-".join(d))
@pytest.mark.parametrize("cls", [torch.optim.Adam, torch.optim.AdamW])
@pytest.mark.parametrize("amsgrad,maximize", [(False, False), (True, True)])
def test_adam_group_step_is_adams_step_for_one_group(flags, cls, amsgrad, maximize):
    def make(groups):
        return cls(groups, lr=0.01, betas=(0.5, 0.99), weight_decay=0.02, amsgrad=amsgrad, maximize=maximize,
                   **flags)

    def replay(opt, group):
        compat.adam_group_step(opt, group, lr=group["lr"], weight_decay=group["weight_decay"], eps=group["eps"])

    _assert_same_run(make, replay)


@pytest.mark.parametrize("flags", [dict(fused=True), dict(foreach=True), dict(foreach=False)], ids=lambda d: "-".join(d))
@pytest.mark.parametrize("sgd_kw", [dict(momentum=0.9, nesterov=True), dict(momentum=0.9, dampening=0.1, maximize=True),
                                    dict()], ids=["nesterov", "dampened", "plain"])
def test_sgd_group_step_is_sgds_step_for_one_group(flags, sgd_kw):
    def make(groups):
        return torch.optim.SGD(groups, lr=0.01, weight_decay=0.02, **sgd_kw, **flags)

    def replay(opt, group):
        compat.sgd_group_step(opt, group, lr=group["lr"], weight_decay=group["weight_decay"], fused=group["fused"])

    _assert_same_run(make, replay)


# ----------------------------------------------------------------------------- schedulers
SCHEDULERS = {
    "LambdaLR": lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 0.5 ** e),
    "StepLR": lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.1),
    "CosineAnnealingLR": lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=4),
    "ReduceLROnPlateau": lambda opt: torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=0, factor=0.5),
}


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_scheduler_lr_attributes_hold_what_get_last_lr_returns_and_are_saved(name):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.1)
    sched = SCHEDULERS[name](opt)
    for _ in range(2):
        opt.step()
        sched.step(1.0) if name == "ReduceLROnPlateau" else sched.step()
    attrs = compat.scheduler_lr_attributes()
    assert "_last_lr" in attrs
    assert sched._last_lr == sched.get_last_lr() == [opt.param_groups[0]["lr"]]
    sched._last_lr = [0.123]  # get_last_lr() reads the attribute we rescale
    assert sched.get_last_lr() == [0.123]
    saved = sched.state_dict()
    for attr in attrs:
        if hasattr(sched, attr):
            assert isinstance(getattr(sched, attr), list) and attr in saved, attr
    if name != "ReduceLROnPlateau":
        assert saved["base_lrs"] == [0.1]


# ----------------------------------------------------------------------------- the one place
_PRIVATE_DOTTED = re.compile(r"\btorch\.(?:[A-Za-z]\w*\.)*_[A-Za-z]")
_PRIVATE_NAMES = re.compile(
    r"[.\"']_(?:last_lr|step_supports_amp_scaling|init_group|step_count|get_lr_called_within_step|opt_called|"
    r"with_counter|warned_capturable_if_run_uncaptured|accelerator_graph_capture_health_check|"
    r"cuda_graph_capture_health_check|patch_step_function|optimizer_step_pre_hooks|optimizer_step_post_hooks|"
    r"need_device_dtype_check_for_fused|foreach_\w+|disable_dynamo)\b|\b__wrapped__\b|\.hooked\b")
_COMPAT_FILES = {"pix2pix_tr/_torch_compat.py", "pix2pix_tr/optim/_compat.py"}


def test_no_module_of_the_package_uses_a_private_torch_api_directly():
    offenders = []
    for path in sorted((ROOT / "pix2pix_tr").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel in _COMPAT_FILES:
            continue
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if _PRIVATE_DOTTED.search(code) or _PRIVATE_NAMES.search(code):
                offenders.append(f"{rel}:{lineno}: {line.strip()}")
    assert not offenders, "route these through pix2pix_tr/_torch_compat.py:\n" + "\n".join(offenders)


@pytest.mark.parametrize("line,private", [
    ("from torch.utils._foreach_utils import x", True), ("torch._foreach_add_(a, b)", True),
    ("s._last_lr = v", True), ('for a in ("base_lrs", "_last_lr"):', True), ("getattr(f, '__wrapped__', f)", True),
    ("torch.optim.Adam(ps)", False), ("torch.__version__", False), ("self._tr_plans = {}", False),
])
def test_the_private_api_scan_can_fail(line, private):
    assert bool(_PRIVATE_DOTTED.search(line) or _PRIVATE_NAMES.search(line)) is private


def test_torch_versions_this_was_checked_on():
    """Not a gate: says which torch ran this file (2.11 and 2.14 are the supported ones)."""
    major_minor = tuple(int(x) for x in itertools.islice(re.findall(r"\d+", torch.__version__), 2))
    assert major_minor >= (2, 11)
