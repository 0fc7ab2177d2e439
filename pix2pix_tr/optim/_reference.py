"""``tr_mode="reference"``: TRAdam's update placed as in the authors' released TRAdam.

The release computes ``lr_k * sqrt(bc2) / bc1 * m / (sqrt(v) + eps)`` (PyTorch 0.4's Adam), torch's Adam
``lr_k / bc1 * m / (sqrt(v) / sqrt(bc2) + eps)``. The two are equal when torch's kernel is handed
``eps / sqrt(bc2)``: ``lr_k / bc1 * m / ((sqrt(v) + eps) / sqrt(bc2))``. So reference mode stays on
torch's fused/foreach kernels; only the eps passed to the kernel for the step changes, computed from the step
count t the kernel is about to use (bc2 = 1 - beta2^t). The same holds with amsgrad (the release and torch both
take the running maximum of v).

t is known on the host without reading the device: :class:`HostSteps` keeps a host copy of every parameter's Adam
step count, read from the checkpoint when a state is loaded (there it is on the CPU) or once from the state, and
advanced with every step the optimizer runs. Reading torch's ``state[p]["step"]`` at every step instead would cost
a device-to-host synchronisation per parameter and step on a GPU, where the fused kernel keeps the count.
"""

from __future__ import annotations

import math

import torch


def release_eps(eps: float, beta2, t: float) -> float:
    """The eps that puts torch's Adam kernel on the release's placement at Adam step ``t``."""
    beta2 = float(beta2.item() if torch.is_tensor(beta2) else beta2)
    return eps / math.sqrt(1.0 - beta2 ** t)


def _state_step(st) -> float:
    """Adam's step count in a parameter's state (0 before its first step); a host read when it is a tensor."""
    step = st.get("step") if st else None
    if step is None:
        return 0.0
    return float(step.item() if torch.is_tensor(step) else step)


class HostSteps:
    """Host copies of Adam's per-parameter step counts, for the parameters of reference-mode groups."""

    def __init__(self) -> None:
        self.counts: dict = {}

    def next_step(self, params, state, *, where: str) -> float:
        """The Adam step t that the kernel is about to take for ``params`` (the same for all of them, or an error)."""
        steps = set()
        for p in params:
            t = self.counts.get(p)
            if t is None:  # first sight of this parameter since the state was built or loaded: read it once
                t = self.counts[p] = _state_step(state.get(p))
            steps.add(t + 1.0)
        if len(steps) > 1:
            raise RuntimeError(
                f"{where}: tr_mode='reference' needs every parameter of a param group that gets a gradient to be at "
                f"the same Adam step (found steps {sorted(int(t) for t in steps)}): put parameters that skip steps in "
                f"their own param group, or use tr_mode='paper'."
            )
        return steps.pop()

    def advance(self, params, t: float) -> None:
        """Record that the kernel took step ``t`` for ``params``."""
        for p in params:
            self.counts[p] = t

    def forget(self, params) -> None:
        for p in params:
            self.counts.pop(p, None)

    def load(self, state_dict: dict, param_groups: list) -> None:
        """Take the counts from a state_dict being loaded (its tensors are where the caller loaded them, normally on
        the CPU), matching its parameters to ``param_groups`` as ``Optimizer.load_state_dict`` does (by position)."""
        self.counts.clear()
        saved_state = state_dict.get("state", {})
        for saved_group, group in zip(state_dict["param_groups"], param_groups):
            for pid, p in zip(saved_group["params"], group["params"]):
                st = saved_state.get(pid)
                if st and "step" in st:
                    self.counts[p] = _state_step(st)
