"""Every private torch API that pix2pix_tr uses, in one place (issue 19: one place per decision).

The optimizers' own uses live in :mod:`pix2pix_tr.optim._compat`, because ``pix2pix_tr/optim/`` is a standalone
library that a user can lift out as one folder (it imports nothing else from pix2pix_tr); they are re-exported
here, so this module is the one list. The rest of the package imports what it needs from here, never a private
torch name directly. Each function says what it relies on; ``tests/test_torch_compat.py`` tests each where it
touches torch, so a torch upgrade that breaks one fails there, not somewhere downstream. Checked on torch 2.11 and
2.14.
"""

from __future__ import annotations

from pix2pix_tr.optim._compat import (adam_group_step, foreach_add_, foreach_copy_, foreach_mul_, foreach_sub,
                                      fused_kernel_devices, graph_capture_health_check, init_optimizer_shell,
                                      no_dynamo, opt_out_of_amp_scaling, sgd_group_step)

__all__ = [
    "fused_kernel_devices", "no_dynamo", "foreach_copy_", "foreach_add_", "foreach_sub", "foreach_mul_",
    "opt_out_of_amp_scaling", "graph_capture_health_check", "init_optimizer_shell", "adam_group_step",
    "sgd_group_step", "scheduler_lr_attributes",
]


def scheduler_lr_attributes() -> tuple:
    """The attributes of a torch LR scheduler that hold learning rates, to rescale when a resumed run changes its
    lr (``--override lr``): ``base_lrs`` (public) and ``_last_lr``.

    Relies on: ``LRScheduler.get_last_lr()`` (and ``ReduceLROnPlateau``'s) returning ``self._last_lr``, which
    ``state_dict()`` saves with the rest of ``__dict__``; nothing public sets it."""
    return ("base_lrs", "_last_lr")
