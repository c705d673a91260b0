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

MIN_BOOT_PROMPTS = 10  # a percentile bootstrap over fewer prompts cannot show its own uncertainty


def figure(value: float | None, n: int, ci: tuple[float, float] | None = None, *, method: str | None = None,
           note: str | None = None, min_n: int = 1, prompts: int | None = None, **extra: Any) -> dict[str, Any]:
    """A figure with its n and CI, or a note instead of a number when too few prompts back it.

    ``min_n`` counts prompts (``prompts``) when given — votes on one prompt are not
    independent — else ``n``.
    """
    value = _finite(value)
    base = {"n": n, **({"prompts": prompts} if prompts is not None else {})}
    counted = prompts if prompts is not None else n
    if counted < min_n:
        what = f"{counted} prompt{'' if counted == 1 else 's'}" if prompts is not None else f"n={n}"
        return {"value": None, **base, "ci": None, "method": method, "note": f"n too small ({what} < {min_n})", **extra}
    if value is None and note is None:
        note = "undefined"
    lo, hi = (ci if ci is not None else (None, None))
    lo, hi = _finite(lo), _finite(hi)
    return {"value": value, **base, "ci": [lo, hi] if lo is not None and hi is not None else None,
            "method": method, "note": note, **extra}


def wilson(k: float, n: float, z: float = Z95) -> tuple[float, float] | None:
    """95 % Wilson score interval for k successes in n trials (None for n = 0).

    Whole counts go through scipy (``binomtest(k, n).proportion_ci("wilson")``); a count
    with half-wins (ties) uses the same score formula directly, which scipy does not take.
    Never of zero width for n > 0.
    """
    if n <= 0:
        return None
    if float(k).is_integer() and float(n).is_integer() and abs(z - Z95) < 1e-12:
        from scipy.stats import binomtest

        ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=0.95, method="wilson")
        return float(ci.low), float(ci.high)
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
    """Percentile 95 % CI of sum(num)/sum(den), resampling clusters (one entry per prompt), by
    ``scipy.stats.bootstrap`` (paired resampling of the two per-prompt sums)."""
    from scipy.stats import bootstrap

    num_a, den_a = np.asarray(num, float), np.asarray(den, float)
    if len(num_a) < 2 or n_boot <= 0:
        return None

    def ratio(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        d = y.sum(axis=axis)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(d > 0, x.sum(axis=axis) / np.where(d > 0, d, 1.0), np.nan)

    res = bootstrap((num_a, den_a), ratio, paired=True, vectorized=True, n_resamples=n_boot, method="percentile",
                    confidence_level=0.95, random_state=np.random.default_rng(seed))
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return None
    return lo, hi


def share(successes: Sequence[float], trials: Sequence[float], *, n_boot: int, seed: int, min_n: int,
          **extra: Any) -> dict[str, Any]:
    """A share from per-prompt counts, with an interval that never claims certainty it lacks.

    One trial per prompt: Wilson. Several votes on some prompts (not independent): a
    percentile bootstrap over prompts, when there are at least :data:`MIN_BOOT_PROMPTS`
    prompts and the bootstrap does not collapse to one value; otherwise Wilson (a bootstrap
    over two prompts would report ``100 % [100–100]``). ``min_n`` counts prompts.
    """
    pairs = [(float(s), float(t)) for s, t in zip(successes, trials, strict=True) if t > 0]
    k, n = sum(s for s, _ in pairs), int(round(sum(t for _, t in pairs)))
    prompts = len(pairs)
    if n == 0:
        return figure(None, 0, min_n=min_n, prompts=0, **extra)
    clustered = any(t > 1 for _, t in pairs)
    ci, method = None, "wilson"
    if clustered and prompts >= MIN_BOOT_PROMPTS:
        ci = bootstrap_ratio([s for s, _ in pairs], [t for _, t in pairs], n_boot, seed)
        method = "bootstrap over prompts"
        if ci is None or ci[1] - ci[0] <= 1e-12:
            ci, method = None, "wilson"
    if ci is None:
        ci = wilson(k, n)
        if clustered:
            method = f"wilson (votes cluster on {prompts} prompts: too few for a bootstrap, or it collapsed)"
    return figure(k / n, n, ci, method=method, min_n=min_n, prompts=prompts, **extra)


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
