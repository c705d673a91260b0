"""Intervals for every figure the product shows: Wilson for shares, cluster bootstrap, Student-t for means.

A figure is a dict ``{"value", "n", "ci", "method", "note"}``; ``value`` and ``ci`` are None
with a note whenever the figure cannot honestly be given (too few items, no variation).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

Z95 = 1.959963984540054

def _finite(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None

def figure(value: float | None, n: int, ci: tuple[float, float] | None = None, *, method: str | None = None,
           note: str | None = None, min_n: int = 1, **extra: Any) -> dict[str, Any]:
    """A figure with its n and CI, or a note instead of a number when n < ``min_n``."""
    value = _finite(value)
    if n < min_n:
        return {"value": None, "n": n, "ci": None, "method": method, "note": f"n too small (n={n} < {min_n})", **extra}
    if value is None and note is None:
        note = "undefined"
    lo, hi = (ci if ci is not None else (None, None))
    lo, hi = _finite(lo), _finite(hi)
    return {"value": value, "n": n, "ci": [lo, hi] if lo is not None and hi is not None else None,
            "method": method, "note": note, **extra}

def wilson(k: float, n: float, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval for k successes in n trials (None for n = 0)."""
    if n <= 0:
        return None
    p = k / n
    den = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(max(p * (1 - p) / n + z * z / (4 * n * n), 0.0)) / den
    return max(0.0, centre - half), min(1.0, centre + half)

def boot_index_chunks(m: int, n_boot: int, rng: np.random.Generator) -> Iterable[np.ndarray]:
    """Resampling index matrices (rows = bootstrap replicates), in chunks that bound memory."""
    per = max(1, 2_000_000 // max(m, 1))
    left = n_boot
    while left > 0:
        b = min(per, left)
        yield rng.integers(0, m, size=(b, m))
        left -= b

def bootstrap_ratio(num: Sequence[float], den: Sequence[float], n_boot: int, seed: int) -> tuple[float, float] | None:
    """Percentile 95 % CI of sum(num)/sum(den), resampling clusters (one entry per prompt)."""
    num_a, den_a = np.asarray(num, float), np.asarray(den, float)
    m = len(num_a)
    if m == 0 or n_boot <= 0:
        return None
    rng = np.random.default_rng(seed)
    vals: list[np.ndarray] = []
    for idx in boot_index_chunks(m, n_boot, rng):
        s_num, s_den = num_a[idx].sum(axis=1), den_a[idx].sum(axis=1)
        ok = s_den > 0
        vals.append(s_num[ok] / s_den[ok])
    allv = np.concatenate(vals) if vals else np.array([])
    if allv.size == 0:
        return None
    return float(np.percentile(allv, 2.5)), float(np.percentile(allv, 97.5))

def share(successes: Sequence[float], trials: Sequence[float], *, n_boot: int, seed: int, min_n: int,
          **extra: Any) -> dict[str, Any]:
    """A share from per-cluster counts: Wilson if no cluster holds more than one trial, else bootstrap."""
    k, n = float(sum(successes)), int(round(sum(trials)))
    if n == 0:
        return figure(None, 0, min_n=min_n, **extra)
    clustered = any(t > 1 for t in trials)
    if clustered:
        ci, method = bootstrap_ratio(successes, trials, n_boot, seed), "bootstrap over prompts"
    else:
        ci, method = wilson(k, n), "wilson"
    return figure(k / n, n, ci, method=method, min_n=min_n, **extra)


def mean_ci(values: Sequence[float], level: float = 0.95, lower: float | None = None,
            upper: float | None = None) -> dict[str, Any]:
    """Mean with a Student-t confidence interval clipped to [lower, upper]; ``lo``/``hi`` are None below n = 2."""
    n = len(values)
    if n == 0:
        return {"mean": None, "lo": None, "hi": None, "n": 0, "sd": None}
    mean = sum(values) / n
    if n < 2:
        return {"mean": mean, "lo": None, "hi": None, "n": 1, "sd": None}
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    from scipy.stats import t

    half = float(t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    lo, hi = mean - half, mean + half
    if lower is not None:
        lo = max(lo, lower)
    if upper is not None:
        hi = min(hi, upper)
    return {"mean": mean, "lo": lo, "hi": hi, "n": n, "sd": sd}
