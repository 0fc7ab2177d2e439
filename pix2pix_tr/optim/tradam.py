"""TRAdam and TRSGD: TRAlgo over torch's own Adam and SGD kernels.

How the fast path stays fast: the gradient the base update needs is
``g + c (w - a) + wd w``, which equals ``(g - c a) + (c + wd) w``. So before torch's kernel runs we do
one in-place foreach op ``grad -= c * anchor`` and hand the kernel ``weight_decay = wd + c`` and
``lr = lr / (k + 1)``. Nothing parameter-sized is allocated, and every torch implementation (fused,
foreach, for-loop; CPU, CUDA, ...) is reused as is. At ``k == 0`` the proximal term is zero: the
anchor is refreshed with one foreach copy and the grad is left alone.

Side effect to know about: after ``step()`` the ``.grad`` of a stepped parameter holds
``g - c * anchor`` (``g + c * anchor`` with ``maximize=True``) instead of the raw gradient at inner
steps ``k > 0``. Read gradients (norms, logging, clipping) before ``step()``, as usual.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch.optim import SGD, Adam
from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

from . import _compiled, _reference, _tr
from ._tr import no_dynamo as _no_dynamo

__all__ = ["TRAdam", "TRSGD"]


def _fused_supported(params) -> bool:
    """True when torch's fused kernels accept every tensor (chosen by capability, not by device name)."""
    devices = set(_get_fused_kernels_supported_devices())
    for p in params:
        if not torch.is_tensor(p) or not torch.is_floating_point(p) or p.device.type not in devices:
            return False
        if p.is_sparse:
            return False
    return True


class _TRMixin:
    """Shared step logic: plan every group, fold the proximal term, run the base step, finish."""

    _tr_name = "TR optimizer"
    # The proximal term must be added to *unscaled* grads: GradScaler has to unscale and skip itself.
    _step_supports_amp_scaling = False

    def _tr_base_step(self) -> None:
        """The base class's step (Adam's, SGD's) without torch's hook wrapper: torch wraps a class's ``step`` with
        the pre/post-hook runner once an instance of that class exists, and our own ``step`` is wrapped already,
        so going through ``super().step()`` would run this optimizer's hooks a second time, mid-step."""
        mro = type(self).__mro__
        for klass in mro[mro.index(_TRMixin) + 1:]:
            if "step" in vars(klass):
                step = vars(klass)["step"]
                getattr(step, "__wrapped__", step)(self) if getattr(step, "hooked", False) else step(self)
                return
        raise TypeError(f"{type(self).__name__} has no base optimizer step")  # pragma: no cover

    def _tr_setup(self, tr_lambda, tr_period, tr_inner_decay, tr_mode, compiled, capturable=False):
        self._tr_defaults = _tr.check_tr_hparams(tr_lambda, tr_period, tr_inner_decay, tr_mode,
                                                 where=self._tr_name)
        self._tr_compiled = bool(compiled)
        self._tr_capturable = bool(capturable)

    def _tr_finish_init(self) -> None:
        """After the base ``__init__``: record the TR defaults (for ``add_param_group``) and undo torch's
        ``_step_supports_amp_scaling = True`` for fused kernels, so GradScaler unscales before our step and skips
        it on inf/NaN (the fused kernel must never receive scaled grads with our proximal term)."""
        self.defaults.update(self._tr_defaults)
        self.defaults["capturable"] = self._tr_capturable
        self._step_supports_amp_scaling = False

    def __getstate__(self) -> dict:  # pickling / copy.deepcopy keep the TR settings
        state = super().__getstate__()  # type: ignore[misc]
        state["_tr_defaults"] = self._tr_defaults
        state["_tr_compiled"] = self._tr_compiled
        state["_tr_capturable"] = self._tr_capturable
        return state

    def _tr_choose_impl(self, group: dict) -> None:
        # Default to torch's fused kernel when every tensor supports it (torch itself defaults to the
        # for-loop on CPU); an explicit foreach=/fused= from the user is respected.
        if group.get("fused") is None and group.get("foreach") is None and not group.get("differentiable"):
            if _fused_supported(group["params"]):
                group["fused"] = True
        if group.get("capturable"):
            _tr.make_capturable(group)

    def _tr_adjust_group(self, group: dict, plan) -> None:
        """Last-minute per-step adjustments of a group before the base step (restored afterwards)."""

    def tr_restart(self) -> None:
        """Start a new cycle at the next step (k = 0, a new anchor), e.g. at every epoch start as the
        authors' released training script does (``--tr_restart_each_epoch``). Adam's and SGD's own state
        runs on."""
        _tr.restart(self.param_groups)  # type: ignore[attr-defined]

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)  # type: ignore[misc]
        group = self.param_groups[-1]  # type: ignore[attr-defined]
        group.setdefault("capturable", self._tr_capturable)  # torch's SGD has no such entry
        _tr.init_group(group, self._tr_defaults, where=self._tr_name)
        self._tr_choose_impl(group)

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)  # type: ignore[misc]
        for group in self.param_groups:  # type: ignore[attr-defined]
            # A plain torch Adam/SGD checkpoint has no TR entries: start a fresh cycle.
            group.setdefault("capturable", self._tr_capturable)
            _tr.init_group(group, self._tr_defaults, where=self._tr_name)
            # the counter lives on the device with capturable=True, on the host otherwise: either
            # checkpoint loads into either kind of optimizer
            if group["capturable"]:
                _tr.make_capturable(group)
            else:
                _tr.make_host_counter(group, self.state)  # type: ignore[attr-defined]

    @_no_dynamo
    def step(self, closure: Callable[[], Any] | None = None):
        """One TRAlgo step (see the class docstring). ``closure`` as in torch.optim.

        Dynamo does not trace this method (a graph break in a compiled training step): the TR
        bookkeeping is Python control flow on counters, and the update itself runs torch's kernels.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        saved = []
        with torch.no_grad():
            plans = [(_tr.plan_group_capturable(group, self.state, self._tr_defaults,  # type: ignore
                                                where=self._tr_name) if group.get("capturable") else
                      _tr.plan_group(group, self.state, self._tr_defaults, where=self._tr_name,  # type: ignore
                                     copy_stale=False))  # the eager path copies them, a compiled loop writes them
                     for group in self.param_groups]  # type: ignore[attr-defined]
        compiled = [plan for plan in plans if self._tr_compiled and plan.params
                    and self._tr_compiled_ready(plan.group, self.state, plan.params)]  # type: ignore
        compiled_ids = {id(plan) for plan in compiled}
        eager = [plan for plan in plans if id(plan) not in compiled_ids]
        all_groups = self.param_groups  # type: ignore[has-type]
        try:
            with torch.no_grad():
                for plan in eager:
                    plan.copy_stale()
                    group = plan.group
                    saved.append((group, group["lr"], group["weight_decay"], group.get("fused"), group.get("eps")))
                    self._tr_adjust_group(group, plan)
                    if plan.c != 0.0 and plan.params:
                        sign = 1.0 if group["maximize"] else -1.0
                        _tr.foreach_add_(plan.grads, plan.anchors, alpha=sign * plan.c)
                        if group.get("decoupled_weight_decay"):  # AdamW-style decay: the kernel's wd is not L2,
                            _tr.foreach_add_(plan.grads, plan.params, alpha=-sign * plan.c)  # add c*w ourselves
                        else:
                            group["weight_decay"] = group["weight_decay"] + plan.c
                    group["lr"] = plan.lr_eff
                if compiled:
                    for plan in compiled:
                        self._tr_compiled_step(plan.group, self.state, plan)  # type: ignore
                    self.param_groups = [plan.group for plan in eager]
                    if any(plan.params for plan in eager):
                        self._tr_base_step()
            if not compiled:
                self._tr_base_step()
        finally:
            self.param_groups = all_groups
            for group, lr, wd, fused, eps in saved:
                group["lr"] = lr
                group["weight_decay"] = wd
                group["fused"] = fused
                if eps is not None:
                    group["eps"] = eps
        for plan in plans:
            _tr.finish_group(plan, self.state)  # type: ignore[attr-defined]
        return loss


class TRAdam(_TRMixin, Adam):
    r"""Adam with Trajectory Regularization (TRAlgo over Adam; Zhang et al., IJCAI 2019).

    Every ``tr_period`` (S) steps the anchor becomes a copy of the weights; for the next S inner steps
    (k = 0..S-1) Adam minimises ``f(w) + c/2 ||w - anchor||^2`` with step size ``lr / (k + 1)``. Adam's
    moments and step count run on, never reset.

    Args (beyond :class:`torch.optim.Adam`):
        tr_lambda: proximal strength lambda (paper: 0.1).
        tr_period: S, the number of inner steps per anchor (paper: 10).
        tr_inner_decay: use ``lr / (k + 1)`` for inner step k (True, as in the paper) or plain ``lr``.
        tr_mode: ``"paper"`` (c = tr_lambda) or ``"reference"`` (c = 2 * tr_lambda * lr0 / lr, what the
            authors' released code does; lr0 = the group's lr when it was added).
        foreach, fused: torch's implementation switches. Leaving both None picks the fused kernel when
            every parameter supports it (float tensors on a fused-capable device), else torch's default.
        capturable: torch's name: the step can be captured in a CUDA graph and replayed. The TR counter
            (``group["tr_step"]``, an int64 tensor) and ``lr`` (a 0-dim tensor, which schedulers update in
            place) live on the parameters' device, and the inner lr, the anchor refresh and the proximal
            term are computed there, with no host-device synchronisation. Warm up a few steps before
            capturing (the first step allocates the state, as in torch). Checkpoints load into either mode.
        compiled: one torch.compile'd single-pass kernel per param group (see docs/optimizers.md).

    ``param_groups[i]["lr"]`` always holds your (scheduler's) lr; the inner lr is applied only inside
    ``step()``. The step counter (``group["tr_step"]``), the anchors (``state[p]["tr_anchor"]``) and
    Adam's state are all in ``state_dict()``. With ``torch.amp.GradScaler`` the grads are unscaled
    before ``step()`` and a skipped step leaves the counter and anchors untouched.
    """

    _tr_name = "TRAdam"

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0, amsgrad: bool = False, *, tr_lambda: float = 0.1,
                 tr_period: int = 10, tr_inner_decay: bool = True, tr_mode: str = "paper",
                 foreach: bool | None = None, fused: bool | None = None, maximize: bool = False,
                 capturable: bool = False, differentiable: bool = False, compiled: bool = False):
        self._tr_setup(tr_lambda, tr_period, tr_inner_decay, tr_mode, compiled, capturable)
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                         foreach=foreach, maximize=maximize, capturable=capturable,
                         differentiable=differentiable, fused=fused)
        self._tr_finish_init()

    _tr_compiled_ready = staticmethod(_reference.not_reference(_compiled.adam_ready))
    _tr_compiled_step = staticmethod(_compiled.adam_group_step)

    def _tr_adjust_group(self, group: dict, plan) -> None:
        # the release's eps placement, on torch's own kernels; it needs the step count on the host, so a
        # capturable group (no host reads) keeps torch's placement
        if group["tr_mode"] == "reference" and not group.get("capturable"):
            _reference.release_eps(group, self.state, plan.params, where=self._tr_name)


class TRSGD(_TRMixin, SGD):
    r"""SGD (with momentum) and Trajectory Regularization (TRSGD; Zhang et al., IJCAI 2019).

    Same TR arguments and guarantees as :class:`TRAdam`; the base update is :class:`torch.optim.SGD`
    (momentum, dampening, nesterov, coupled weight decay, maximize), whose momentum buffer runs on
    across cycles. ``capturable=True`` (which torch's SGD lacks) keeps the TR counter and lr on the device
    as for TRAdam and runs torch's fused SGD kernel, the one that takes a tensor lr without a host read.
    """

    _tr_name = "TRSGD"

    def __init__(self, params, lr: float, momentum: float = 0, dampening: float = 0,
                 weight_decay: float = 0, nesterov: bool = False, *, tr_lambda: float = 0.1,
                 tr_period: int = 10, tr_inner_decay: bool = True, tr_mode: str = "paper",
                 maximize: bool = False, foreach: bool | None = None, fused: bool | None = None,
                 differentiable: bool = False, compiled: bool = False, capturable: bool = False):
        self._tr_setup(tr_lambda, tr_period, tr_inner_decay, tr_mode, compiled, capturable)
        super().__init__(params, lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                         nesterov=nesterov, maximize=maximize, foreach=foreach,
                         differentiable=differentiable, fused=fused)
        self._tr_finish_init()

    _tr_compiled_ready = staticmethod(_compiled.sgd_ready)
    _tr_compiled_step = staticmethod(_compiled.sgd_group_step)

    def _tr_choose_impl(self, group: dict) -> None:
        super()._tr_choose_impl(group)
        if group.get("capturable") and not group.get("fused"):
            raise ValueError(
                "TRSGD: capturable=True runs torch's fused SGD kernel (the one that reads a tensor lr on the "
                "device), so leave foreach and fused unset and give it floating-point parameters on a device "
                "with fused SGD (CUDA, CPU)."
            )

    def _tr_adjust_group(self, group: dict, plan) -> None:
        # torch's fused SGD fails when some params of a group already have a momentum buffer and
        # others (first grad this step) do not; take torch's non-fused path for that one step.
        if group.get("fused") and group["momentum"] != 0:
            has_buf = {self.state[p].get("momentum_buffer") is not None for p in plan.params}
            if len(has_buf) > 1:
                group["fused"] = False
