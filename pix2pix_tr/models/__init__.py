"""pix2pix networks, losses and the training step.

``define_G`` / ``define_D`` build the original pix2pix architectures (same layers, same parameter counts);
``GANLoss`` is its objective; :mod:`pix2pix_tr.models.pix2pix` holds the optimisation step.
"""

from .losses import GAN_MODES, GANLoss, gradient_penalty
from .networks import (DISCRIMINATORS, GENERATORS, INIT_TYPES, NORMS, NLayerDiscriminator, PixelDiscriminator,
                       ResnetGenerator, UnetGenerator, count_parameters, define_D, define_G, get_norm_layer,
                       init_weights, required_multiple)

__all__ = ["define_G", "define_D", "GANLoss", "gradient_penalty", "init_weights", "get_norm_layer",
           "UnetGenerator", "ResnetGenerator", "NLayerDiscriminator", "PixelDiscriminator", "count_parameters",
           "required_multiple", "GENERATORS", "DISCRIMINATORS", "NORMS", "INIT_TYPES", "GAN_MODES"]
