"""Trajectory Regularized optimizers (TRAlgo; Zhang, Qu, Chen, Metaxas, IJCAI 2019).

``TRAdam`` and ``TRSGD`` are drop-in torch.optim optimizers; ``TrajectoryRegularized`` wraps any
torch.optim optimizer. This package imports nothing else from pix2pix_tr: lift it out as you like.
See docs/optimizers.md.

Public names beside the optimizers: ``TR_MODES`` (the values of ``tr_mode``), ``TR_KEYS`` (the TR
hyper-parameters, group entries like ``lr``), ``TR_GROUP_STATE_KEYS`` / ``TR_PARAM_STATE_KEYS`` (what the
optimizers keep per param group / per parameter in ``state_dict()``), ``check_tr_hparams`` (their validation,
one-sentence ValueErrors) and ``OptimizerStateMismatch`` (a ValueError: ``load_state_dict`` was given the state
of another kind of optimizer).
"""

from ._tr import (TR_GROUP_STATE_KEYS, TR_KEYS, TR_MODES, TR_PARAM_STATE_KEYS, OptimizerStateMismatch,
                  check_tr_hparams)
from .tradam import TRAdam, TRSGD
from .wrapper import TrajectoryRegularized

__all__ = ["TRAdam", "TRSGD", "TrajectoryRegularized", "TR_MODES", "TR_KEYS", "TR_GROUP_STATE_KEYS",
           "TR_PARAM_STATE_KEYS", "check_tr_hparams", "OptimizerStateMismatch"]
