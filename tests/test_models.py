"""The pix2pix networks: architecture (parameter counts of the original), shapes, norms, init, GAN loss."""

import pytest
import torch
import torch.nn as nn

from pix2pix_tr.models import GANLoss, count_parameters, define_D, define_G, gradient_penalty, init_weights


def test_default_parameter_counts_match_original_pix2pix():
    assert count_parameters(define_G("unet_256")) == 54_413_955
    assert count_parameters(define_D("basic", input_nc=6)) == 2_768_705


@pytest.mark.parametrize("netG,size", [("unet_64", 64), ("unet_128", 128), ("resnet_6blocks", 64),
                                       ("resnet_9blocks", 32)])
@pytest.mark.parametrize("norm", ["batch", "instance", "none"])
def test_generators_keep_shape_and_range(netG, size, norm):
    G = define_G(netG, 3, 2, ngf=4, norm=norm)
    y = G(torch.randn(2, 3, size, size))
    assert y.shape == (2, 2, size, size)
    assert y.abs().max() <= 1


def test_bias_rule_follows_norm():
    def biased_convs(net):
        return [m.bias is not None for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    bn = biased_convs(define_D("basic", ndf=4, norm="batch"))
    inst = biased_convs(define_D("basic", ndf=4, norm="instance"))
    assert bn == [True, False, False, False, True]      # first and last conv keep theirs
    assert all(inst)
    # the U-Net's outermost up-conv always has a bias, inner ones only without batch norm
    g_bn = biased_convs(define_G("unet_64", ngf=4, norm="batch"))
    assert sum(g_bn) == 1 and all(biased_convs(define_G("unet_64", ngf=4, norm="instance")))


def test_patchgan_output_sizes():
    x = torch.randn(1, 6, 256, 256)
    assert define_D("basic", ndf=4)(x).shape == (1, 1, 30, 30)      # 70x70 receptive field
    assert define_D("n_layers", ndf=4, n_layers_D=1)(x).shape == (1, 1, 126, 126)
    assert define_D("pixel", ndf=4)(x).shape == (1, 1, 256, 256)


def test_unet_dropout_only_when_asked():
    def has_dropout(net):
        return any(isinstance(m, nn.Dropout) for m in net.modules())
    assert has_dropout(define_G("unet_128", ngf=4, use_dropout=True))
    assert not has_dropout(define_G("unet_128", ngf=4, use_dropout=False))


def test_syncbatch_norm_builds_and_runs_in_eval():
    G = define_G("unet_64", ngf=4, norm="syncbatch").eval()
    assert any(isinstance(m, nn.SyncBatchNorm) for m in G.modules())
    assert G(torch.randn(1, 3, 64, 64)).shape == (1, 3, 64, 64)


@pytest.mark.parametrize("init_type", ["normal", "xavier", "kaiming", "orthogonal"])
def test_init_types(init_type):
    torch.manual_seed(0)
    D = define_D("basic", ndf=8, init_type=init_type, init_gain=0.02)
    conv = D.model[0]
    assert torch.all(conv.bias == 0)
    if init_type == "normal":
        assert abs(conv.weight.std().item() - 0.02) < 0.005
    bn = D.model[3]
    assert isinstance(bn, nn.BatchNorm2d) and abs(bn.weight.mean().item() - 1) < 0.02


def test_unknown_names_are_rejected_with_the_choices():
    with pytest.raises(ValueError, match="unknown netG 'unet_512'.*unet_256"):
        define_G("unet_512")
    with pytest.raises(ValueError, match="unknown netD"):
        define_D("huge")
    with pytest.raises(ValueError, match="unknown norm 'layer'"):
        define_G("unet_64", norm="layer")
    with pytest.raises(ValueError, match="unknown init_type"):
        init_weights(nn.Conv2d(1, 1, 1), "uniform")
    with pytest.raises(ValueError, match="unknown gan_mode"):
        GANLoss("hinge")


def test_gan_losses():
    logits = torch.zeros(1, 1, 4, 4)
    assert GANLoss("vanilla")(logits, True).item() == pytest.approx(0.6931, abs=1e-4)
    assert GANLoss("lsgan")(torch.ones(1, 1, 2, 2), True).item() == 0
    assert GANLoss("lsgan")(torch.ones(1, 1, 2, 2), False).item() == 1
    p = torch.full((1, 1, 2, 2), 3.0)
    assert GANLoss("wgangp")(p, True).item() == -3 and GANLoss("wgangp")(p, False).item() == 3
    assert GANLoss("vanilla")(logits.half(), False).dtype == torch.float32


def test_gradient_penalty_is_positive_and_differentiable():
    D = define_D("pixel", input_nc=2, ndf=4, norm="none")
    real, fake = torch.randn(2, 2, 8, 8), torch.randn(2, 2, 8, 8)
    gp = gradient_penalty(D, real, fake)
    gp.backward()
    assert gp.item() > 0 and all(m.weight.grad is not None for m in D.modules() if isinstance(m, nn.Conv2d))
