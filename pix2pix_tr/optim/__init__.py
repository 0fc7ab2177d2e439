"""Trajectory Regularized optimizers (TRAlgo; Zhang, Qu, Chen, Metaxas, IJCAI 2019).

``TRAdam`` and ``TRSGD`` are drop-in torch.optim optimizers; ``TrajectoryRegularized`` wraps any
torch.optim optimizer. This package imports nothing else from pix2pix_tr: lift it out as you like.
See docs/optimizers.md.
"""

from ._tr import TR_MODES
from .tradam import TRAdam, TRSGD
from .wrapper import TrajectoryRegularized

__all__ = ["TRAdam", "TRSGD", "TrajectoryRegularized", "TR_MODES"]
