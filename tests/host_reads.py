"""Counting the reads of tensor values by the host during training, for the tests of a sync-free iteration.

On a GPU every such read (``.item()``, ``.tolist()``, ``.cpu()``, ``.numpy()``, ``bool(t)``, ``float(t)``,
``int(t)``, ``operator.index(t)``, ``complex(t)``, ``format(t)``) waits for the device to finish all the work
queued before it. On the CPU nothing waits, but the reads happen all the same, so counting them on the CPU path
shows where a GPU run would synchronise. :class:`HostReads` wraps those methods of ``torch.Tensor`` and files each
read under the iteration it happened in (the test calls :meth:`HostReads.next_iteration` from the loop's
``after_iteration`` hook).

Two kinds of reads are not synchronisations on a GPU either, and are left out:

* reads inside the DataLoader (``torch/utils/data``): its tensors are built on the host;
* reads of the optimisers' per-parameter ``step`` counters, which torch keeps on the host for its non-fused,
  non-capturable optimisers precisely so that reading them costs no synchronisation (pass them as
  ``host_tensors``).
"""

from __future__ import annotations

import traceback
from collections import defaultdict

import torch

READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__", "__complex__",
         "__format__")


class HostReads:
    """``with HostReads() as reads: train(...)``; then ``reads.at(i)`` lists the reads of iteration ``i`` (1-based)
    as ``"method at file:line"``."""

    def __init__(self) -> None:
        self.iteration = 1
        self._events: dict[int, list[tuple[str, int, str]]] = defaultdict(list)  # (method, id(tensor), where)
        self._saved: dict[str, object] = {}
        self._inside = False

    def next_iteration(self, total_iters: int) -> None:
        self.iteration = total_iters + 1

    def _wrap(self, name: str, method):
        reads = self

        def wrapper(tensor, *args, **kwargs):
            if not reads._inside:  # a read inside another (e.g. format -> item) counts once
                reads._inside = True
                try:
                    where = _where()
                    reads._events[reads.iteration].append((name, id(tensor), where))
                finally:
                    reads._inside = False
            return method(tensor, *args, **kwargs)

        wrapper.__name__ = name
        return wrapper

    def __enter__(self) -> "HostReads":
        for name in READS:
            self._saved[name] = getattr(torch.Tensor, name)
            setattr(torch.Tensor, name, self._wrap(name, self._saved[name]))
        return self

    def __exit__(self, *exc) -> None:
        for name, method in self._saved.items():
            setattr(torch.Tensor, name, method)

    def at(self, iteration: int, host_tensors: set[int] = frozenset()) -> list[str]:
        """The reads of ``iteration`` that would synchronise with a GPU (see the module docstring)."""
        return [f"{name} at {where[:1500]}" for name, ident, where in self._events.get(iteration, [])
                if "torch/utils/data/" not in where and ident not in host_tensors]


def _where() -> str:
    """The stack of the read, innermost first, as ``file:line`` entries."""
    frames = traceback.extract_stack()[:-2]
    return " <- ".join(f"{f.filename.split('site-packages/')[-1]}:{f.lineno}" for f in reversed(frames))


def host_step_counters(*optimizers: torch.optim.Optimizer) -> set[int]:
    """The ids of the ``step`` tensors that torch keeps on the host: those of parameter groups that run neither
    the fused nor the capturable implementation (see the module docstring)."""
    return {id(opt.state[p]["step"]) for opt in optimizers for group in opt.param_groups
            if not group.get("fused") and not group.get("capturable")
            for p in group["params"] if isinstance(opt.state.get(p, {}).get("step"), torch.Tensor)}
