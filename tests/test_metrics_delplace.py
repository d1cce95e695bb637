"""Delplace 2019 realism rho and diversity sigma, delta against naive numpy computations."""

from __future__ import annotations

import numpy as np
import pytest

from medgan.analysis.metrics import delplace
from medgan.analysis.metrics.delplace import (
    RealPCA,
    diversity_sigma_delta,
    fit_real_pca,
    realism_per_image,
    realism_rho,
)


def smooth_family(n: int, *, channels: int = 1, size: int = 8, n_basis: int = 6, seed: int = 0):
    """Random combinations of a few smooth (Gaussian blob) basis images plus a mean image."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    basis = []
    for _ in range(n_basis):
        cy, cx = rng.uniform(0.1, 0.9, size=2)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 0.2**2))
        basis.append(np.stack([blob * rng.uniform(0.5, 1.5) for _ in range(channels)]))
    basis = np.stack(basis)  # (K, C, H, W)
    coef = rng.normal(size=(n, n_basis)) * np.linspace(2.0, 0.5, n_basis)
    images = 0.3 + np.einsum("nk,kchw->nchw", coef, basis)
    return (images + 0.01 * rng.normal(size=images.shape)).astype(np.float32)


def anisotropic_noise(n: int, shape, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scale = np.linspace(0.2, 3.0, int(np.prod(shape))).reshape(shape)
    return (rng.normal(size=(n, *shape)) * scale + 1.0).astype(np.float32)


def naive_pca(images: np.ndarray, k: int):
    flat = images.reshape(len(images), -1).astype(np.float64)
    cov = np.cov(flat, rowvar=False)
    w, v = np.linalg.eigh(cov)
    return flat.mean(axis=0), w[::-1][:k], v[:, ::-1][:, :k].T, np.trace(cov)


@pytest.mark.parametrize("channels", [1, 2])
def test_pca_matches_eigendecomposition_of_covariance(channels):
    images = anisotropic_noise(60, (channels, 8, 8))
    pca = fit_real_pca(images)
    mean, w, v, total = naive_pca(images, 16)
    np.testing.assert_allclose(pca.mean, mean, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(pca.explained_variance, w, rtol=1e-6)
    np.testing.assert_allclose(np.abs(np.sum(pca.components * v, axis=1)), 1.0, atol=1e-6)
    np.testing.assert_allclose(pca.components @ pca.components.T, np.eye(16), atol=1e-10)
    assert np.all(np.diff(pca.explained_variance) <= 0)
    np.testing.assert_allclose(pca.total_variance, total, rtol=1e-10)
    np.testing.assert_allclose(pca.explained_variance_ratio, w / total, rtol=1e-6)
    assert pca.n == 60 and pca.image_shape == (channels, 8, 8)


@pytest.mark.parametrize("channels", [1, 2])
def test_rho_matches_naive_projection(channels):
    real = anisotropic_noise(60, (channels, 8, 8))
    gen = anisotropic_noise(25, (channels, 8, 8), seed=5)
    pca = fit_real_pca(real)
    mean, _, v, _ = naive_pca(real, 16)
    c = gen.reshape(25, -1).astype(np.float64) - mean
    u = c / np.linalg.norm(c, axis=1, keepdims=True)
    expected = np.linalg.norm(u @ v.T, axis=1)
    np.testing.assert_allclose(realism_per_image(gen, pca), expected, rtol=1e-6)
    assert realism_rho(gen, pca) == pytest.approx(expected.mean(), rel=1e-6)


def delplace_cov(images: np.ndarray, threshold: float = 0.01):
    """Delplace's evaluate_gan.py, directly: np.cov of the rows (images) after subtracting the
    mean image; sigma = its trace, delta = #{eigenvalues > threshold * sigma} (np.linalg.eigh)."""
    flat = images.reshape(len(images), -1).astype(np.float64)
    cov = np.cov(flat - flat.mean(axis=0))
    w = np.linalg.eigh(cov)[0][::-1]
    sigma = float(np.trace(cov))
    return sigma, int(np.sum(w > threshold * sigma)), w


def spectra(n: int, size: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Four kinds of spectrum: decaying (smooth modes), low rank + noise, flat (white noise of
    4 x 4 times the pixels, so that every eigenvalue is below 1 % of the sum), collapsed."""
    rng = np.random.default_rng(seed)
    d = size * size
    decaying = anisotropic_noise(n, (1, size, size), seed=seed + 3)
    decaying[: n // 2] += smooth_family(n // 2, size=size, seed=seed)
    basis = rng.normal(size=(40, d)) / np.sqrt(d) * np.sqrt(4 * d / 40)
    low_rank = rng.normal(size=(n, 40)) @ basis + rng.normal(size=(n, d)) + 0.5
    collapsed = smooth_family(3, size=size, seed=seed)[rng.integers(0, 3, size=n)]
    collapsed = collapsed + 1e-3 * rng.normal(size=collapsed.shape)
    return {"decaying": decaying, "low_rank": low_rank.reshape(n, 1, size, size),
            "flat": rng.normal(size=(n, 1, 4 * size, 4 * size)) + 3.0, "collapsed": collapsed}


@pytest.mark.parametrize("streamed", [False, True])
@pytest.mark.parametrize("kind", ["decaying", "low_rank", "flat", "collapsed"])
def test_sigma_delta_equal_np_cov_of_the_images(kind, streamed, monkeypatch):
    """Delplace's sigma and delta (evaluate_gan.py: np.cov over rows = images, so each image is
    also centred over its pixels and the sum divided by P - 1) equal the direct np.cov /
    eigh computation to 1e-9, in memory and through the streamed block Krylov count."""
    images = spectra(300, 16)[kind].astype(np.float32)
    if streamed:
        monkeypatch.setattr(delplace, "_DENSE_BYTES", 0)
        monkeypatch.setattr(delplace, "_BLOCK_BYTES", 8 * 256 * 9)  # 9 rows per block
    out = diversity_sigma_delta(images)
    sigma, delta, w = delplace_cov(images)
    assert out["sigma"] == pytest.approx(sigma, rel=1e-9)
    assert out["sigma"] == pytest.approx(w.sum(), rel=1e-9)
    assert out["delta"] == delta
    assert {"decaying": delta > 3, "low_rank": delta > 32, "flat": delta == 0,
            "collapsed": delta == 2}[kind]  # the spectra are what they say
    top = np.asarray(out["eigenvalues_top"])
    assert len(top) == delta + 1 and np.all(np.diff(top) <= 0)
    assert np.all((top > 0.01 * sigma) == (w[: delta + 1] > 0.01 * sigma))
    np.testing.assert_allclose(top, w[: delta + 1], rtol=1e-9 if not streamed else 1e-2)
    assert out["sigma_per_image"] == pytest.approx(sigma / 300, rel=1e-9)
    assert out["certificate"] in (("exact",) if not streamed else ("trace", "residual"))


@pytest.mark.parametrize(("threshold", "max_eig"), [(0.01, 100), (0.05, 20)])
def test_scatter_definition_is_the_old_sum_of_squared_distances(threshold, max_eig):
    images = anisotropic_noise(60, (2, 8, 8), seed=3)
    images[:30] += smooth_family(30, channels=2, size=8)
    out = diversity_sigma_delta(images, threshold=threshold, max_eigenvalues=max_eig,
                                definition="scatter")
    flat = images.reshape(60, -1).astype(np.float64)
    centred = flat - flat.mean(axis=0)
    scatter_eig = np.linalg.eigvalsh(centred.T @ centred)[::-1]
    sigma = float(np.sum(centred**2))
    assert out["sigma"] == pytest.approx(sigma, rel=1e-10)
    assert out["delta"] == int(np.sum(scatter_eig > threshold * sigma))
    paper = diversity_sigma_delta(images, threshold=threshold, max_eigenvalues=max_eig)
    assert paper["sigma"] == pytest.approx(delplace_cov(images, threshold)[0], rel=1e-10)
    assert out["sigma"] > 100 * paper["sigma"]  # ~P = 128 times larger
    with pytest.raises(ValueError, match="definition"):
        diversity_sigma_delta(images, definition="trace")


def test_brightness_offsets_are_no_diversity():
    """np.cov centres each image over its pixels: images that differ only by a constant
    offset have sigma 0 as the paper computes it (not in the scatter reading)."""
    base = smooth_family(1, size=8)
    shifted = (base + np.linspace(-1, 1, 30)[:, None, None, None]).astype(np.float32)
    assert diversity_sigma_delta(shifted)["sigma"] == pytest.approx(0.0, abs=1e-9)
    assert diversity_sigma_delta(shifted, definition="scatter")["delta"] == 1


def test_mode_collapse_gives_small_delta_and_sigma():
    rng = np.random.default_rng(0)
    modes = smooth_family(2, size=64, seed=4)
    noise = 1e-3 * rng.normal(size=(200, 1, 64, 64))
    one_mode = (modes[np.zeros(200, dtype=int)] + noise).astype(np.float32)
    two_modes = (modes[rng.integers(0, 2, size=200)] + noise).astype(np.float32)
    diverse = smooth_family(200, size=64, n_basis=12, seed=4)
    out_1 = diversity_sigma_delta(one_mode)
    out_2 = diversity_sigma_delta(two_modes)
    out_d = diversity_sigma_delta(diverse)
    assert out_1["delta"] <= 1 and out_2["delta"] == 1
    assert out_d["delta"] >= 5
    assert out_1["sigma_per_image"] < 1e-3 * out_d["sigma_per_image"]


def test_realism_structured_beats_noise():
    real = smooth_family(200, size=16)
    pca = fit_real_pca(real)
    rng = np.random.default_rng(9)
    noise = (real.mean() + real.std() * rng.normal(size=(100, 1, 16, 16))).astype(np.float32)
    rho_real = realism_rho(real, pca)
    rho_new = realism_rho(smooth_family(100, size=16, seed=0)[::-1], pca)
    rho_noise = realism_rho(noise, pca)
    assert rho_real > 0.95 and rho_new > 0.95
    assert rho_noise < 0.5 * rho_real
    assert np.all((realism_per_image(noise, pca) >= 0) & (realism_per_image(noise, pca) <= 1))


def test_sigma_grows_with_n_but_per_image_stays():
    images = smooth_family(50, size=8)
    one = diversity_sigma_delta(images)
    two = diversity_sigma_delta(np.concatenate([images, images]))
    assert two["sigma"] == pytest.approx(2 * one["sigma"], rel=1e-10)
    assert two["sigma_per_image"] == pytest.approx(one["sigma_per_image"], rel=1e-10)
    assert two["delta"] == one["delta"] and two["n"] == 100


def test_edge_cases():
    const = np.ones((10, 1, 8, 8), dtype=np.float32)
    assert diversity_sigma_delta(const)["sigma"] == 0.0
    assert diversity_sigma_delta(const)["delta"] == 0
    single = diversity_sigma_delta(const[:1] * 3)
    assert single["sigma"] == 0.0 and single["delta"] == 0 and single["n"] == 1
    pair = diversity_sigma_delta(smooth_family(2))
    assert pair["delta"] == 1 and pair["sigma"] > 0
    real = smooth_family(40)
    pca = fit_real_pca(real)
    at_mean = pca.mean.reshape(1, 1, 8, 8)
    assert realism_per_image(at_mean, pca)[0] == 0.0
    bad = real.copy()
    bad[3, 0, 2, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        diversity_sigma_delta(bad)
    with pytest.raises(ValueError, match="NaN"):
        fit_real_pca(bad)
    with pytest.raises(ValueError, match="max_eigenvalues"):
        diversity_sigma_delta(real, max_eigenvalues=50)
    with pytest.raises(ValueError, match="at least 18"):
        fit_real_pca(real[:10])
    with pytest.raises(ValueError, match="identical"):
        fit_real_pca(np.ones((20, 1, 8, 8), dtype=np.float32))
    with pytest.raises(ValueError, match="shape"):
        realism_rho(smooth_family(5, size=16), pca)
    with pytest.raises(ValueError, match="N, C, H, W"):
        realism_rho(real[0], pca)


def test_pca_round_trips_as_dict_and_is_deterministic():
    real = smooth_family(40)
    pca = fit_real_pca(real, n_components=4)
    again = RealPCA.from_dict(pca.as_dict())
    np.testing.assert_array_equal(again.components, pca.components)
    assert again.image_shape == pca.image_shape and again.n == 40
    np.testing.assert_array_equal(fit_real_pca(real, n_components=4).components, pca.components)


def test_blockwise_path_matches_in_memory_path(monkeypatch):
    """Large sets are streamed in row blocks; force that on a small set and compare."""
    images = anisotropic_noise(250, (2, 16, 16), seed=3)
    images[:125] += smooth_family(125, channels=2, size=16)
    pca = fit_real_pca(images)
    div = diversity_sigma_delta(images)
    rho = realism_per_image(images[:30], pca)
    monkeypatch.setattr(delplace, "_DENSE_BYTES", 0)
    monkeypatch.setattr(delplace, "_BLOCK_BYTES", 8 * 512 * 7)  # 7 rows per block
    pca_b = fit_real_pca(images)
    np.testing.assert_allclose(pca_b.explained_variance, pca.explained_variance, rtol=1e-9)
    np.testing.assert_allclose(np.abs(np.sum(pca_b.components * pca.components, 1)), 1, atol=1e-8)
    np.testing.assert_allclose(realism_per_image(images[:30], pca_b), rho, rtol=1e-9)
    div_b = diversity_sigma_delta(images)
    assert div_b["delta"] == div["delta"] and div_b["sigma"] == pytest.approx(div["sigma"])
    small = images[:60, :, :4, :4]  # dense singular values gathered from the blocks
    monkeypatch.setattr(delplace, "_DENSE_BYTES", 2**30)
    expected = diversity_sigma_delta(small)
    monkeypatch.setattr(delplace, "_DENSE_BYTES", 0)
    assert diversity_sigma_delta(small)["eigenvalues_top"] == pytest.approx(
        expected["eigenvalues_top"], rel=1e-9
    )
    assert diversity_sigma_delta(small)["delta"] == delplace_cov(small)[1]


def test_streamed_path_equals_dense_float64_with_many_modes(monkeypatch):
    """The fast (streamed, block Krylov) path forced on a small set whose delta exceeds the
    first 32 eigenvalues (so the solve grows to 64): sigma, delta and the eigenvalues, the PCA
    and rho equal the dense float64 computation (eigendecomposition of the scatter matrix)."""
    n, size = 300, 16
    images = 0.3 * smooth_family(n, size=size, n_basis=8, seed=2)
    rng = np.random.default_rng(4)
    coef = rng.normal(size=(n, 60))  # comparable weights: ~60 modes of ~1.6 % each
    yy, xx = np.mgrid[0:size, 0:size] / size
    waves = np.stack([np.cos(np.pi * (i % 7 + 1) * yy + np.pi * (i // 7) * xx) for i in range(60)])
    images = (images + np.einsum("nk,khw->nhw", coef, waves)[:, None]).astype(np.float32)
    flat = images.reshape(n, -1).astype(np.float64)
    centred = flat - flat.mean(axis=0)
    w, v = np.linalg.eigh(centred.T @ centred)
    w, v = w[::-1], v[:, ::-1]
    sigma, delta, _ = delplace_cov(images)
    monkeypatch.setattr(delplace, "_DENSE_BYTES", 0)
    monkeypatch.setattr(delplace, "_BLOCK_BYTES", 8 * 256 * 9)  # 9 rows per float64 block
    out = diversity_sigma_delta(images)
    assert out["delta"] == delta > 32
    assert out["sigma"] == pytest.approx(sigma, rel=1e-10)
    pca = fit_real_pca(images)
    np.testing.assert_allclose(pca.explained_variance * (n - 1), w[:16], rtol=1e-6)
    u = centred / np.linalg.norm(centred, axis=1, keepdims=True)
    expected = np.linalg.norm(u @ v[:, :16], axis=1)
    np.testing.assert_allclose(realism_per_image(images, pca), expected, rtol=1e-6)
    assert realism_rho(images, pca) == pytest.approx(expected.mean(), rel=1e-6)
