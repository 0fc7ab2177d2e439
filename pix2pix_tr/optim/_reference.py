"""``tr_mode="reference"``: TRAdam's update placed as in the authors' released TRAdam.

The release computes ``lr_k * sqrt(bc2) / bc1 * m / (sqrt(v) + eps)`` (PyTorch 0.4's Adam), torch's Adam
``lr_k / bc1 * m / (sqrt(v) / sqrt(bc2) + eps)``. The two are equal when torch's kernel is handed
``eps / sqrt(bc2)``: ``lr_k / bc1 * m / ((sqrt(v) + eps) / sqrt(bc2))``. So reference mode stays on
torch's fused/foreach kernels; only the group's eps is swapped for the step (and restored after it),
from the step count t the kernel is about to use (bc2 = 1 - beta2^t). The same holds with amsgrad
(the release and torch both take the running maximum of v).
"""

from __future__ import annotations

import math

import torch


def _next_step(st: dict) -> float:
    step = st.get("step")
    if step is None:
        return 1.0
    return float(step.item() if torch.is_tensor(step) else step) + 1.0


def release_eps(group: dict, state, params, *, where: str) -> None:
    """Set ``group["eps"]`` to ``eps / sqrt(1 - beta2^t)`` for this step (the caller restores it)."""
    if not params:
        return
    steps = {_next_step(state[p]) for p in params}
    if len(steps) > 1:
        raise RuntimeError(
            f"{where}: tr_mode='reference' needs every parameter of a param group that gets a gradient to be at "
            f"the same Adam step (found steps {sorted(int(t) for t in steps)}): put parameters that skip steps in "
            f"their own param group, or use tr_mode='paper'."
        )
    t = steps.pop()
    beta2 = group["betas"][1]
    beta2 = float(beta2.item() if torch.is_tensor(beta2) else beta2)
    group["eps"] = group["eps"] / math.sqrt(1.0 - beta2 ** t)


def not_reference(ready):
    """Keep reference-mode groups off the compiled kernel (it has torch's eps placement)."""
    def wrapped(group: dict, state, params) -> bool:
        return group["tr_mode"] != "reference" and ready(group, state, params)

    return wrapped
