"""The pix2pix networks and the training step's forward half on fake CUDA tensors (tier ``fake_cuda``; no GPU needed).

Every generator (unet_256, unet_128, resnet_9blocks, resnet_6blocks; batch, instance and no norm), every
discriminator (basic, n_layers, pixel) is built on the (fake) GPU, moved there from the CPU as train.py does
(``net.to(device, memory_format=...)``, channels_last included), and run at the paper's 256x256 with the paper's
widths (ngf = ndf = 64): fake tensors compute shapes only, so full size costs nothing. Then ``train_step`` itself
runs on the device up to each backward: G's forward, D on the real and the fake pair, every GAN loss and the L1
term. The watch of ``tests/fake_cuda.py`` records any host read, device-to-host copy or op mixing devices; each test
requires none.

What cannot run here, and is left to the ``cuda`` tier (tests/test_cuda.py trains on a GPU with every amp mode):

* autograd's backward (``loss.backward()``, ``torch.autograd.grad``): torch's autograd engine starts a worker for
  the CUDA device and asks the driver for its context ("hasPrimaryContext expects a valid device index"), so the
  backward and the optimiser step are stood in: the stand-in checks the loss it is given (a 0-dim float32 on the
  device) and returns; the optimiser steps on fake CUDA tensors are tests/test_fake_cuda_optim.py's. The WGAN-GP
  gradient penalty (a double backward) is skipped for the same reason.
* autocast: ``torch.autocast("cuda")`` switches itself off without a CUDA device ("CUDA is not available ...
  Disabling autocast"), so bf16/fp16 would run as fp32 and prove nothing.
"""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch
import torch.nn.functional as F
from fake_cuda import CUDA, is_fake_cuda

from pix2pix_tr.models import GANLoss, define_D, define_G, pix2pix
from pix2pix_tr.models.networks import INIT_TYPES
from pix2pix_tr.optim import TRAdam

pytestmark = pytest.mark.fake_cuda

GENERATORS = ("unet_256", "unet_128", "resnet_9blocks", "resnet_6blocks")
NORMS = ("batch", "instance", "none")
SIZE = 256


def assert_on_device(net: torch.nn.Module) -> None:
    for name, t in list(net.named_parameters()) + list(net.named_buffers()):
        assert is_fake_cuda(t), f"{name} is on {t.device}"


def assert_channels_last(net: torch.nn.Module) -> None:
    for name, p in net.named_parameters():
        if p.dim() == 4:
            assert p.is_contiguous(memory_format=torch.channels_last), name


# ----------------------------------------------------------------------------- building on the device
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("netG", GENERATORS)
def test_each_generator_is_built_on_the_device_and_runs_at_full_size(fake_gpu, netG, norm):
    with fake_gpu, torch.device("cuda"):
        G = define_G(netG, 3, 3, ngf=64, norm=norm)  # the initialisation runs on the device too
        assert_on_device(G)
        for train in (True, False):
            G.train(train)
            y = G(torch.randn(2, 3, SIZE, SIZE))
            assert is_fake_cuda(y) and y.shape == (2, 3, SIZE, SIZE) and y.dtype == torch.float32
    fake_gpu.assert_no_sync()


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("netD,n_layers,out", [("basic", 3, 30), ("n_layers", 5, 6), ("n_layers", 1, 126),
                                               ("pixel", 3, SIZE)])
def test_each_discriminator_is_built_on_the_device_and_runs_at_full_size(fake_gpu, netD, n_layers, out, norm):
    with fake_gpu, torch.device("cuda"):
        D = define_D(netD, 6, ndf=64, n_layers_D=n_layers, norm=norm)
        assert_on_device(D)
        y = D(torch.randn(2, 6, SIZE, SIZE))
        assert is_fake_cuda(y) and y.shape == (2, 1, out, out)
    fake_gpu.assert_no_sync()


@pytest.mark.parametrize("init_type", INIT_TYPES)
def test_every_initialisation_runs_on_the_device(fake_gpu, init_type):
    with fake_gpu, torch.device("cuda"):
        D = define_D("basic", 6, ndf=64, init_type=init_type)
        G = define_G("resnet_6blocks", 3, 3, ngf=64, init_type=init_type)
        assert_on_device(D)
        assert_on_device(G)
    fake_gpu.assert_no_sync()


# ----------------------------------------------------------------------------- moving networks built on the CPU
MOVES = [(netG, "batch", cl) for netG in GENERATORS for cl in (False, True)] + \
        [("unet_256", norm, True) for norm in NORMS if norm != "batch"]


@pytest.mark.parametrize("netG,norm,channels_last", MOVES,
                         ids=[f"{g}-{n}-{'channels_last' if c else 'contiguous'}" for g, n, c in MOVES])
def test_networks_built_on_the_cpu_move_to_the_device_as_train_py_moves_them(fake_gpu, netG, norm, channels_last):
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    G = define_G(netG, 3, 3, ngf=16, norm=norm)  # real weights on the CPU (as built, or as loaded from a file)
    D = define_D("basic", 6, ndf=16, norm=norm)
    with fake_gpu:
        for net in (G, D):
            assert net.to(CUDA, memory_format=memory_format).train() is net  # what the training loop does
            assert_on_device(net)
            if channels_last:
                assert_channels_last(net)
        x = torch.randn(1, 3, SIZE, SIZE).to(CUDA, non_blocking=True, memory_format=memory_format)
        y = G(x)
        assert is_fake_cuda(y) and y.shape == (1, 3, SIZE, SIZE)
        assert is_fake_cuda(D(torch.cat([x, y], 1)))
    fake_gpu.assert_no_sync()


# ----------------------------------------------------------------------------- the training step, forward half
@pytest.fixture(scope="module")
def paper_networks():
    """The paper's networks (unet_256, 70x70 PatchGAN, ngf = ndf = 64), built on the CPU once."""
    torch.manual_seed(0)
    return define_G("unet_256", 3, 3, ngf=64), define_D("basic", 6, ndf=64)


@pytest.fixture
def backward_stood_in(monkeypatch):
    """``pix2pix._backward_and_step`` replaced by a check of the loss it gets (see the module docstring); returns the
    losses it was given."""
    given = []

    def stand_in(loss, optimizer, scaler):
        assert is_fake_cuda(loss) and loss.dim() == 0 and loss.dtype == torch.float32
        assert loss.requires_grad  # a backward would have a graph to run
        given.append((loss, optimizer))

    monkeypatch.setattr(pix2pix, "_backward_and_step", stand_in)
    return given


@pytest.mark.parametrize("gan_mode,channels_last", [("vanilla", False), ("vanilla", True), ("lsgan", True),
                                                    ("wgangp", False)])
def test_the_training_step_runs_on_the_device_up_to_each_backward(fake_gpu, paper_networks, backward_stood_in,
                                                                     gan_mode, channels_last):
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    G, D = (copy.deepcopy(net) for net in paper_networks)
    with fake_gpu:
        for net in (G, D):
            net.to(CUDA, memory_format=memory_format).train()
        opt_G = TRAdam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
        opt_D = TRAdam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
        real_A, real_B = (torch.rand(2, 3, SIZE, SIZE).to(CUDA, non_blocking=True, memory_format=memory_format)
                          for _ in range(2))
        gan_loss = GANLoss(gan_mode).to(CUDA)
        # lambda_gp=0: the gradient penalty is a double backward (see the module docstring)
        losses, fake_B = pix2pix.train_step(G, D, opt_G, opt_D, real_A, real_B, gan_loss=gan_loss, lambda_L1=100.0,
                                            lambda_gp=0.0, autocast=contextlib.nullcontext)
    fake_gpu.assert_no_sync()
    assert [opt for _, opt in backward_stood_in] == [opt_D, opt_G]  # D's update, then G's
    assert set(losses) == {"G_GAN", "G_L1", "D_real", "D_fake"}
    for name, value in losses.items():
        assert is_fake_cuda(value) and value.dim() == 0 and value.dtype == torch.float32, name
        assert not value.requires_grad, name
    assert is_fake_cuda(fake_B) and fake_B.shape == (2, 3, SIZE, SIZE) and not fake_B.requires_grad
    assert all(p.requires_grad for p in D.parameters())  # D unfrozen again after G's update


def test_the_gan_losses_and_l1_on_the_device_with_a_loss_module_left_on_the_cpu(fake_gpu):
    """A GANLoss nobody moved (its 0-dim targets stay on the CPU) still computes on the prediction's device."""
    losses = {mode: GANLoss(mode) for mode in ("vanilla", "lsgan", "wgangp")}
    with fake_gpu:
        pred = torch.randn(2, 1, 30, 30, device=CUDA, dtype=torch.bfloat16)  # (as under autocast)
        for mode, loss in losses.items():
            for real in (True, False):
                value = loss(pred, real)
                assert is_fake_cuda(value) and value.dim() == 0 and value.dtype == torch.float32, mode
        a, b = torch.randn(2, 3, 8, 8, device=CUDA), torch.randn(2, 3, 8, 8, device=CUDA)
        assert is_fake_cuda(F.l1_loss(a, b) * 100.0)
    fake_gpu.assert_no_sync()


def test_backward_autocast_and_the_gradient_penalty_need_a_real_device(fake_gpu):
    """The skip reasons of the module docstring, checked: if a torch release makes them run on fake tensors, this
    test fails and says so, and the stand-ins above can go."""
    if torch.cuda.is_available():
        pytest.skip("a GPU is here: the cuda tier runs the backward and autocast for real (tests/test_cuda.py)")
    with fake_gpu:
        w = torch.nn.Parameter(torch.randn(3, device=CUDA))
        with pytest.raises(RuntimeError, match="hasPrimaryContext|driver|device"):
            (w * 2).sum().backward()
        with pytest.warns(UserWarning, match="autocast"):
            with torch.autocast("cuda", dtype=torch.bfloat16):
                y = F.linear(torch.randn(2, 3, device=CUDA), torch.randn(4, 3, device=CUDA))
        assert y.dtype == torch.float32  # autocast was switched off
    pytest.skip("autograd's backward (loss.backward(), the WGAN-GP penalty's torch.autograd.grad) and "
                "torch.autocast('cuda') need a CUDA device: the training step ran up to each backward with the "
                "backward stood in; the full step with every amp mode runs in the cuda tier (tests/test_cuda.py)")

