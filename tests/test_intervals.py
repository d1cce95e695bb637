"""Confidence intervals of the metrics: exact shares, bootstrap means, normal means."""

import numpy as np
import pytest

from medgan.analysis.metrics.intervals import (
    bootstrap_mean_interval,
    mean_interval,
    proportion_interval,
)


def test_proportion_interval_is_exact_clopper_pearson():
    lo, hi = proportion_interval(0, 10)
    assert lo == 0 and hi == pytest.approx(1 - 0.025 ** 0.1)
    lo, hi = proportion_interval(50, 100)
    assert lo == pytest.approx(0.3983, abs=1e-4) and hi == pytest.approx(0.6017, abs=1e-4)
    assert proportion_interval(10, 10)[1] == 1.0
    with pytest.raises(ValueError, match="k <= n"):
        proportion_interval(11, 10)
    with pytest.raises(ValueError, match="level"):
        proportion_interval(1, 10, level=1.0)


def test_bootstrap_interval_holds_the_mean_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    small, large = rng.normal(size=30), rng.normal(size=3000)
    lo_s, hi_s = bootstrap_mean_interval(small, n_boot=500)
    lo_l, hi_l = bootstrap_mean_interval(large, n_boot=500)
    assert lo_s < small.mean() < hi_s and lo_l < large.mean() < hi_l
    assert hi_l - lo_l < (hi_s - lo_s) / 5
    assert bootstrap_mean_interval(np.ones(5)) == (1.0, 1.0)
    assert bootstrap_mean_interval(small, seed=3) == bootstrap_mean_interval(small, seed=3)
    with pytest.raises(ValueError, match="finite"):
        bootstrap_mean_interval(np.array([1.0, np.nan]))


def test_mean_interval_is_z_times_the_standard_error():
    lo, hi = mean_interval(0.5, 0.2, 100)
    assert (hi - lo) / 2 == pytest.approx(1.959964 * 0.02, rel=1e-5)
