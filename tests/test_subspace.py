"""Block subspace iteration (the streamed path of Delplace's metrics) against a dense SVD."""

from __future__ import annotations

import numpy as np
import pytest

from medgan.analysis.metrics.subspace import CentredRows, top_eigenpairs


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
