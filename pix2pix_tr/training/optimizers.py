"""Optimisers and learning-rate schedules of the training application.

``make_optimizer`` maps ``--optimizer`` to a torch optimiser: ``tradam`` / ``trsgd`` are the paper's
Trajectory Regularized optimisers from :mod:`pix2pix_tr.optim`, ``adam`` / ``sgd`` the plain torch ones
(``adam`` with pix2pix's settings is the original recipe). ``--beta1`` is Adam's beta1 or SGD's momentum.

Fair baselines: all four run the same kernel family. TRAdam and TRSGD run torch's fused Adam/SGD kernel when
every parameter is a floating-point tensor on a device that has one (CPU and CUDA among them), and
``adam``/``sgd`` follow the very same decision (:func:`fused_like_tr`), where torch's own default would be the
for-loop on a CPU and the for-each kernels on CUDA. So an Adam-vs-TRAdam run compares the algorithms, not the
kernels. ``--fused`` makes the fused kernels required (an error where the device has none).

``make_scheduler`` maps ``--lr_policy``; every schedule is stepped once at the *end* of each epoch, so epoch
``e`` (1-based) trains with the schedule's value at ``e - 1``:

* ``linear`` (pix2pix's default): ``lr`` for ``n_epochs`` epochs, then linearly towards 0 over
  ``n_epochs_decay`` epochs: epoch ``e`` trains at ``lr * (1 - max(0, e - n_epochs) / (n_epochs_decay + 1))``;
* ``step``: x0.1 every ``lr_decay_iters`` epochs;
* ``cosine``: cosine from ``lr`` to 0 over all ``n_epochs + n_epochs_decay`` epochs;
* ``plateau``: x0.2 when the epoch's mean generator loss has not improved by 1% (relative) for 5 epochs.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch.optim import lr_scheduler

from .errors import TrainingError


def make_optimizer(name: str, params: Iterable[torch.nn.Parameter], *, lr: float, beta1: float = 0.5,
                   beta2: float = 0.999, tr_lambda: float = 0.1, tr_period: int = 10, tr_mode: str = "paper",
                   tr_inner_decay: bool = True, fused: bool = False, compiled: bool = False) -> torch.optim.Optimizer:
    """Build the optimiser named by ``--optimizer`` over ``params`` (``compiled``: TRAdam/TRSGD's compiled=True)."""
    params = list(params)
    tr = dict(tr_lambda=tr_lambda, tr_period=tr_period, tr_inner_decay=tr_inner_decay, tr_mode=tr_mode,
              compiled=compiled)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=(beta1, beta2), fused=True if fused else fused_like_tr(params))
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=beta1, fused=True if fused else fused_like_tr(params))
    if name in ("tradam", "trsgd"):
        from pix2pix_tr.optim import TRAdam, TRSGD

        if name == "tradam":
            return TRAdam(params, lr=lr, betas=(beta1, beta2), fused=True if fused else None, **tr)
        return TRSGD(params, lr=lr, momentum=beta1, fused=True if fused else None, **tr)
    raise TrainingError(f"unknown --optimizer {name!r}: choose tradam, adam, trsgd or sgd")


def fused_like_tr(params: list[torch.nn.Parameter]) -> bool | None:
    """``True`` when TRAdam/TRSGD would run torch's fused kernel on ``params`` (else None: torch's default). The
    decision is read off a TRAdam built on them (nothing is allocated before a step), so the baselines follow
    the TR optimisers' rule wherever :mod:`pix2pix_tr.optim` decides it."""
    from pix2pix_tr.optim import TRAdam

    if not params:
        return None
    return True if TRAdam(params, lr=1.0).param_groups[0].get("fused") else None


def make_scheduler(optimizer: torch.optim.Optimizer, policy: str, *, n_epochs: int, n_epochs_decay: int,
                   lr_decay_iters: int = 50):
    """Build the ``--lr_policy`` schedule; call ``.step()`` (``.step(metric)`` for plateau) after each epoch."""
    if policy == "linear":
        def factor(epoch: int) -> float:
            return 1.0 - max(0, epoch + 1 - n_epochs) / float(n_epochs_decay + 1)
        return lr_scheduler.LambdaLR(optimizer, lr_lambda=factor)
    if policy == "step":
        return lr_scheduler.StepLR(optimizer, step_size=lr_decay_iters, gamma=0.1)
    if policy == "cosine":
        return lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, n_epochs + n_epochs_decay), eta_min=0)
    if policy == "plateau":
        return lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.2, threshold=0.01, patience=5)
    raise TrainingError(f"unknown --lr_policy {policy!r}: choose linear, step, cosine or plateau")


def step_scheduler(scheduler, metric: float) -> None:
    if isinstance(scheduler, lr_scheduler.ReduceLROnPlateau):
        scheduler.step(metric)
    else:
        scheduler.step()
