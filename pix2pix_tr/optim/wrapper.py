"""TrajectoryRegularized: TRAlgo around any torch.optim optimizer.

``TrajectoryRegularized(torch.optim.Adam(params, amsgrad=True))`` is TRAMSGrad; AdamW, RMSprop,
Adagrad, SGD, ... work the same way. The wrapper shares the base optimizer's ``param_groups`` and
``state`` (the TR counter and anchors live there), so ``state_dict()`` of either object is the whole
training state, and LR schedulers can be built on the wrapper or on the base.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch.optim import Optimizer

from . import _compat, _tr

__all__ = ["TrajectoryRegularized"]


class TrajectoryRegularized(Optimizer):
    r"""Wrap ``base_optimizer`` with Trajectory Regularization (Algorithm 1, Zhang et al. 2019).

    Per param group: at step n with k = n mod ``tr_period`` the anchor becomes a copy of the weights
    when k == 0; the base optimizer then steps on the gradient ``g + c (w - anchor)`` with its lr
    temporarily set to ``lr / (k + 1)``. Everything the base does with the gradient (its own weight
    decay, decoupled or not, momentum, maximize) comes after. ``c = tr_lambda`` ("paper") or
    ``2 * tr_lambda * lr0 / lr`` ("reference").

    After ``step()`` the ``.grad`` of stepped parameters holds ``g + c (w - anchor)`` (with
    ``maximize=True`` in the base: ``g - c (w - anchor)``, so that the base's negation pulls towards the
    anchor too).

    For Adam and SGD prefer :class:`TRAdam` / :class:`TRSGD`: they fold the proximal term into torch's
    fused kernels and allocate nothing per step; this generic path allocates one temporary per tensor.
    """

    _tr_name = "TrajectoryRegularized"

    def __init__(self, base_optimizer: Optimizer, tr_lambda: float = 0.1, tr_period: int = 10,
                 tr_inner_decay: bool = True, tr_mode: str = "paper"):
        if not isinstance(base_optimizer, Optimizer):
            raise TypeError(
                f"TrajectoryRegularized: base_optimizer must be a torch.optim.Optimizer instance "
                f"(e.g. torch.optim.Adam(model.parameters())), got {type(base_optimizer).__name__}."
            )
        if isinstance(base_optimizer, TrajectoryRegularized) or hasattr(base_optimizer, "_tr_defaults"):
            raise TypeError("TrajectoryRegularized: base_optimizer is already trajectory regularized.")
        if base_optimizer.__class__.__name__ == "LBFGS":
            raise TypeError("TrajectoryRegularized: LBFGS re-evaluates its closure inside step() and "
                            "cannot be trajectory regularized; use a first-order optimizer.")
        self._tr_ready = False
        self.base_optimizer = base_optimizer
        self._tr_defaults = _tr.check_tr_hparams(tr_lambda, tr_period, tr_inner_decay, tr_mode,
                                                 where=self._tr_name)
        # Optimizer.__init__ sets up hooks and step patching; the group it is given is ignored (see
        # add_param_group) and param_groups/state are the base's (see the properties below).
        _compat.init_optimizer_shell(self, base_optimizer.defaults)
        _compat.opt_out_of_amp_scaling(self)  # GradScaler unscales and skips itself: never pass it scaled grads
        self._tr_ready = True
        for group in base_optimizer.param_groups:
            _tr.init_group(group, self._tr_defaults, where=self._tr_name)

    @property
    def _tr_loader_name(self) -> str:
        return f"TrajectoryRegularized({type(self.base_optimizer).__name__})"

    # The wrapper has no groups or state of its own: it reads and writes the base's.
    @property
    def param_groups(self):  # type: ignore[override]
        return self.base_optimizer.param_groups

    @param_groups.setter
    def param_groups(self, value):
        if self.__dict__.get("_tr_ready"):
            self.base_optimizer.param_groups = value

    @property
    def state(self):  # type: ignore[override]
        return self.base_optimizer.state

    @state.setter
    def state(self, value):
        if self.__dict__.get("_tr_ready"):
            self.base_optimizer.state = value

    def add_param_group(self, param_group: dict) -> None:
        if not self.__dict__.get("_tr_ready"):
            return
        self.base_optimizer.add_param_group(param_group)
        _tr.init_group(self.base_optimizer.param_groups[-1], self._tr_defaults, where=self._tr_name)

    def tr_restart(self) -> None:
        """Start a new cycle at the next step (k = 0, a new anchor); the base optimizer's state runs on."""
        _tr.restart(self.base_optimizer.param_groups)

    def state_dict(self) -> dict:
        return self.base_optimizer.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        """The base's ``load_state_dict``; a state written by another kind of optimizer is refused
        (:class:`OptimizerStateMismatch`, a ValueError)."""
        _tr.check_state_kind(state_dict, self.base_optimizer.defaults, loader=self._tr_loader_name)
        self.base_optimizer.load_state_dict(state_dict)
        for group in self.base_optimizer.param_groups:
            _tr.init_group(group, self._tr_defaults, where=self._tr_name)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base_optimizer.zero_grad(set_to_none=set_to_none)

    def __getstate__(self) -> dict:
        return {"base_optimizer": self.base_optimizer, "_tr_defaults": self._tr_defaults}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._tr_ready = False
        _compat.init_optimizer_shell(self, self.base_optimizer.defaults)
        _compat.opt_out_of_amp_scaling(self)
        self._tr_ready = True

    def __repr__(self) -> str:
        return f"TrajectoryRegularized({self.base_optimizer!r})"

    @_compat.no_dynamo
    def step(self, closure: Callable[[], Any] | None = None):
        """One TRAlgo step around ``base_optimizer.step()``. ``closure`` as in torch.optim."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        # The base optimizer reads its lr from the group, so the inner lr is set there for its step and the
        # scheduler's lr put back afterwards (even if the step raises).
        steps = []
        saved = []
        try:
            with torch.no_grad():
                for group in self.base_optimizer.param_groups:
                    inner = _tr.begin_step(group, self.base_optimizer.state, self._tr_defaults, where=self._tr_name)
                    steps.append(inner)
                    saved.append((group, group["lr"]))
                    if inner.c != 0.0 and inner.params:
                        sign = -1.0 if group.get("maximize", False) else 1.0
                        _tr.add_prox_exact_(inner.grads, [p.detach() for p in inner.params], inner.anchors,
                                            sign * inner.c)
                    group["lr"] = inner.lr_eff
            self.base_optimizer.step()
        finally:
            for group, lr in saved:
                group["lr"] = lr
        for inner in steps:
            _tr.finish_step(inner, self.base_optimizer.state)
        return loss
