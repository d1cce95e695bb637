"""Block subspace iteration (the streamed path of Delplace's metrics) against a dense SVD."""

from __future__ import annotations

import numpy as np
import pytest

from medgan.analysis.metrics.subspace import CentredRows, count_check, top_eigenpairs


def designed(n=300, d=400, seed=0):
    """Rows with a known spectrum: a decaying one with an exactly repeated pair (3rd, 4th)."""
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.normal(size=(n, 60)))
    v, _ = np.linalg.qr(rng.normal(size=(d, 60)))
    s = 100.0 * 0.8 ** np.arange(60)
    s[3] = s[2]
    x = (u * s) @ v.T + 5.0  # an offset the centring must remove
    return x.astype(np.float32)


def naive(x):
    c = x.astype(np.float64) - x.astype(np.float64).mean(axis=0)
    _, s, vt = np.linalg.svd(c, full_matrices=False)
    return s**2, vt


@pytest.mark.parametrize("block_bytes", [4 * 400 * 7, 2**30])  # 7 rows per block; one block
def test_eigenvalues_and_subspace_match_a_dense_svd(block_bytes):
    x = designed()
    eig, vt = naive(x)
    op = CentredRows(x, x.astype(np.float64).mean(axis=0), block_bytes=block_bytes)
    theta, vec, info = top_eigenpairs(op, 8)
    np.testing.assert_allclose(theta, eig[:8], rtol=1e-7)
    assert info["iterations_float64"] >= 1  # the final check is always on float64 products
    theta_v, vec_v, info_v = top_eigenpairs(op, 8, tol=1e-10, vectors=True)
    proj, proj_naive = vec_v.T @ vec_v, vt[:8].T @ vt[:8]
    assert np.abs(proj - proj_naive).max() < 1e-8  # the wanted subspace, despite the pair
    np.testing.assert_allclose(np.abs(np.sum(vec_v[:2] * vt[:2], axis=1)), 1.0, atol=1e-8)
    np.testing.assert_allclose(theta_v, eig[:8], rtol=1e-9)


def test_too_few_iterations_raise_and_bad_sizes_are_refused():
    x = designed()
    op = CentredRows(x, x.astype(np.float64).mean(axis=0), block_bytes=2**30)
    with pytest.raises(RuntimeError, match="did not converge"):
        top_eigenpairs(op, 8, max_iter=2)
    with pytest.raises(ValueError, match="block"):
        top_eigenpairs(op, 390)


@pytest.mark.parametrize("max_blocks", [1, 2, 12])  # 1: plain subspace iteration (a restart
def test_krylov_restarts_match_a_dense_svd(max_blocks):  # every pass); 2: thick restarts
    x = designed()
    eig, vt = naive(x)
    op = CentredRows(x, x.astype(np.float64).mean(axis=0), block_bytes=4 * 400 * 50)
    theta, vec, info = top_eigenpairs(op, 8, tol=1e-9, vectors=True, max_blocks=max_blocks)
    np.testing.assert_allclose(theta, eig[:8], rtol=1e-9)
    assert np.abs(vec.T @ vec - vt[:8].T @ vt[:8]).max() < 1e-8
    assert info["iterations_float64"] >= 1


def test_krylov_basis_beyond_the_rank_stays_exact():
    """Rank 10 (after centring): the Krylov basis (4 blocks of 24) outgrows it; the extra
    directions are null vectors, kept orthonormal, and the top eigenvalues stay exact."""
    rng = np.random.default_rng(3)
    x = (rng.normal(size=(120, 10)) * np.linspace(5, 1, 10)) @ rng.normal(size=(10, 300)) + 2.0
    x = x.astype(np.float32)
    eig, vt = naive(x)
    op = CentredRows(x, x.astype(np.float64).mean(axis=0), block_bytes=2**30)
    theta, vec, _ = top_eigenpairs(op, 8, tol=1e-9, vectors=True, max_blocks=4)
    np.testing.assert_allclose(theta, eig[:8], rtol=1e-9)
    assert np.abs(vec.T @ vec - vt[:8].T @ vt[:8]).max() < 1e-8


def test_count_check_certificates():
    """The count above tau: trace bound (rigorous), residual brackets, a block too small."""
    theta = np.array([10.0, 6.0, 1.0, 0.5])
    res = np.array([0.1, 0.1, 0.1, 0.1])
    out = count_check(theta, res, 3, 2.0, trace=18.0)  # 18 - 16 = 2 <= tau
    assert out["count"] == 2 and out["certificate"] == "trace" and out["worst"] == 0.0
    out = count_check(theta, res, 3, 2.0, trace=40.0)
    assert out["certificate"] == "residual" and out["worst"] == pytest.approx(0.1 / 1.0)
    assert count_check(theta, np.array([0.1, 0.1, 1.5, 0.1]), 3, 2.0)["worst"] > 1
    assert count_check(theta, res, 2, 0.7)["need_more"]


def test_count_mode_decides_delta_above_a_flat_floor():
    """40 strong directions over a white-noise floor: the count needs a block larger than the
    first, and the floor's Ritz values never converge (they need not)."""
    rng = np.random.default_rng(3)
    n, d = 400, 900
    x = rng.normal(size=(n, 40)) @ (0.5 * rng.normal(size=(40, d))) + rng.normal(size=(n, d))
    x = x.astype(np.float32)
    w, _ = naive(x)
    tau = 0.01 * w.sum()
    op = CentredRows(x, x.astype(np.float64).mean(axis=0), block_bytes=4 * d * 50)
    theta, vt, info = top_eigenpairs(op, 32, count_above=tau, trace=w.sum(), tol=0.05)
    assert info["need_more"] and info["count"] >= 32
    theta, vt, info = top_eigenpairs(op, 64, count_above=tau, trace=w.sum(), tol=0.05,
                                     start=vt.T)
    assert info["decided"] and info["count"] == int(np.sum(w > tau)) > 32
    assert info["certificate"] == "residual"
