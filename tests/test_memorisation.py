"""Nearest-training-image distances: exactness, the memorisation report and the figure."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from medgan.analysis.metrics.memorisation import (
    channel_stats,
    memorisation_report,
    nearest_neighbours,
    plot_closest_pairs,
)

SCALE = np.array([1.0, 5.0], dtype=np.float32)[None, :, None, None]


def population(n: int, seed: int, size: int = 12) -> np.ndarray:
    """Two channels in different units (offset, scale) with a little spatial structure."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2, size, size)) + rng.normal(size=(n, 2, 1, 1))
    return (x * SCALE + np.array([0.0, 100.0])[None, :, None, None]).astype(np.float32)


def brute_force(queries: np.ndarray, reference: np.ndarray):
    flat_ref = reference.astype(np.float64)
    mean = flat_ref.mean(axis=(0, 2, 3), keepdims=True)
    std = flat_ref.std(axis=(0, 2, 3), keepdims=True)
    q = ((queries - mean) / std).reshape(len(queries), -1)
    r = ((flat_ref - mean) / std).reshape(len(reference), -1)
    d = np.sqrt(((q[:, None, :] - r[None, :, :]) ** 2).sum(axis=-1))
    return d.min(axis=1), d.argmin(axis=1)


@pytest.mark.parametrize("chunk", [None, 7, 64])
def test_nearest_neighbours_equal_brute_force(chunk):
    ref = population(90, seed=0)
    queries = population(40, seed=1)
    queries[:5] = ref[[3, 17, 17, 50, 89]] + 1e-4  # near-copies: tiny distances stay exact
    dist, idx = nearest_neighbours(queries, ref, chunk=chunk)
    want_d, want_i = brute_force(queries, ref)
    np.testing.assert_array_equal(idx, want_i)
    np.testing.assert_allclose(dist, want_d, rtol=1e-9, atol=1e-12)
    assert np.all(idx[:5] == [3, 17, 17, 50, 89])


def test_channel_stats_standardise_each_channel():
    ref = population(30, seed=2)
    mean, std = channel_stats(ref)
    np.testing.assert_allclose(mean, ref.astype(np.float64).mean(axis=(0, 2, 3)), rtol=1e-10)
    np.testing.assert_allclose(std, ref.astype(np.float64).std(axis=(0, 2, 3)), rtol=1e-10)
    const = np.zeros((4, 1, 8, 8), dtype=np.float32)
    assert channel_stats(const)[1][0] == 1.0


def test_memorising_generator_is_flagged():
    train = population(200, seed=3)
    heldout = population(200, seed=4)
    rng = np.random.default_rng(5)
    copies = train[rng.integers(0, 200, size=100)] + 0.01 * rng.normal(size=(100, 2, 12, 12))
    summary, table = memorisation_report(train, copies.astype(np.float32), heldout)
    assert summary["share_closer"] > 0.95
    assert summary["median_ratio"] < 0.1
    assert summary["mannwhitney_p_synthetic_smaller"] < 1e-10
    assert (summary["n_train"], summary["n_synthetic"], summary["n_heldout"]) == (200, 100, 200)
    assert list(table.columns) == ["index", "nn_index", "distance", "below_threshold"]
    assert len(table) == 100 and table["below_threshold"].mean() == summary["share_closer"]


def test_generator_like_heldout_data_is_not_flagged():
    train = population(200, seed=6)
    heldout = population(400, seed=7)
    synthetic = population(400, seed=8)
    summary, _ = memorisation_report(train, synthetic, heldout, quantile=0.05)
    assert summary["share_closer"] < 0.12
    assert 0.9 < summary["median_ratio"] < 1.1
    assert summary["mannwhitney_p_synthetic_smaller"] > 0.01
    d_held, _ = nearest_neighbours(heldout, train)
    assert summary["threshold"] == pytest.approx(np.quantile(d_held, 0.05))


def test_plot_closest_pairs_writes_a_png(tmp_path):
    train = population(30, seed=9)
    synthetic = train[:10] + np.float32(0.1)
    dist, idx = nearest_neighbours(synthetic, train)
    path = tmp_path / "fig" / "closest.png"
    plot_closest_pairs(synthetic, train, dist, idx, path, n=4, channel_names=["T1", "T2"])
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size[0] > 100
    assert [p.name for p in path.parent.iterdir()] == ["closest.png"]  # no temporary left
    with pytest.raises(ValueError, match="channel names"):
        plot_closest_pairs(synthetic, train, dist, idx, path, channel_names=["T1"])


def test_bad_input_raises_clear_errors():
    train = population(10, seed=10)
    with pytest.raises(ValueError, match="shapes must match"):
        nearest_neighbours(train[:, :1], train)
    bad = train.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        nearest_neighbours(bad, train)
    with pytest.raises(ValueError, match="quantile"):
        memorisation_report(train, train, train, quantile=1.5)
    with pytest.raises(ValueError, match="heldout"):
        memorisation_report(train, train, train[:1])
    with pytest.raises(ValueError, match="chunk"):
        nearest_neighbours(train, train, chunk=0)
