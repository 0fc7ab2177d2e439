"""TRAdam and TRSGD: TRAlgo over torch's own Adam and SGD kernels.

How the fast path stays fast: the gradient the base update needs is
``g + c (w - a) + wd w``, which equals ``(g - c a) + (c + wd) w``. So before torch's kernel runs we do
one in-place foreach op ``grad -= c * anchor`` and hand the kernel ``weight_decay = wd + c`` and
``lr = lr / (k + 1)``. Nothing parameter-sized is allocated, and every torch implementation (fused,
foreach, for-loop; CPU, CUDA, ...) is reused as is. At ``k == 0`` the proximal term is zero: the
anchor is refreshed with one foreach copy and the grad is left alone.

How a step is dispatched, in one place: each param group has a :class:`GroupPlan` that says which implementation
runs it (``"torch"``: torch's fused/foreach/for-loop kernel, as the group's ``fused``/``foreach`` flags say, with
the proximal term folded in; ``"compiled"``: our torch.compile'd single pass; ``"capturable"``: the device-side
bookkeeping for CUDA graphs), whether the proximal term is folded into the weight decay or, for AdamW-style
decoupled decay, into the grads, and whether the kernel gets the released TRAdam's eps. :meth:`_TRMixin._tr_plan`
makes it the first time a group is stepped after it was added or loaded, and remakes it when something it depends
on has changed since: the group's flags (``fused``, ``foreach``, ``capturable``, ``differentiable``,
``decoupled_weight_decay``, ``tr_mode``), its parameter list, or the device and dtype of its first parameter
(``model.to(device)`` after the optimizer was built; parameters of one group share a device in practice, and
torch's kernels refuse mixed ones). Those form a key compared at every step (a tuple of a few dict reads). What
may change at every step is read at every step: the lr and TR hyper-parameters, k, and whether the Adam state that
the compiled kernel needs exists yet.

``step()`` is then thin, like torch.optim's: make every group's TR numbers first (so a bad lr is refused before
any weight moves), run :meth:`_step_group` for each group, advance the counters. The functional pieces are in
``_tr`` (counter, anchors, coefficient, fold), ``_compat`` (torch's kernel for one group, every private torch API),
``_compiled`` and ``_reference``. Param groups are never modified during a step: the kernel is handed this
step's lr, weight decay and eps as arguments.

Side effect to know about: after ``step()`` the ``.grad`` of a stepped parameter holds
``g - c * anchor`` (``g + c * anchor`` with ``maximize=True``) instead of the raw gradient at inner
steps ``k > 0``. Read gradients (norms, logging, clipping) before ``step()``, as usual.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch.optim import SGD, Adam

from . import _compat, _compiled, _reference, _tr

__all__ = ["TRAdam", "TRSGD"]


def _fused_supported(params) -> bool:
    """True when torch's fused kernels accept every tensor (chosen by capability, not by device name)."""
    devices = _compat.fused_kernel_devices()
    for p in params:
        if not torch.is_tensor(p) or not torch.is_floating_point(p) or p.device.type not in devices:
            return False
        if p.is_sparse:
            return False
    return True


def _plan_key(group: dict) -> tuple:
    """What a :class:`GroupPlan` depends on (see the module docstring); compared at every step."""
    params = group["params"]
    first = params[0] if params else None
    return (id(params), len(params), first.device if first is not None else None,
            first.dtype if first is not None else None, group.get("fused"), group.get("foreach"),
            group.get("capturable"), group.get("differentiable"), group.get("decoupled_weight_decay"),
            group.get("tr_mode"))


@dataclass(frozen=True, eq=False)
class GroupPlan:
    """How one param group steps, decided once for it (see the module docstring)."""

    group: dict
    key: tuple
    impl: str  # "torch" | "compiled" | "capturable"
    decoupled: bool  # AdamW-style decay: the proximal term goes into the grads, not into weight_decay
    release_eps: bool  # TRAdam, reference mode, not capturable: the kernel gets eps / sqrt(1 - beta2^t)


class _TRMixin:
    """What TRAdam and TRSGD share: the plan per group, the TR bookkeeping around the kernel, checkpoints."""

    _tr_name = "TR optimizer"

    # ------------------------------------------------------------------------- construction and checkpoints
    def _tr_setup(self, tr_lambda, tr_period, tr_inner_decay, tr_mode, compiled, capturable=False):
        self._tr_defaults = _tr.check_tr_hparams(tr_lambda, tr_period, tr_inner_decay, tr_mode,
                                                 where=self._tr_name)
        self._tr_compiled = bool(compiled)
        self._tr_capturable = bool(capturable)
        self._tr_plans: dict = {}  # id(group) -> GroupPlan

    def _tr_finish_init(self) -> None:
        """After the base ``__init__``: record the TR defaults (for ``add_param_group``) and undo torch's
        ``_step_supports_amp_scaling = True`` for fused kernels, so GradScaler unscales before our step and skips
        it on inf/NaN (the fused kernel must never receive scaled grads with our proximal term)."""
        self.defaults.update(self._tr_defaults)
        self.defaults["capturable"] = self._tr_capturable
        _compat.opt_out_of_amp_scaling(self)

    def __getstate__(self) -> dict:  # pickling / copy.deepcopy keep the TR settings
        state = super().__getstate__()  # type: ignore[misc]
        state["_tr_defaults"] = self._tr_defaults
        state["_tr_compiled"] = self._tr_compiled
        state["_tr_capturable"] = self._tr_capturable
        return state

    def __setstate__(self, state: dict) -> None:
        # also called by torch's load_state_dict with the new groups and state: every plan is remade
        super().__setstate__(state)  # type: ignore[misc]
        self._tr_plans = {}
        _compat.opt_out_of_amp_scaling(self)

    def _tr_default_kernel(self, group: dict) -> None:
        """A new group's kernel: torch's fused one when every tensor supports it (torch itself defaults to the
        for-loop on CPU) and the user chose neither foreach nor fused; the choice is visible in the group."""
        if group.get("fused") is None and group.get("foreach") is None and not group.get("differentiable"):
            if _fused_supported(group["params"]):
                group["fused"] = True
        self._tr_check_group(group)
        if group.get("capturable"):
            _tr.make_capturable(group)

    def _tr_check_group(self, group: dict) -> None:
        """Refuse a group whose flags this optimizer cannot run (at add time and whenever its plan is made)."""

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)  # type: ignore[misc]
        group = self.param_groups[-1]  # type: ignore[attr-defined]
        group.setdefault("capturable", self._tr_capturable)  # torch's SGD has no such entry
        _tr.init_group(group, self._tr_defaults, where=self._tr_name)
        self._tr_default_kernel(group)

    def load_state_dict(self, state_dict: dict) -> None:
        """torch's ``load_state_dict`` (the state moves to the parameters' devices, as torch decides: tensors like the
        parameter, Adam's ``step`` to the device for fused/capturable groups), then the TR entries: a plain torch
        Adam/SGD checkpoint starts a fresh cycle; the counter lives on the device with ``capturable=True`` and on the
        host otherwise, so either kind of checkpoint loads into either kind of optimizer. A state written by another
        kind of optimizer is refused (:class:`OptimizerStateMismatch`, a ValueError)."""
        _tr.check_state_kind(state_dict, self.defaults, loader=self._tr_name)  # type: ignore[attr-defined]
        super().load_state_dict(state_dict)  # type: ignore[misc]
        for group in self.param_groups:  # type: ignore[attr-defined]
            group.setdefault("capturable", self._tr_capturable)
            _tr.init_group(group, self._tr_defaults, where=self._tr_name)
            if group["capturable"]:
                _tr.make_capturable(group, self.state)  # type: ignore[attr-defined]
            else:
                _tr.make_host_counter(group, self.state)  # type: ignore[attr-defined]

    def tr_restart(self) -> None:
        """Start a new cycle at the next step (k = 0, a new anchor), e.g. at every epoch start as the
        authors' released training script does (``--tr_restart_each_epoch``). Adam's and SGD's own state
        runs on."""
        _tr.restart(self.param_groups)  # type: ignore[attr-defined]

    # ------------------------------------------------------------------------- the plan
    def _tr_plan(self, group: dict) -> GroupPlan:
        """The group's plan, remade when its key changed (see the module docstring)."""
        key = _plan_key(group)
        plan = self._tr_plans.get(id(group))
        if plan is not None and plan.group is group and plan.key == key:
            return plan
        plan = self._tr_decide(group, key, replacing=plan is not None and plan.group is group)
        self._tr_plans[id(group)] = plan
        return plan

    def _tr_decide(self, group: dict, key: tuple, replacing: bool) -> GroupPlan:
        """The one place that decides how a group steps."""
        state = self.state  # type: ignore[attr-defined]
        capturable = bool(group.get("capturable"))
        self._tr_check_group(group)
        if capturable:
            _tr.make_capturable(group, state)
        misplaced = _tr.misplaced_state(group, state, step_on_host=not (capturable or group.get("fused")))
        if misplaced:
            index = next(i for i, g in enumerate(self.param_groups) if g is group)  # type: ignore[attr-defined]
            i, name, where_state, where_param = misplaced
            raise RuntimeError(
                f"{self._tr_name}: param group {index}, parameter {i}: its optimizer state {name!r} is on "
                f"{where_state} but the parameter is on {where_param} (the model was moved after the optimizer had "
                f"state); build the optimizer after moving the model, as torch.optim requires, or move the state "
                f"with optimizer.load_state_dict(optimizer.state_dict())."
            )
        if capturable:
            impl = "capturable"
        elif self._tr_compiled and self._tr_compiled_eligible(group):
            impl = "compiled"
        else:
            impl = "torch"
        plan = GroupPlan(group=group, key=key, impl=impl, decoupled=bool(group.get("decoupled_weight_decay")),
                         release_eps=self._tr_release_eps and group["tr_mode"] == "reference" and not capturable)
        if replacing:
            self._tr_replanned(plan)
        return plan

    _tr_release_eps = False  # TRAdam: reference mode hands the kernel the released TRAdam's eps

    def _tr_compiled_eligible(self, group: dict) -> bool:  # pragma: no cover - both classes define it
        return False

    def _tr_replanned(self, plan: GroupPlan) -> None:
        """A group's plan was remade while the optimizer has state (subclasses drop what the old plan cached)."""

    # ------------------------------------------------------------------------- the step
    @_compat.no_dynamo
    def step(self, closure: Callable[[], Any] | None = None):
        """One TRAlgo step (see the class docstring). ``closure`` as in torch.optim.

        Dynamo does not trace this method (a graph break in a compiled training step): the TR
        bookkeeping is Python control flow on counters, and the update itself runs torch's kernels.
        """
        _compat.graph_capture_health_check(self)  # type: ignore[arg-type]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        with torch.no_grad():
            work = [(plan, self._tr_begin(plan)) for plan in map(self._tr_plan, self.param_groups)]  # type: ignore
            for plan, inner in work:
                if inner.params:
                    self._step_group(plan, inner)
        state = self.state  # type: ignore[attr-defined]
        for plan, inner in work:
            _tr.finish_step(inner, state)
        return loss

    def _tr_begin(self, plan: GroupPlan) -> _tr.InnerStep:
        """This step's TR numbers and tensors for the group (no weight moves yet)."""
        if plan.impl == "capturable":
            return _tr.begin_step_capturable(plan.group, self.state, self._tr_defaults,  # type: ignore[attr-defined]
                                             where=self._tr_name)
        # stale anchors are copied by _step_group, or written by the compiled kernel inside its loop
        return _tr.begin_step(plan.group, self.state, self._tr_defaults, where=self._tr_name,  # type: ignore
                              copy_stale=False)

    def _step_group(self, plan: GroupPlan, inner: _tr.InnerStep) -> None:  # pragma: no cover - both define it
        raise NotImplementedError

    def _tr_folded_weight_decay(self, plan: GroupPlan, inner: _tr.InnerStep) -> float:
        """Make the anchors current and fold the proximal term in; the weight decay the kernel gets this step."""
        inner.copy_stale()
        extra = _tr.fold_proximal_(inner, decoupled=plan.decoupled)
        wd = plan.group["weight_decay"]
        return wd + extra if extra else wd

    def _tr_kernel_grad_mode(self):
        # torch.optim runs its kernels with grad enabled only for differentiable=True
        return torch.enable_grad() if self.defaults.get("differentiable") else nullcontext()  # type: ignore


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
    _tr_release_eps = True

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0, amsgrad: bool = False, *, tr_lambda: float = 0.1,
                 tr_period: int = 10, tr_inner_decay: bool = True, tr_mode: str = "paper",
                 foreach: bool | None = None, fused: bool | None = None, maximize: bool = False,
                 capturable: bool = False, differentiable: bool = False, compiled: bool = False):
        self._tr_setup(tr_lambda, tr_period, tr_inner_decay, tr_mode, compiled, capturable)
        self._tr_host_steps = _reference.HostSteps()
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                         foreach=foreach, maximize=maximize, capturable=capturable,
                         differentiable=differentiable, fused=fused)
        self._tr_finish_init()

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state["_tr_host_steps"] = self._tr_host_steps
        return state

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        if "_tr_host_steps" not in self.__dict__:
            self._tr_host_steps = _reference.HostSteps()

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        # reference mode's host copies of Adam's step counts, from the checkpoint (on the CPU, where it was loaded)
        self._tr_host_steps.load(state_dict, self.param_groups)

    def _tr_compiled_eligible(self, group: dict) -> bool:
        return _compiled.adam_eligible(group)

    def _tr_replanned(self, plan: GroupPlan) -> None:
        self._tr_host_steps.forget(plan.group["params"])  # counts are re-read once from the state

    def _tr_begin(self, plan: GroupPlan) -> _tr.InnerStep:
        inner = super()._tr_begin(plan)
        if plan.release_eps and inner.params:  # refused here, before any weight moves, if the steps differ
            t = self._tr_host_steps.next_step(inner.params, self.state, where=self._tr_name)
            inner.kernel_eps = (t, _reference.release_eps(plan.group["eps"], plan.group["betas"][1], t))
        return inner

    def _step_group(self, plan: GroupPlan, inner: _tr.InnerStep) -> None:
        group = plan.group
        if plan.impl == "compiled" and _compiled.adam_state_ready(group, self.state, inner.params):
            _compiled.adam_group_step(group, self.state, inner)
            return
        wd = self._tr_folded_weight_decay(plan, inner)
        eps = inner.kernel_eps[1] if inner.kernel_eps else group["eps"]
        with self._tr_kernel_grad_mode():
            _compat.adam_group_step(self, group, lr=inner.lr_eff, weight_decay=wd, eps=eps)
        if inner.kernel_eps:
            self._tr_host_steps.advance(inner.params, inner.kernel_eps[0])


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

    def _tr_compiled_eligible(self, group: dict) -> bool:
        return _compiled.sgd_eligible(group)

    def _tr_check_group(self, group: dict) -> None:
        if group.get("capturable") and not group.get("fused"):
            raise ValueError(
                "TRSGD: capturable=True runs torch's fused SGD kernel (the one that reads a tensor lr on the "
                "device), so leave foreach and fused unset and give it floating-point parameters on a device "
                "with fused SGD (CUDA, CPU)."
            )

    def _step_group(self, plan: GroupPlan, inner: _tr.InnerStep) -> None:
        group = plan.group
        if plan.impl == "compiled" and _compiled.sgd_state_ready(group, self.state, inner.params):
            _compiled.sgd_group_step(group, self.state, inner)
            return
        wd = self._tr_folded_weight_decay(plan, inner)
        fused = group["fused"]
        if fused and group["momentum"] != 0:
            # torch's fused SGD fails when some params of a group already have a momentum buffer and others (first
            # grad this step) do not: torch's non-fused path for that one step
            has_buf = {self.state[p].get("momentum_buffer") is not None for p in inner.params}
            if len(has_buf) > 1:
                fused = False
        with self._tr_kernel_grad_mode():
            _compat.sgd_group_step(self, group, lr=inner.lr_eff, weight_decay=wd, fused=fused)
