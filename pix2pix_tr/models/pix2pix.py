"""The pix2pix optimisation step (Isola et al. 2017), as in the original ``Pix2PixModel.optimize_parameters``.

One iteration on a batch ``(real_A, real_B)``:

1. ``fake_B = G(real_A)``.
2. Discriminator: D sees the condition and an image concatenated on channels. ``loss_D = 0.5 * (GAN(D(A, fake_B
   detached), fake) + GAN(D(A, real_B), real))`` (+ the gradient penalty for ``wgangp``); one D update.
3. Generator, against the *updated* D, whose parameters are frozen: ``loss_G = GAN(D(A, fake_B), real) +
   lambda_L1 * |fake_B - real_B|_1``; one G update.

Each network has its own optimiser and its own GradScaler (a disabled scaler is a no-op, so one code path
serves fp32, bf16 and fp16). With fp16, a step whose gradients overflowed is skipped by the scaler, which
then never calls the optimiser: a TR optimiser's step counter only counts updates that happened.

Before each update the losses are checked: a NaN or inf raises :class:`NonFiniteLossError` *before* the
weights are touched, so the networks stay at their last finite values.

Distributed training: pass the DistributedDataParallel wrappers as ``G`` and ``D`` and the plain module as
``D_local``. D runs through its DDP wrapper exactly once per D update (the real pair), so DDP reduces its
gradients once; the fake pair and the G step use ``D_local`` (in the G step D's parameters are frozen, so
nothing of D is reduced there).
"""

from __future__ import annotations

import contextlib
from typing import Callable, ContextManager

import torch
import torch.nn as nn
import torch.nn.functional as F

from .losses import GANLoss, gradient_penalty


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or inf; ``name`` and ``value`` say which. Raised before the update it would feed."""

    def __init__(self, name: str, value: float) -> None:
        super().__init__(f"the {name} loss became {value}")
        self.name, self.value = name, value


def set_requires_grad(net: nn.Module, flag: bool) -> None:
    for p in net.parameters():
        p.requires_grad_(flag)


def check_finite(losses: dict[str, torch.Tensor], agree: Callable[[bool], bool] | None = None) -> dict[str, float]:
    """Return the losses as floats (one device sync); raise NonFiniteLossError if one is NaN/inf.

    ``agree(flag) -> bool`` makes all DDP ranks take the same decision (any rank non-finite -> all raise)."""
    values = torch.stack([v.detach().float() for v in losses.values()]).cpu().tolist()
    bad = [(k, v) for k, v in zip(losses, values) if not (v == v and abs(v) != float("inf"))]
    flag = bool(bad)
    if agree is not None:
        flag = agree(flag)
    if flag:
        name, value = bad[0] if bad else ("(another rank's)", float("nan"))
        raise NonFiniteLossError(name, value)
    return dict(zip(losses, values))


def train_step(G: nn.Module, D: nn.Module, opt_G: torch.optim.Optimizer, opt_D: torch.optim.Optimizer,
               real_A: torch.Tensor, real_B: torch.Tensor, *, gan_loss: GANLoss, lambda_L1: float = 100.0,
               lambda_gp: float = 10.0, D_local: nn.Module | None = None,
               scaler_G: torch.amp.GradScaler | None = None, scaler_D: torch.amp.GradScaler | None = None,
               autocast: Callable[[], ContextManager] = contextlib.nullcontext,
               agree: Callable[[bool], bool] | None = None) -> tuple[dict[str, float], torch.Tensor]:
    """One pix2pix iteration (D update, then G update). Returns ``(losses, fake_B)``: the losses as floats
    (``G_GAN``, ``G_L1``, ``D_real``, ``D_fake``, plus ``D_gp`` for wgangp) and the detached fake_B."""
    D_local = D if D_local is None else D_local
    # 1. generate
    with autocast():
        fake_B = G(real_A)
    fake_AB = torch.cat((real_A, fake_B), 1)
    real_AB = torch.cat((real_A, real_B), 1)

    # 2. discriminator update
    set_requires_grad(D_local, True)
    opt_D.zero_grad(set_to_none=True)
    with autocast():
        loss_D_fake = gan_loss(D_local(fake_AB.detach()), False)
        loss_D_real = gan_loss(D(real_AB), True)
        losses_D = {"D_real": loss_D_real, "D_fake": loss_D_fake}
        loss_D = 0.5 * (loss_D_fake + loss_D_real)
        if gan_loss.gan_mode == "wgangp" and lambda_gp > 0:
            losses_D["D_gp"] = gradient_penalty(D_local, real_AB, fake_AB, lambda_gp=lambda_gp)
            loss_D = loss_D + losses_D["D_gp"]
    values = check_finite(losses_D, agree)
    _backward_and_step(loss_D, opt_D, scaler_D)

    # 3. generator update against the updated, frozen D
    set_requires_grad(D_local, False)
    opt_G.zero_grad(set_to_none=True)
    with autocast():
        loss_G_GAN = gan_loss(D_local(fake_AB), True)
    loss_G_L1 = F.l1_loss(fake_B.float(), real_B.float()) * lambda_L1
    values.update(check_finite({"G_GAN": loss_G_GAN, "G_L1": loss_G_L1}, agree))
    _backward_and_step(loss_G_GAN + loss_G_L1, opt_G, scaler_G)
    set_requires_grad(D_local, True)
    return {k: values[k] for k in ("G_GAN", "G_L1", "D_real", "D_fake", "D_gp") if k in values}, fake_B.detach()


def _backward_and_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer,
                       scaler: torch.amp.GradScaler | None) -> None:
    if scaler is None or not scaler.is_enabled():
        loss.backward()
        optimizer.step()
        return
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
