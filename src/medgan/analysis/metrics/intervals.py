"""Confidence intervals of the metrics: exact (Clopper-Pearson) for shares of a count, and
percentile bootstrap for means of per-sample values.

Each returns ``(lo, hi)`` at confidence ``level`` (e.g. 0.95). They give the sampling
uncertainty of the scored set: a metric row carries them as ``<metric>_lo`` and
``<metric>_hi``, and a health verdict (:mod:`medgan.analysis.health`) that would rest on an
interval spanning its threshold says ``uncertain`` instead.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import binomtest


def _check_level(level: float) -> None:
    if not 0 < level < 1:
        raise ValueError(f"the confidence level must be in (0, 1), got {level!r}")


def proportion_interval(k: int, n: int, *, level: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson interval of a share ``k / n`` (exact for a binomial count)."""
    _check_level(level)
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="exact")
    return float(ci.low), float(ci.high)


def bootstrap_mean_interval(values: np.ndarray, *, level: float = 0.95, n_boot: int = 1000,
                            seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (``n_boot`` resamples with
    replacement, seeded); a single value gives a zero-width interval."""
    _check_level(level)
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0 or not np.isfinite(values).all():
        raise ValueError("the bootstrap needs at least one value and only finite values")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(n_boot, values.size))].mean(axis=1)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return float(lo), float(hi)


def mean_interval(mean: float, std: float, n: int, *, level: float = 0.95
                  ) -> tuple[float, float]:
    """Normal-approximation interval ``mean -/+ z std / sqrt(n)`` of a mean of ``n`` values
    (for metrics that keep only their mean and standard deviation)."""
    from scipy.stats import norm

    _check_level(level)
    if n < 1:
        raise ValueError(f"need n >= 1, got {n}")
    half = float(norm.ppf(0.5 + level / 2)) * std / np.sqrt(n)
    return float(mean - half), float(mean + half)
