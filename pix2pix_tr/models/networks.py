"""The pix2pix networks: U-Net and ResNet generators, PatchGAN discriminators, normalisation and init.

The architectures are those of the original pix2pix (Isola et al. 2017, and its PyTorch port), layer for
layer, so parameter counts match: ``unet_256`` with ``ngf=64`` and batch norm has 54,413,955 parameters,
the 70x70 PatchGAN (``basic``, ``ndf=64``, 6 input channels) 2,768,705. The module layout (nested
``nn.Sequential`` named ``model``) is the original's too, so its state_dict keys line up.

Bias rule (pix2pix's): a convolution followed by batch norm has no bias (the norm's shift replaces it);
with instance norm (``affine=False``) or no norm it has one. The outermost and last layers always do.
"""

from __future__ import annotations

import functools
from typing import Callable

import torch
import torch.nn as nn
from torch.nn import init

NORMS = ("batch", "instance", "syncbatch", "none")
GENERATORS = ("unet_256", "unet_128", "unet_64", "resnet_9blocks", "resnet_6blocks")
DISCRIMINATORS = ("basic", "n_layers", "pixel")
INIT_TYPES = ("normal", "xavier", "kaiming", "orthogonal")


def get_norm_layer(norm: str = "batch") -> Callable[[int], nn.Module]:
    """A factory ``f(num_features) -> nn.Module`` for the named normalisation.

    ``batch``: BatchNorm2d (affine, running stats). ``syncbatch``: SyncBatchNorm, the same layer with
    statistics reduced over all DDP ranks (needs an initialised process group in training; in eval mode or
    a single process it behaves as BatchNorm). ``instance``: InstanceNorm2d without affine parameters or
    running statistics, as pix2pix. ``none``: identity.
    """
    if norm == "batch":
        return functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True)
    if norm == "syncbatch":
        return functools.partial(nn.SyncBatchNorm, affine=True, track_running_stats=True)
    if norm == "instance":
        return functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
    if norm == "none":
        return lambda num_features: nn.Identity()
    raise ValueError(f"unknown norm {norm!r}: choose one of {', '.join(NORMS)}")


def conv_bias(norm: str) -> bool:
    """pix2pix's bias rule: convolutions carry a bias unless a batch norm (with its own shift) follows."""
    return norm not in ("batch", "syncbatch")


def init_weights(net: nn.Module, init_type: str = "normal", init_gain: float = 0.02) -> nn.Module:
    """Initialise conv/linear weights as pix2pix: N(0, gain), Xavier-normal(gain), Kaiming-normal (fan_in)
    or orthogonal(gain), biases 0; batch-norm scales N(1, gain) and shifts 0. Returns ``net``."""
    if init_type not in INIT_TYPES:
        raise ValueError(f"unknown init_type {init_type!r}: choose one of {', '.join(INIT_TYPES)}")

    def init_one(m: nn.Module) -> None:
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            if init_type == "normal":
                init.normal_(m.weight, 0.0, init_gain)
            elif init_type == "xavier":
                init.xavier_normal_(m.weight, gain=init_gain)
            elif init_type == "kaiming":
                init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            else:
                init.orthogonal_(m.weight, gain=init_gain)
            if m.bias is not None:
                init.zeros_(m.bias)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
            init.normal_(m.weight, 1.0, init_gain)
            init.zeros_(m.bias)

    net.apply(init_one)
    return net


# ----------------------------------------------------------------------------------------------------
# U-Net generator


class UnetSkipConnectionBlock(nn.Module):
    """One level of the U-Net: down-convolution, the inner levels, up-convolution, and the skip concat.

    ``model`` is ``[LeakyReLU, Conv(4,2,1), Norm, <inner block>, ReLU, ConvT(4,2,1), Norm, (Dropout 0.5)]``;
    the innermost level has no inner block and no down norm, the outermost no LeakyReLU/norms and ends in
    Tanh. Every level but the outermost returns ``cat(LeakyReLU(x), model(x))``: the original applies an
    in-place LeakyReLU to ``x`` before concatenating, so its skip path carries the activated input; we
    reproduce that without the in-place trick.
    """

    def __init__(self, outer_nc: int, inner_nc: int, input_nc: int | None = None,
                 submodule: nn.Module | None = None, outermost: bool = False, innermost: bool = False,
                 norm: str = "batch", use_dropout: bool = False) -> None:
        super().__init__()
        self.outermost = outermost
        norm_layer = get_norm_layer(norm)
        use_bias = conv_bias(norm)
        if input_nc is None:
            input_nc = outer_nc
        downconv = nn.Conv2d(input_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
        downrelu = nn.LeakyReLU(0.2)
        uprelu = nn.ReLU(True)
        if outermost:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1)
            layers = [downconv, submodule, uprelu, upconv, nn.Tanh()]
        elif innermost:
            upconv = nn.ConvTranspose2d(inner_nc, outer_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
            layers = [downrelu, downconv, uprelu, upconv, norm_layer(outer_nc)]
        else:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1,
                                        bias=use_bias)
            layers = [downrelu, downconv, norm_layer(inner_nc), submodule, uprelu, upconv, norm_layer(outer_nc)]
            if use_dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        x = self.model[0](x)  # LeakyReLU, shared by the skip path and the inner path
        h = x
        for layer in list(self.model)[1:]:
            h = layer(h)
        return torch.cat([x, h], 1)


class UnetGenerator(nn.Module):
    """U-Net with ``num_downs`` stride-2 levels: an input of size 2**num_downs becomes 1x1 at the bottleneck.

    ``unet_256`` is ``num_downs=8`` (inputs must be multiples of 256), ``unet_128`` is 7 (multiples of 128).
    Channels ngf, 2ngf, 4ngf, then 8ngf for the rest; dropout 0.5 in the decoder's 8ngf levels below the
    innermost (pix2pix's "noise" source; it stays on at test time only if the caller keeps train mode).
    """

    def __init__(self, input_nc: int, output_nc: int, num_downs: int, ngf: int = 64, norm: str = "batch",
                 use_dropout: bool = False) -> None:
        super().__init__()
        if num_downs < 5:
            raise ValueError(f"a U-Net needs at least 5 down-sampling levels, got num_downs={num_downs}")
        block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, innermost=True, norm=norm)
        for _ in range(num_downs - 5):
            block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, submodule=block, norm=norm, use_dropout=use_dropout)
        block = UnetSkipConnectionBlock(ngf * 4, ngf * 8, submodule=block, norm=norm)
        block = UnetSkipConnectionBlock(ngf * 2, ngf * 4, submodule=block, norm=norm)
        block = UnetSkipConnectionBlock(ngf, ngf * 2, submodule=block, norm=norm)
        self.model = UnetSkipConnectionBlock(output_nc, ngf, input_nc=input_nc, submodule=block, outermost=True,
                                             norm=norm)
        self.num_downs = num_downs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


# ----------------------------------------------------------------------------------------------------
# ResNet generator (Johnson et al.), as in pix2pix/CycleGAN


class ResnetBlock(nn.Module):
    """``x + [ReflPad1, Conv3, Norm, ReLU, (Dropout 0.5), ReflPad1, Conv3, Norm](x)``."""

    def __init__(self, dim: int, norm: str, use_dropout: bool) -> None:
        super().__init__()
        norm_layer, use_bias = get_norm_layer(norm), conv_bias(norm)
        layers: list[nn.Module] = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=use_bias), norm_layer(dim),
                                   nn.ReLU(True)]
        if use_dropout:
            layers.append(nn.Dropout(0.5))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=use_bias), norm_layer(dim)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """7x7 conv, two stride-2 downs, ``n_blocks`` residual blocks at 4ngf, two transposed-conv ups, 7x7 conv,
    Tanh. Inputs must be multiples of 4."""

    def __init__(self, input_nc: int, output_nc: int, ngf: int = 64, norm: str = "batch",
                 use_dropout: bool = False, n_blocks: int = 6) -> None:
        super().__init__()
        norm_layer, use_bias = get_norm_layer(norm), conv_bias(norm)
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7, bias=use_bias),
                                   norm_layer(ngf), nn.ReLU(True)]
        for i in range(2):
            mult = 2 ** i
            layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=use_bias),
                       norm_layer(ngf * mult * 2), nn.ReLU(True)]
        for _ in range(n_blocks):
            layers.append(ResnetBlock(ngf * 4, norm, use_dropout))
        for i in range(2):
            mult = 2 ** (2 - i)
            layers += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1,
                                          bias=use_bias),
                       norm_layer(ngf * mult // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


# ----------------------------------------------------------------------------------------------------
# PatchGAN discriminators


class NLayerDiscriminator(nn.Module):
    """PatchGAN: ``n_layers`` stride-2 4x4 convs (channels ndf, 2ndf, ... capped at 8ndf), one stride-1 conv,
    and a 1-channel stride-1 conv giving a map of real/fake logits. ``n_layers=3`` is the 70x70 PatchGAN
    (each output logit sees a 70x70 input patch); a 256x256 input gives a 30x30 map."""

    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 3, norm: str = "batch") -> None:
        super().__init__()
        norm_layer, use_bias = get_norm_layer(norm), conv_bias(norm)
        layers: list[nn.Module] = [nn.Conv2d(input_nc, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2 ** n, 8)
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=2, padding=1, bias=use_bias),
                       norm_layer(ndf * mult), nn.LeakyReLU(0.2, True)]
        prev, mult = mult, min(2 ** n_layers, 8)
        layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=1, padding=1, bias=use_bias),
                   norm_layer(ndf * mult), nn.LeakyReLU(0.2, True),
                   nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class PixelDiscriminator(nn.Module):
    """1x1 PatchGAN ("pixelGAN"): classifies every pixel independently."""

    def __init__(self, input_nc: int, ndf: int = 64, norm: str = "batch") -> None:
        super().__init__()
        norm_layer, use_bias = get_norm_layer(norm), conv_bias(norm)
        self.net = nn.Sequential(
            nn.Conv2d(input_nc, ndf, 1), nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf, ndf * 2, 1, bias=use_bias), norm_layer(ndf * 2), nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 2, 1, 1, bias=use_bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


# ----------------------------------------------------------------------------------------------------
# factories


def define_G(netG: str = "unet_256", input_nc: int = 3, output_nc: int = 3, ngf: int = 64, norm: str = "batch",
             use_dropout: bool = True, init_type: str = "normal", init_gain: float = 0.02) -> nn.Module:
    """Build and initialise a generator: ``unet_256`` (pix2pix default), ``unet_128``, ``resnet_9blocks``,
    ``resnet_6blocks``; also ``unet_64`` (6 levels, for 64x64 crops: small tests and quick experiments). Unlike the original it does not move the net to a device or wrap it in DataParallel:
    the caller does ``.to(device)`` and, for several GPUs, DistributedDataParallel."""
    get_norm_layer(norm)  # validates the name
    unet_levels = {"unet_256": 8, "unet_128": 7, "unet_64": 6}
    if netG in unet_levels:
        net: nn.Module = UnetGenerator(input_nc, output_nc, unet_levels[netG], ngf, norm=norm,
                                       use_dropout=use_dropout)
    elif netG == "resnet_9blocks":
        net = ResnetGenerator(input_nc, output_nc, ngf, norm=norm, use_dropout=use_dropout, n_blocks=9)
    elif netG == "resnet_6blocks":
        net = ResnetGenerator(input_nc, output_nc, ngf, norm=norm, use_dropout=use_dropout, n_blocks=6)
    else:
        raise ValueError(f"unknown netG {netG!r}: choose one of {', '.join(GENERATORS)}")
    return init_weights(net, init_type, init_gain)


def define_D(netD: str = "basic", input_nc: int = 6, ndf: int = 64, n_layers_D: int = 3, norm: str = "batch",
             init_type: str = "normal", init_gain: float = 0.02) -> nn.Module:
    """Build and initialise a discriminator: ``basic`` (70x70 PatchGAN, 3 layers), ``n_layers`` (PatchGAN
    with ``n_layers_D`` layers), ``pixel`` (1x1). For pix2pix ``input_nc`` is input_nc + output_nc of G,
    since D sees the condition and the image concatenated."""
    get_norm_layer(norm)
    if netD == "basic":
        net: nn.Module = NLayerDiscriminator(input_nc, ndf, n_layers=3, norm=norm)
    elif netD == "n_layers":
        net = NLayerDiscriminator(input_nc, ndf, n_layers=n_layers_D, norm=norm)
    elif netD == "pixel":
        net = PixelDiscriminator(input_nc, ndf, norm=norm)
    else:
        raise ValueError(f"unknown netD {netD!r}: choose one of {', '.join(DISCRIMINATORS)}")
    return init_weights(net, init_type, init_gain)


def required_multiple(netG: str) -> int:
    """Input side lengths ``netG`` accepts must be multiples of this (256 for unet_256, 128 for unet_128, 4 for
    the ResNets; 64 for unet_64)."""
    return {"unet_256": 256, "unet_128": 128, "unet_64": 64, "resnet_6blocks": 4, "resnet_9blocks": 4}[netG]


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
