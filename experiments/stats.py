"""Statistics shared by the experiments: means with percentile-bootstrap 95% confidence intervals.

numpy only. Every interval resamples the *seeds* (the independent units of a paired design): for a
difference ``arm - base`` the per-seed differences are resampled, so the shared randomness of a seed
(initial weights, batch order) cancels. A difference is *resolved* when its interval excludes 0.

With few seeds a percentile bootstrap is narrow-biased (3 seeds give at most 10 distinct resamples);
the tables say how many seeds each interval rests on.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

N_BOOT = 10_000


def bootstrap_ci(values: Sequence[float], *, level: float = 0.95, n_boot: int = N_BOOT,
                 seed: int = 0) -> dict:
    """Mean of the finite ``values`` and its percentile-bootstrap interval.

    Non-finite values (a diverged run) are not averaged: they are counted in ``"diverged"``; the
    caller reports that count next to the mean.
    """
    arr = np.asarray(list(values), dtype=np.float64)
    finite = arr[np.isfinite(arr)]
    out = {"n": int(finite.size), "diverged": int(arr.size - finite.size)}
    if finite.size == 0:
        return {**out, "mean": math.nan, "lo": math.nan, "hi": math.nan}
    mean = float(finite.mean())
    if finite.size == 1:
        return {**out, "mean": mean, "lo": math.nan, "hi": math.nan}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, finite.size, size=(n_boot, finite.size))
    means = finite[idx].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return {**out, "mean": mean, "lo": float(lo), "hi": float(hi)}


def paired_difference(arm: Sequence[float], base: Sequence[float], **kwargs) -> dict:
    """``arm - base`` seed by seed, with its bootstrap interval and whether the interval excludes 0.

    A seed where either run diverged (non-finite) is left out of the difference and counted in
    ``"diverged"``.
    """
    a = np.asarray(list(arm), dtype=np.float64)
    b = np.asarray(list(base), dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired_difference needs one value per seed in both arms, got {a.size} and {b.size}")
    res = bootstrap_ci(a - b, **kwargs)
    res["resolved"] = bool(res["n"] > 1 and (res["lo"] > 0 or res["hi"] < 0))
    return res


def fmt_ci(res: dict, digits: int = 2, scale: float = 1.0, signed: bool = False) -> str:
    """``mean [lo, hi]`` (scaled), plus ``(k diverged)`` when some runs diverged."""
    if res["n"] == 0:
        text = "diverged"
    else:
        sign = "+" if signed else ""
        m = f"{res['mean'] * scale:{sign}.{digits}f}"
        if math.isnan(res["lo"]):
            text = m
        else:
            text = f"{m} [{res['lo'] * scale:{sign}.{digits}f}, {res['hi'] * scale:{sign}.{digits}f}]"
    if res.get("diverged"):
        text += f" ({res['diverged']} diverged)"
    return text
