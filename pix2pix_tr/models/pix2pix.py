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

No host synchronisation. The losses stay on the device: nothing in a step reads a value back to the CPU (no
``.item()``, ``float()``, ``bool()``), so the host can queue the next iteration while the device still runs this
one. Whether the losses are finite is the caller's check (the training loop reads the running loss sums once per
``--print_freq`` iterations, :mod:`pix2pix_tr.training.loss_log`). The one read left is the fp16 GradScaler's own:
``GradScaler.step`` reads whether the gradients overflowed to decide whether to call an optimiser that cannot take
that decision on the device (TRAdam, TRSGD, and torch's non-fused optimisers).

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


#: the losses of one iteration in the order the step computes them (D's, then G's)
COMPUTE_ORDER = ("D_real", "D_fake", "D_gp", "G_GAN", "G_L1")


def set_requires_grad(net: nn.Module, flag: bool) -> None:
    for p in net.parameters():
        p.requires_grad_(flag)


def train_step(G: nn.Module, D: nn.Module, opt_G: torch.optim.Optimizer, opt_D: torch.optim.Optimizer,
               real_A: torch.Tensor, real_B: torch.Tensor, *, gan_loss: GANLoss, lambda_L1: float = 100.0,
               lambda_gp: float = 10.0, D_local: nn.Module | None = None,
               scaler_G: torch.amp.GradScaler | None = None, scaler_D: torch.amp.GradScaler | None = None,
               autocast: Callable[[], ContextManager] = contextlib.nullcontext
               ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One pix2pix iteration (D update, then G update), without a host synchronisation. Returns ``(losses,
    fake_B)``: the losses as detached 0-d float32 tensors on the device (``G_GAN``, ``G_L1``, ``D_real``,
    ``D_fake``, plus ``D_gp`` for wgangp) and the detached fake_B."""
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
    _backward_and_step(loss_D, opt_D, scaler_D)

    # 3. generator update against the updated, frozen D
    set_requires_grad(D_local, False)
    opt_G.zero_grad(set_to_none=True)
    with autocast():
        loss_G_GAN = gan_loss(D_local(fake_AB), True)
    loss_G_L1 = F.l1_loss(fake_B.float(), real_B.float()) * lambda_L1
    _backward_and_step(loss_G_GAN + loss_G_L1, opt_G, scaler_G)
    set_requires_grad(D_local, True)
    losses = {"G_GAN": loss_G_GAN, "G_L1": loss_G_L1, **losses_D}
    return ({k: losses[k].detach().float() for k in ("G_GAN", "G_L1", "D_real", "D_fake", "D_gp") if k in losses},
            fake_B.detach())


def _backward_and_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer,
                       scaler: torch.amp.GradScaler | None) -> None:
    if scaler is None or not scaler.is_enabled():
        loss.backward()
        optimizer.step()
        return
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
