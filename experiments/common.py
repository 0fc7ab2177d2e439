"""What the experiments share: optimizer names and the one factory that builds an optimizer from them.

``small_batch.py`` (``--optimizers sgd trsgd sgd@0.029 tr-rmsprop``), ``ablation.py`` (its six arms) and
``variance.py`` (its five optimizers) all build their optimizers with :func:`make_optimizer`, so a name means
the same thing in every table. (pix2pix training builds its own with ``pix2pix_tr.training.optimizers``:
Adam-family betas from ``--beta1``, one optimizer per network.) Results are written with
:func:`pix2pix_tr.cli.json_clean` (one NaN/inf rule for every JSON file the project writes).

Names: ``sgd``, ``trsgd``, ``adam``, ``tradam``, any ``torch.optim`` class by its lower-case name (``rmsprop``,
``adamw``, ...) and ``tr-<name>`` for :class:`pix2pix_tr.optim.TrajectoryRegularized` around that class;
``NAME@LR`` sets the learning rate (:func:`parse_optimizer`).
"""

from __future__ import annotations

import inspect
from typing import Any, Iterable

import torch

__all__ = ["parse_optimizer", "is_tr", "base_of", "torch_optimizer_class", "check_optimizer_name", "make_optimizer"]


def parse_optimizer(spec: str) -> tuple[str, float | None]:
    """``"trsgd@0.029"`` -> ``("trsgd", 0.029)``; ``"adam"`` -> ``("adam", None)`` (lr from the defaults)."""
    name, _, lr = spec.strip().lower().partition("@")
    if not name:
        raise ValueError(f"empty optimizer name in {spec!r}")
    if lr:
        try:
            value = float(lr)
        except ValueError:
            raise ValueError(f"optimizer {spec!r}: the part after '@' must be a learning rate, like sgd@0.03")
        if not value > 0:
            raise ValueError(f"optimizer {spec!r}: the learning rate must be positive")
        return name, value
    return name, None


def is_tr(name: str) -> bool:
    """Whether the optimizer name is trajectory regularized (``trsgd``, ``tradam`` or ``tr-<torch optimizer>``)."""
    name = parse_optimizer(name)[0]
    return name in ("trsgd", "tradam") or name.startswith("tr-")


def base_of(name: str) -> str:
    """The plain optimizer a TR one wraps: ``trsgd`` -> ``sgd``, ``tr-rmsprop`` -> ``rmsprop``; others unchanged."""
    name = parse_optimizer(name)[0]
    if name in ("trsgd", "tradam"):
        return name[2:]
    return name[3:] if name.startswith("tr-") else name


def torch_optimizer_class(name: str) -> type[torch.optim.Optimizer]:
    """``torch.optim``'s class of that lower-case name; an unknown name raises ValueError listing the names."""
    classes = {n.lower(): c for n, c in vars(torch.optim).items()
               if isinstance(c, type) and issubclass(c, torch.optim.Optimizer) and c is not torch.optim.Optimizer}
    if name not in classes:
        raise ValueError(f"unknown optimizer {name!r}: use sgd, trsgd, adam, tradam, a torch.optim class name "
                         f"({', '.join(sorted(classes))}) or tr-<that name> for TrajectoryRegularized around it")
    return classes[name]


def check_optimizer_name(spec: str) -> None:
    """Raise ValueError (one sentence) when ``spec`` names no optimizer :func:`make_optimizer` can build."""
    name, _ = parse_optimizer(spec)
    if name not in ("trsgd", "tradam"):
        torch_optimizer_class(base_of(name))


def make_optimizer(name: str, params: Iterable[torch.nn.Parameter], *, lr: float, momentum: float = 0.0,
                   weight_decay: float = 0.0, tr_lambda: float = 0.1, tr_period: int = 10,
                   tr_inner_decay: bool = True, tr_mode: str = "paper", fused: bool | None = None
                   ) -> torch.optim.Optimizer:
    """The optimizer ``name`` (without ``@LR``: pass ``lr``) over ``params``.

    ``sgd``-based optimizers get ``momentum``; every optimizer gets coupled ``weight_decay`` where its class
    takes one; TR ones get the ``tr_*`` settings; ``fused`` is passed on when given (the plain optimizers'
    fused kernels are the ones TRSGD/TRAdam run on, so S = 1 reproduces them bit for bit). Bad values raise the
    optimizer's own ValueError.
    """
    name = parse_optimizer(name)[0]
    tr = dict(tr_lambda=tr_lambda, tr_period=tr_period, tr_inner_decay=tr_inner_decay, tr_mode=tr_mode)
    extra: dict[str, Any] = {} if fused is None else {"fused": fused}
    params = list(params)
    if name == "trsgd":
        from pix2pix_tr.optim import TRSGD
        return TRSGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, **tr, **extra)
    if name == "tradam":
        from pix2pix_tr.optim import TRAdam
        return TRAdam(params, lr=lr, weight_decay=weight_decay, **tr, **extra)
    base_name = base_of(name)
    cls = torch_optimizer_class(base_name)
    kwargs: dict[str, Any] = dict(lr=lr, **extra)
    if "weight_decay" in inspect.signature(cls).parameters:
        kwargs["weight_decay"] = weight_decay
    if base_name == "sgd":
        kwargs["momentum"] = momentum
    base = cls(params, **kwargs)
    if not is_tr(name):
        return base
    from pix2pix_tr.optim import TrajectoryRegularized
    return TrajectoryRegularized(base, **tr)
