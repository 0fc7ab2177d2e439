"""What the ``fake_cuda`` tier shares: CUDA code paths executed on fake CUDA tensors, on a machine without a GPU.

``torch._subclasses.fake_tensor.FakeTensorMode`` makes CUDA tensors without a GPU: every op computes shapes, dtypes
and devices only, a device mismatch raises, and reading a CUDA value on the host (``.item()``, ``bool()``,
``float()``, ``.numpy()``) raises. Three things it lets through are caught by :class:`HostSyncWatch`, a dispatch mode
entered inside it: copies from CUDA to the CPU (``.cpu()``, ``.to("cpu")``: a synchronisation on a real GPU), ops
whose tensor arguments live on different devices (fake mode does not check foreach ops, ``copy_``, or a host tensor
indexed with device indices, which torch runs by copying the indices to the host), and (listed apart, for the data
path) blocking copies from the host to the device, which wait for the device on a real GPU.

How the tests use it (the fixtures are in ``conftest.py``):

* ``fake`` / ``fake_mode``: a plain fake mode (the optimizer tier: everything is made on the fake device).
* ``fake_gpu``: :class:`FakeGPU`, a fake mode that also takes real host tensors (as a DataLoader hands them over:
  they become fake CPU tensors when they meet the fake mode) with the watch on top. Host work with real values
  (reading a checkpoint, checking weights for NaN, building a batch from files) runs before ``with fake_gpu:`` or
  inside ``with fake_gpu.host():`` (``fake_gpu.on_host(fn)`` wraps a library function so, ``fake_gpu.host_loader()``
  a DataLoader); the device work inside ``with fake_gpu:``.

Two limits of fake tensors, and how this module gets round them:

* Under ``torch.inference_mode`` composite ops (``aten.to``, ``aten.item``, ``aten.is_nonzero``, ...) reach the
  dispatch modes undecomposed; torch's fake mode then "constant-folds" ``aten.to`` of a 0-dim host value by
  running the real copy to CUDA, which needs a driver (torch 2.11 and 2.14: "Found no NVIDIA driver"), and the
  watch would not see the ``aten._local_scalar_dense`` of a ``bool()``. The watch decomposes them, as torch does
  outside inference mode, so the code decorated with ``@torch.inference_mode()`` runs as it is.
* ``Module.to()`` on a module whose parameters are already fake (fake CPU -> fake CUDA, or ``channels_last`` of
  a fake CUDA module) fails in torch (``_apply(): Couldn't swap``: a fake parameter has a weak reference). Real
  code builds or loads its networks on the CPU and then moves them, which works: a real module's ``.to("cuda")``
  inside the fake mode gives fake CUDA parameters. The tests do that, or build on the fake device directly
  (``with fake_gpu, torch.device("cuda"):``) where only the building is tested.

Stand-ins for missing fake kernels (the optimizer tier): torch ships no fake (Meta) kernel for some fused kernels
that real GPUs run (torch 2.14: ``aten::_fused_sgd_``, both overloads, and the tensor-lr overload of
``aten::_fused_adam_``). :func:`stand_ins_registered` registers, for exactly those that are missing, stand-ins that
check that every tensor argument is on the parameters' device and shaped like its parameter, and compute nothing.
"""

from __future__ import annotations

import contextlib

import torch
from torch._subclasses.fake_tensor import FakeTensorMode, unset_fake_temporarily
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

CUDA = torch.device("cuda", 0)


def _composite(func) -> bool:
    """Whether ``func`` has a CompositeImplicitAutograd kernel, i.e. is decomposed before it reaches a dispatch mode
    outside inference mode."""
    if not isinstance(func, torch._ops.OpOverload) or func.namespace != "aten":
        return False
    return func.has_kernel_for_dispatch_key(torch._C.DispatchKey.CompositeImplicitAutograd)


def _device_type(device) -> str | None:
    return None if device is None else torch.device(device).type


# ----------------------------------------------------------------------------- the watch
class HostSyncWatch(TorchDispatchMode):
    """Records host reads of device values, device-to-host copies and ops whose tensors span devices
    (``events``), and blocking host-to-device copies (``blocking_uploads``)."""

    def __init__(self):
        super().__init__()
        self.events: list = []
        self.blocking_uploads: list = []
        self.paused = False

    def _copy(self, src: torch.Tensor, dst_type: str | None, non_blocking: bool, func) -> None:
        if dst_type is None or self.paused:
            return
        if src.device.type != "cpu" and dst_type == "cpu":
            self.events.append(f"copy from {src.device} to the CPU ({func})")
        elif src.device.type == "cpu" and dst_type != "cpu" and not non_blocking:
            self.blocking_uploads.append(f"blocking copy of a {tuple(src.shape)} {src.dtype} host tensor to "
                                         f"{dst_type} ({func})")

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if _composite(func):  # (see the module docstring: inference mode); the watch sees what it becomes
            with self:
                return func.decompose(*args, **kwargs)
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        if self.paused:
            pass
        elif func is torch.ops.aten._local_scalar_dense.default:
            if tensors and tensors[0].device.type != "cpu":
                self.events.append(f"host read of a {tensors[0].device} value ({func})")
        elif func is torch.ops.aten._to_copy.default:
            self._copy(tensors[0], _device_type(kwargs.get("device")), bool(kwargs.get("non_blocking", False)), func)
        elif func is torch.ops.aten.copy_.default:
            self._copy(args[1], args[0].device.type, bool(args[2] if len(args) > 2 else kwargs.get("non_blocking")),
                       func)
        else:  # 0-dim CPU tensors are allowed beside device tensors (torch treats them as numbers)
            devices = {t.device for t in tensors if t.dim() > 0 or t.device.type != "cpu"}
            if len(devices) > 1:
                self.events.append(f"{func} on tensors of {sorted(map(str, devices))}")
        return func(*args, **kwargs)


# ----------------------------------------------------------------------------- a fake GPU for the model/data tests
class FakeGPU:
    """A fake mode that takes real host tensors, with a :class:`HostSyncWatch` on top: ``with fake_gpu: ...``.

    ``watch.events`` collects what would synchronise with (or break on) a real GPU; :meth:`host` suspends both for
    host work on real values (the watch would see only CPU ops anyway)."""

    def __init__(self):
        self.mode = FakeTensorMode(allow_non_fake_inputs=True)
        self.watch = HostSyncWatch()
        self._stack: contextlib.ExitStack | None = None

    def __enter__(self) -> "FakeGPU":
        self._stack = contextlib.ExitStack()
        self._stack.enter_context(self.mode)
        self._stack.enter_context(self.watch)
        return self

    def __exit__(self, *exc) -> None:
        stack, self._stack = self._stack, None
        stack.close()

    @contextlib.contextmanager
    def host(self):
        """Real tensors inside: the fake mode is unset and the watch paused (e.g. reading a checkpoint)."""
        paused, self.watch.paused = self.watch.paused, True
        try:
            with unset_fake_temporarily():
                yield
        finally:
            self.watch.paused = paused

    def on_host(self, fn):
        """``fn`` wrapped to run in :meth:`host` (for monkeypatching the host half of a library function)."""
        def wrapper(*args, **kwargs):
            with self.host():
                return fn(*args, **kwargs)
        return wrapper

    def host_loader(self) -> type:
        """A ``DataLoader`` subclass whose batches are made in :meth:`host` (its seed draw, the workers, the
        dataset's items, the collation, the pinning): monkeypatch ``torch.utils.data.DataLoader`` with it to run a
        library function that loads its own data, as on a real machine, where loaders run on the host."""
        gpu = self

        class HostDataLoader(torch.utils.data.DataLoader):
            def __iter__(self):
                with gpu.host():
                    batches = super().__iter__()
                while True:
                    with gpu.host():
                        try:
                            batch = next(batches)
                        except StopIteration:
                            return
                    yield batch

        return HostDataLoader

    def assert_no_sync(self) -> None:
        assert self.watch.events == [], self.watch.events


def is_fake_cuda(t) -> bool:
    from torch._subclasses.fake_tensor import FakeTensor

    return isinstance(t, FakeTensor) and t.device == CUDA


# ----------------------------------------------------------------------------- stand-ins for missing fake kernels
def stand_in(name):
    def kernel(params, *args, **kwargs):
        device = params[0].device if params else None
        for value in list(args) + list(kwargs.values()):
            items = list(value) if isinstance(value, (list, tuple)) else [value]
            for t in items:
                if isinstance(t, torch.Tensor) and t.device != device:
                    raise RuntimeError(f"{name}: a tensor argument is on {t.device}, the parameters on {device}")
            if isinstance(value, (list, tuple)) and len(value) == len(params) and value and value[0].dim() > 0:
                for t, p in zip(value, params):
                    if t.shape != p.shape:
                        raise RuntimeError(f"{name}: a tensor of shape {tuple(t.shape)} for a parameter of shape "
                                           f"{tuple(p.shape)}")
    return kernel


def probe(step):
    """Whether ``step`` (torch's own optimizer on fake CUDA tensors) runs under fake tensors."""
    try:
        with FakeTensorMode():
            p = torch.nn.Parameter(torch.randn(3, device=CUDA))
            p.grad = torch.randn(3, device=CUDA)
            step([p])
        return True
    except Exception:  # no fake kernel: NotImplementedError, or fake mode's fallback needing a real GPU
        return False


def _sgd_tensor_lr(ps):
    opt = torch.optim.SGD(ps, lr=0.1, fused=True)
    opt.param_groups[0]["lr"] = torch.tensor(0.1, device=CUDA)  # (the constructor would read a tensor lr)
    opt.step()


def _adam_tensor_lr(ps):
    opt = torch.optim.Adam(ps, fused=True, capturable=True)
    opt.param_groups[0]["lr"] = torch.tensor(0.1, device=CUDA)
    opt.step()


PROBES = {
    "_fused_sgd_": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, fused=True).step(),
    "_fused_sgd_.tensor_lr": _sgd_tensor_lr,
    "_fused_adam_": lambda ps: torch.optim.Adam(ps, fused=True).step(),
    "_fused_adam_.tensor_lr": _adam_tensor_lr,
}


@contextlib.contextmanager
def stand_ins_registered():
    """Register device-checking stand-ins for the fused kernels torch has no fake kernel for; yield their names."""
    missing = [op for op, step in PROBES.items() if not probe(step)]
    lib = torch.library.Library("aten", "IMPL") if missing else None
    for op in missing:
        lib.impl(op, stand_in(op), "Meta")
    try:
        yield missing
    finally:
        if lib is not None:
            lib._destroy() if hasattr(lib, "_destroy") else None
            del lib
