"""GAN objectives of pix2pix: vanilla (the cGAN log loss), lsgan (least squares), wgangp (Wasserstein + GP)."""

from __future__ import annotations

import torch
import torch.nn as nn

GAN_MODES = ("vanilla", "lsgan", "wgangp")


class GANLoss(nn.Module):
    """``GANLoss(mode)(prediction, target_is_real) -> scalar``, as pix2pix's.

    ``vanilla``: BCE-with-logits against an all-real (1) or all-fake (0) map; D has no sigmoid, this loss
    applies it, which is the numerically stable form of pix2pix's log loss. ``lsgan``: MSE against 1 / 0.
    ``wgangp``: ``-mean(pred)`` for real, ``mean(pred)`` for fake (the gradient penalty is separate:
    :func:`gradient_penalty`). The loss is computed in float32 even when the prediction is half precision.
    """

    def __init__(self, gan_mode: str = "vanilla", target_real_label: float = 1.0,
                 target_fake_label: float = 0.0) -> None:
        super().__init__()
        if gan_mode not in GAN_MODES:
            raise ValueError(f"unknown gan_mode {gan_mode!r}: choose one of {', '.join(GAN_MODES)}")
        self.gan_mode = gan_mode
        self.register_buffer("real_label", torch.tensor(target_real_label), persistent=False)
        self.register_buffer("fake_label", torch.tensor(target_fake_label), persistent=False)
        self.loss = {"vanilla": nn.BCEWithLogitsLoss(), "lsgan": nn.MSELoss(), "wgangp": None}[gan_mode]

    def forward(self, prediction: torch.Tensor, target_is_real: bool) -> torch.Tensor:
        prediction = prediction.float()
        if self.gan_mode == "wgangp":
            return -prediction.mean() if target_is_real else prediction.mean()
        target = (self.real_label if target_is_real else self.fake_label).to(prediction.device)
        return self.loss(prediction, target.expand_as(prediction))


def gradient_penalty(netD: nn.Module, real: torch.Tensor, fake: torch.Tensor, constant: float = 1.0,
                     lambda_gp: float = 10.0) -> torch.Tensor:
    """WGAN-GP penalty ``lambda_gp * E[(||grad D(x_hat)||_2 - constant)^2]`` on random interpolates
    ``x_hat = a*real + (1-a)*fake`` (Gulrajani et al. 2017), one ``a`` per sample."""
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
    interp = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    out = netD(interp)
    grads = torch.autograd.grad(out.float().sum(), interp, create_graph=True)[0]
    grads = grads.reshape(grads.shape[0], -1).float()
    return lambda_gp * ((grads.norm(2, dim=1) - constant) ** 2).mean()
