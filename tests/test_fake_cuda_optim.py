"""TRAdam and TRSGD on fake CUDA tensors: the CUDA code paths of ``step()``, ``state_dict()`` and ``load_state_dict()``
executed on the CPU (tier ``fake_cuda``; it runs in CI, no GPU needed).

``torch._subclasses.fake_tensor.FakeTensorMode`` makes CUDA tensors without a GPU: every op computes shapes, dtypes
and devices only, a device mismatch raises, and reading a CUDA value on the host (``.item()``, ``bool()``,
``float()``) raises. Two things it lets through are caught by :class:`HostSyncWatch` (``tests/fake_cuda.py``,
shared by the ``fake_cuda`` modules), a dispatch mode entered inside it: copies from CUDA to the CPU (``.cpu()``,
``.to("cpu")``: a synchronisation on a real GPU) and ops whose tensor arguments live on different devices (fake mode
does not check foreach ops or ``copy_``). Every step below runs under the watch and must record nothing.

What cannot run under fake tensors, and what the tests do instead:

* torch ships no fake (Meta) kernel for some fused kernels that real GPUs run (torch 2.14: ``aten::_fused_sgd_``,
  both overloads, and the tensor-lr overload of ``aten::_fused_adam_`` that ``capturable=True`` uses). For exactly
  those that are missing, this module registers stand-ins for the test session: they check that every tensor
  argument is on the parameters' device and shaped like its parameter, and compute nothing. So the TR code around
  the kernel runs for real on fake CUDA tensors; torch's kernel itself is run by the ``cuda`` tier.
  ``test_torch_has_fake_kernels_for_the_fused_kernels_we_call`` says which were stood in (skipped, with the list).
* torch.compile cannot build kernels for a GPU that is not there (inductor: "Found no NVIDIA driver"), so
  ``compiled=True`` runs its own functions eagerly here (the fallback it takes when compilation fails): the same
  Python and the same math on the same tensors. The inductor kernel on CUDA is the ``cuda`` tier's.
* A CPU checkpoint is read on the CPU when it is loaded (``map_location="cpu"``), where reading is free; fake mode
  cannot read any value, so the checkpoint's 0-dim tensors (counters) are made fake *constants*, whose values fake
  mode can read, as a real CPU tensor's. CUDA values stay unreadable.

Checked on torch 2.11 and 2.14.
"""

from __future__ import annotations

import copy
import io
import sys

import pytest
import torch
from fake_cuda import CUDA, PROBES, HostSyncWatch, probe
from torch.utils._pytree import tree_map

from pix2pix_tr.optim import TRAdam, TRSGD, _compiled

pytestmark = pytest.mark.fake_cuda

SHAPES = [(8, 4, 3, 3), (8,), (5,)]  # the last one is its own param group and skips some steps


def test_torch_has_fake_kernels_for_the_fused_kernels_we_call(stood_in):
    for op in stood_in:  # the stand-ins really run: torch's optimizer steps on fake CUDA tensors now
        assert probe(PROBES[op]), op
    if stood_in:
        pytest.skip(f"torch {torch.__version__} has no fake kernel for aten::{', aten::'.join(stood_in)}: the "
                    f"tests ran the TR code around device-checking stand-ins; the kernels themselves run in the cuda "
                    f"tier")


def test_the_watch_catches_device_to_host_copies_and_mixed_devices(fake):
    a, b = torch.randn(4, device=CUDA), torch.randn(4, device="cpu")
    watch = HostSyncWatch()
    with watch:
        a.cpu()
        torch._foreach_add_([a], [b], alpha=1.0)  # fake mode itself lets this through
        b.copy_(a)
        a.add_(torch.tensor(2.0))  # a CPU number beside a device tensor: allowed, as in torch
    assert len(watch.events) == 3, watch.events
    with pytest.raises(Exception, match="_local_scalar_dense"):  # reading a CUDA value: fake mode raises itself
        a.sum().item()


# ----------------------------------------------------------------------------- helpers
IMPLS = {
    "default": {}, "foreach": dict(foreach=True), "for-loop": dict(foreach=False, fused=False),
    "capturable": dict(capturable=True), "capturable-foreach": dict(capturable=True, foreach=True),
    "compiled": dict(compiled=True),
}
ADAM_VARIANTS = {"plain": {}, "amsgrad-maximize-wd": dict(amsgrad=True, maximize=True, weight_decay=0.01),
                 "no-inner-decay": dict(tr_inner_decay=False, betas=(0.5, 0.999))}
SGD_VARIANTS = {"momentum": dict(momentum=0.9), "nesterov-wd": dict(momentum=0.9, nesterov=True, weight_decay=0.01),
                "dampening-maximize": dict(momentum=0.9, dampening=0.1, maximize=True), "no-momentum": {}}


def make(cls, params, impl, mode, variant):
    kw = dict(ADAM_VARIANTS[variant] if cls is TRAdam else SGD_VARIANTS[variant])
    groups = [{"params": params[:-1]}, {"params": params[-1:], "lr": 0.02}]
    return cls(groups, lr=0.01, tr_period=2, tr_lambda=0.3, tr_mode=mode, **kw, **IMPLS[impl])


def new_params(device):
    return [torch.nn.Parameter(torch.randn(s, device=device)) for s in SHAPES]


def set_grads(params, n):
    for i, p in enumerate(params):
        p.grad = None if (i == len(params) - 1 and n in (1, 2)) else torch.randn(p.shape, device=p.device)


def change_lr(opt):
    """What a scheduler does between steps (a tensor lr is updated in place, as torch's schedulers do)."""
    for group in opt.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].mul_(0.9)
        else:
            group["lr"] *= 0.9


def run_steps(opt, params, steps, start=0):
    watch = HostSyncWatch()
    with watch:
        for n in range(start, start + steps):
            set_grads(params, n)
            opt.step()
            change_lr(opt)
    assert watch.events == [], watch.events
    return watch


def assert_state_on_device(opt):
    """Everything where torch (and the TR bookkeeping) keeps it for parameters on the GPU."""
    for group in opt.param_groups:
        capturable, fused = bool(group.get("capturable")), bool(group.get("fused"))
        n, lr = group["tr_step"], group["lr"]
        if capturable:
            assert isinstance(n, torch.Tensor) and n.device == CUDA and n.dtype == torch.int64
            assert isinstance(lr, torch.Tensor) and lr.device == CUDA and lr.dim() == 0
        else:
            assert isinstance(n, int) and isinstance(lr, float)
        for p in group["params"]:
            for key, value in opt.state.get(p, {}).items():
                if key == "step":  # torch's rule: on the device for fused/capturable kernels, else on the CPU
                    assert value.device.type == ("cuda" if capturable or fused else "cpu"), (key, value.device)
                elif key == "tr_cycle":
                    if capturable:
                        assert value.device == CUDA and value.dtype == torch.int64
                    else:
                        assert isinstance(value, int)
                else:  # anchors, moments, momentum buffers: like the parameter
                    assert value.device == p.device and value.dtype == p.dtype and value.shape == p.shape, key


@pytest.fixture
def compiled_runs_eagerly(monkeypatch):
    """compiled=True's functions, run eagerly (see the module docstring); counts the calls of its kernel."""
    calls = []
    monkeypatch.setattr(_compiled, "_FAILED", True)
    real_call = _compiled._call
    monkeypatch.setattr(_compiled, "_call", lambda name, *args: (calls.append(name), real_call(name, *args)))
    return calls


# ----------------------------------------------------------------------------- step() in every mode
CASES = [(TRAdam, impl, variant) for impl in IMPLS for variant in ADAM_VARIANTS] + \
        [(TRSGD, impl, variant) for impl in IMPLS if impl != "capturable-foreach" for variant in SGD_VARIANTS]


@pytest.mark.parametrize("mode", ["paper", "reference"])
@pytest.mark.parametrize("cls,impl,variant", CASES, ids=[f"{c.__name__}-{i}-{v}" for c, i, v in CASES])
def test_step_runs_on_the_device_without_host_reads(fake, compiled_runs_eagerly, cls, impl, variant, mode):
    params = new_params(CUDA)
    opt = make(cls, params, impl, mode, variant)
    run_steps(opt, params, 5)  # tr_period 2: k = 0, 1, 0, 1, 0; the last param skips steps 1 and 2
    assert_state_on_device(opt)
    counter = opt.param_groups[0]["tr_step"]
    assert isinstance(counter, torch.Tensor) if "capturable" in impl else counter == 5
    if impl == "compiled":  # (TRAdam's reference mode takes torch's kernels: the release's eps placement)
        assert bool(compiled_runs_eagerly) is not (cls is TRAdam and mode == "reference")
    expected = {"default": True, "foreach": None, "for-loop": False, "capturable": True, "capturable-foreach": None,
                "compiled": True}[impl]
    assert opt.param_groups[0]["fused"] is expected  # the kernel the test meant to run


@pytest.mark.parametrize("cls", [TRAdam, TRSGD])
def test_the_compiled_kernel_itself_needs_a_gpu(cls):
    if not torch.cuda.is_available():
        pytest.skip("inductor compiles Triton kernels for the GPU it finds and fails without one (InductorError: "
                    "Found no NVIDIA driver), so compiled=True's kernel is not built on fake tensors; its functions run "
                    "eagerly in the [compiled] cases, the kernel itself in the cuda tier (test_optim_capturable.py)")
    params = [torch.nn.Parameter(torch.randn(s, device=CUDA)) for s in SHAPES]  # a GPU is here: the real thing
    opt = make(cls, params, "compiled", "paper", "plain" if cls is TRAdam else "momentum")
    for n in range(4):
        set_grads(params, n)
        opt.step()
    assert opt.param_groups[0]["tr_step"] == 4


# ----------------------------------------------------------------------------- checkpoints across devices
def cpu_checkpoint(cls, impl, mode, variant, steps=3):
    """A real run on the CPU, saved and loaded back with map_location="cpu", as a resumed run reads it."""
    params = new_params("cpu")
    opt = make(cls, params, impl, mode, variant)
    for n in range(steps):
        set_grads(params, n + 3)  # every param has a grad (reference mode needs equal Adam steps per group)
        opt.step()
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)
    buf.seek(0)
    return torch.load(buf, map_location="cpu", weights_only=True)


def as_fake(mode, state_dict):
    """The loaded checkpoint's tensors as fake CPU tensors; the state's 0-dim ones (Adam's step, cycle tags) as
    constants, whose values can be read (as a real CPU tensor's)."""
    def convert(t, constant):
        if not isinstance(t, torch.Tensor):
            return t
        return mode.fake_tensor_converter.from_real_tensor(mode, t, make_constant=constant and t.dim() == 0)
    return {"state": tree_map(lambda t: convert(t, True), state_dict["state"]),
            "param_groups": tree_map(lambda t: convert(t, False), state_dict["param_groups"])}


def clone_deepcopy(obj, memo=None):
    """``copy.deepcopy`` with tensors cloned: torch's load_state_dict deep-copies the param groups, and a fake tensor
    does not survive ``copy.deepcopy`` (the copy gets a fake mode of its own). A capturable checkpoint's groups hold
    tensors (the TR counter, the lr); cloning them is the same copy, inside the test's fake mode."""
    if isinstance(obj, torch.Tensor):
        return obj.clone()
    if isinstance(obj, dict):
        return {k: clone_deepcopy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(clone_deepcopy(v) for v in obj)
    return copy.deepcopy(obj)


LOAD_CASES = [(TRAdam, "default", "default"), (TRAdam, "foreach", "foreach"), (TRAdam, "capturable", "capturable"),
              (TRAdam, "capturable", "default"), (TRAdam, "default", "capturable"),
              (TRSGD, "default", "default"), (TRSGD, "foreach", "foreach"), (TRSGD, "capturable", "capturable"),
              (TRSGD, "capturable", "default")]


@pytest.mark.parametrize("mode", ["paper", "reference"])
@pytest.mark.parametrize("cls,saved_impl,loaded_impl", LOAD_CASES,
                         ids=[f"{c.__name__}-{s}-into-{d}" for c, s, d in LOAD_CASES])
def test_a_cpu_checkpoint_resumes_on_the_gpu(fake_mode, monkeypatch, cls, saved_impl, loaded_impl, mode):
    monkeypatch.setattr(sys.modules["torch.optim.optimizer"], "deepcopy", clone_deepcopy)
    variant = "plain" if cls is TRAdam else "momentum"
    saved = cpu_checkpoint(cls, saved_impl, mode, variant)  # real tensors, on the CPU
    with fake_mode:
        params = new_params(CUDA)
        opt = make(cls, params, loaded_impl, mode, variant)
        watch = HostSyncWatch()
        with watch:
            opt.load_state_dict(as_fake(fake_mode, saved))
        assert watch.events == [], watch.events
        # as in torch, the checkpoint's kernel flags come with it; the counter follows its capturable flag
        assert opt.param_groups[0]["capturable"] is ("capturable" in saved_impl)
        assert opt.param_groups[0]["tr_step"] == 3 if "capturable" not in saved_impl else True
        assert_state_on_device(opt)
        assert all(opt.state[p]["tr_anchor"].device == CUDA for p in params)
        run_steps(opt, params, 3, start=3)
        assert_state_on_device(opt)
        assert opt.state_dict()["param_groups"][0]["tr_lr0"] == pytest.approx(0.01)


# ----------------------------------------------------------------------------- moving the model
@pytest.mark.parametrize("cls,impl", [(TRAdam, "default"), (TRAdam, "capturable"), (TRSGD, "default"),
                                      (TRSGD, "foreach")])
def test_moving_parameters_to_the_gpu_before_and_after_the_first_step(fake, cls, impl):
    variant = "plain" if cls is TRAdam else "momentum"
    params = new_params("cpu")
    opt = make(cls, params, impl, "paper", variant)
    for p in params:  # what Module.to("cuda") does: same Parameter objects, new data
        p.data = p.data.to(CUDA)
    if any(p.device != CUDA for p in params):
        pytest.skip(f"fake tensors cannot be moved in place on torch {torch.__version__}: Module.to() assigns "
                    f"param.data, which leaves a fake tensor's device as it was; the same check (state made "
                    f"before a conversion of the parameters) is tested on the CPU with model.double() in "
                    f"test_optim.py::test_parameters_converted_after_the_state_exists_get_a_clear_error_whose_advice_"
                    f"works")
    run_steps(opt, params, 3)  # before the first step: the state is made on the GPU
    assert_state_on_device(opt)

    params = new_params("cpu")
    opt = make(cls, params, impl, "paper", variant)
    for n in range(2):
        set_grads(params, n + 3)
        opt.step()
    for p in params:
        p.data = p.data.to(CUDA)
    set_grads(params, 5)
    with pytest.raises(RuntimeError, match=r"its optimizer state .* is on cpu/torch.float32 but the parameter is on "
                                           r"cuda:0/torch.float32.*optimizer.load_state_dict\(optimizer.state_dict"):
        opt.step()
    opt.load_state_dict(opt.state_dict())  # the advice, as written
    run_steps(opt, params, 3, start=5)
    assert_state_on_device(opt)
