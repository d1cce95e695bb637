"""Delplace 2019 (sec. 3.2): PCA realism rho and diversity sigma, delta of an image set.

* Realism: a PCA of the *real* images gives 16 orthonormal eigenvectors E_i of their
  covariance matrix. An image g is centred on the real mean and scaled to unit length,
  u = (g - mean_real) / ||g - mean_real||; its realism is the norm of its projection on the
  eigenvectors, rho_g = sqrt(sum_i (u . E_i)^2), the cosine of the angle between u and the
  PCA subspace, in [0, 1]. rho is the mean of rho_g over the set (Delplace eq. 6).
* Diversity: sigma, "the total variation of the generated set", is the trace of the
  (unnormalised) scatter matrix S = sum_g (g - mean_g)(g - mean_g)^T, i.e.
  sigma = sum_g ||g - mean_g||^2; delta is the number of eigenvalues of S greater than 1 % of
  sigma. sigma grows with the number of images, so ``n`` and ``sigma / n`` are reported too.

Nothing here forms an N x N or D x D matrix. Up to 512 MB (5000 images of 64 x 64: 164 MB) the
centred float64 matrix is kept in memory and the eigen-decompositions are truncated SVDs by
ARPACK (:func:`scipy.sparse.linalg.svds`, tol=0). Larger sets (Table 3's 11,328 images of
256 x 256: 3 GB of float32) are streamed in row blocks through block Krylov iteration with a
Rayleigh-Ritz step over the Krylov basis (:mod:`medgan.analysis.metrics.subspace`): float32
products with float64 accumulation until float32's floor, then float64 products, stopping when
every wanted Ritz pair passes a float64 residual check (eigenvalue error r^2 / gap below 1e-7
relative; eigenvector angle r / gap below 1e-9 for the PCA, so each rho_g moves by less than
1e-9). sigma is exact from the row norms (one float64 pass), whatever the eigen-solver does.
The N x N Gram matrix of the centred images was considered and rejected by measurement: it
costs N^2 D / 2 = 4.2e12 multiply-adds at Table 3's size (as much as one pass with a block of
N / 4 = 2,832 vectors; 72 s of sgemm or 165 s of dgemm at the 117 / 51 GFLOP/s measured here on
2 cores, and a float32 Gram of uncentred float32 images would not keep 1e-6), while the Krylov
solves need ~10 passes with blocks of 32-48 vectors. benchmarks/delplace_bench.py times it at
the paper's size and compares it with the naive SVD.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.sparse.linalg import LinearOperator, svds

from medgan.analysis.metrics.subspace import CentredRows, top_eigenpairs

log = logging.getLogger(__name__)

_BLOCK_BYTES = 32 * 2**20  # float64 block of rows processed at once
_DENSE_BYTES = 512 * 2**20  # below this the centred float64 matrix is kept in memory
_SVD_SEED = 0  # ARPACK's / the Krylov iteration's start: fixed, so results are deterministic
_FIRST_EIGENVALUES = 16  # diversity: eigenvalues computed first (more only if all exceed)
_OVERSAMPLE = 16  # Krylov iteration: block = wanted + this many vectors
_VALUE_TOL = 1e-7  # Krylov iteration: relative eigenvalue error (r^2 / gap) for delta
_VECTOR_TOL = 1e-9  # ... angle of the PCA's eigenvectors (r / gap): rho_g moves by <= this
_COUNT_TOL = 0.05  # delta, streamed: residual r_i <= this x |theta_i - threshold|
_COUNT_PASSES = 60  # ... at most this many passes over the images per block size


def check_images(images: Any, name: str = "images", *, min_images: int = 1) -> np.ndarray:
    """``images`` as an (N, C, H, W) real array (no copy), or ValueError naming the problem.

    Also rejects NaN / inf values (checked block by block, so memory maps stay cheap).
    """
    arr = np.asarray(images)
    if arr.ndim != 4:
        raise ValueError(f"{name}: expected an (N, C, H, W) array, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{name}: expected a real-valued array, got dtype {arr.dtype}")
    if arr.shape[0] < min_images:
        raise ValueError(f"{name}: need at least {min_images} images, got {arr.shape[0]}")
    if min(arr.shape[1:]) < 1:
        raise ValueError(f"{name}: empty images, shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.floating):
        for sl in _row_blocks(arr.shape[0], int(np.prod(arr.shape[1:]))):
            if not np.isfinite(arr[sl]).all():
                raise ValueError(f"{name}: contains NaN or infinite values")
    return arr


def _row_blocks(n: int, d: int):
    rows = max(1, _BLOCK_BYTES // (8 * max(d, 1)))
    for start in range(0, n, rows):
        yield slice(start, min(n, start + rows))


class _CentredMatrix(LinearOperator):
    """The (N, D) matrix X - r 1^T - 1 mean^T in float64, applied block by block (never an
    N x N); ``offsets`` r (N,), or None for X - 1 mean^T (see :class:`CentredRows`)."""

    def __init__(self, flat: np.ndarray, mean: np.ndarray, offsets: np.ndarray | None = None):
        n, d = flat.shape
        self.flat, self.mean, self.offsets = flat, mean, offsets
        self._dense = None
        if n * d * 8 <= _DENSE_BYTES:
            self._dense = flat.astype(np.float64)
            self._dense -= mean
            if offsets is not None:
                self._dense -= offsets[:, None]
        self._buffer: np.ndarray | None = None
        super().__init__(dtype=np.dtype(np.float64), shape=(n, d))

    def blocks(self):
        if self._dense is not None:
            yield slice(0, self.shape[0]), self._dense
            return
        if self._buffer is None:  # reused: a fresh block per product costs page faults
            rows = next(iter(_row_blocks(*self.shape))).stop
            self._buffer = np.empty((rows, self.shape[1]))
        for sl in _row_blocks(*self.shape):
            block = self._buffer[: sl.stop - sl.start]
            np.subtract(self.flat[sl], self.mean, out=block)
            if self.offsets is not None:
                block -= self.offsets[sl, None]
            yield sl, block

    def squared_frobenius(self) -> float:
        return float(sum(np.einsum("ij,ij->", b, b) for _, b in self.blocks()))

    def _matmat(self, v):
        out = np.empty((self.shape[0], v.shape[1]))
        for sl, b in self.blocks():
            out[sl] = b @ v
        return out

    def _rmatmat(self, u):
        out = np.zeros((self.shape[1], u.shape[1]))
        for sl, b in self.blocks():
            out += b.T @ u[sl]
        return out

    def _matvec(self, v):
        return self._matmat(np.reshape(v, (-1, 1))).ravel()

    def _rmatvec(self, u):
        return self._rmatmat(np.reshape(u, (-1, 1))).ravel()


def _flat_mean(flat: np.ndarray) -> np.ndarray:
    total = np.zeros(flat.shape[1])
    for sl in _row_blocks(*flat.shape):
        total += flat[sl].sum(axis=0, dtype=np.float64)
    return total / flat.shape[0]


def _doubly_centred(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, offsets) of J_N X J_P = X - r 1^T - 1 m^T: r_i the pixel mean of image i, m the
    mean image of X - r 1^T (centring the pixels and the images commute)."""
    offsets = np.concatenate([flat[sl].mean(axis=1, dtype=np.float64)
                              for sl in _row_blocks(*flat.shape)])
    return _flat_mean(flat) - offsets.mean(), offsets


def _top_singular(op: _CentredMatrix, k: int, *, vectors: bool, start=None):
    """The k largest singular values (descending) and right singular vectors (or None).

    Singular values alone come from a dense ``np.linalg.svd(compute_uv=False)`` when N or D is
    tiny (<= 2k + 2, so X is small). A centred matrix kept in memory (<= ``_DENSE_BYTES``) goes
    to ARPACK (k < min(N, D) required). A streamed one goes to block Krylov iteration
    (:func:`medgan.analysis.metrics.subspace.top_eigenpairs`, float32 products then float64,
    eigenvalue errors r^2/gap below 1e-7 relative, angles r/gap below 1e-9 when the vectors
    are wanted), which also returns the vectors; ``start`` (k', D) seeds its start block.
    ARPACK remains for streamed matrices too narrow for the block.
    """
    n, d = op.shape
    if not vectors and min(n, d) <= 2 * k + 2:
        x = np.concatenate([b.copy() for _, b in op.blocks()])  # blocks share one buffer
        return np.linalg.svd(x, compute_uv=False)[:k], None
    if op._dense is None and k + _OVERSAMPLE <= min(n, d):
        rows = CentredRows(op.flat, op.mean, block_bytes=8 * _BLOCK_BYTES,
                           row_offsets=op.offsets)
        theta, vt, _ = top_eigenpairs(rows, k, oversample=_OVERSAMPLE, seed=_SVD_SEED,
                                      tol=_VECTOR_TOL if vectors else _VALUE_TOL,
                                      vectors=vectors,
                                      start=None if start is None else start.T)
        return np.sqrt(theta), vt
    rng = np.random.default_rng(_SVD_SEED)
    if vectors:
        _, s, vt = svds(op, k=k, tol=0, rng=rng)
    else:
        s = svds(op, k=k, tol=0, rng=rng, return_singular_vectors=False)
        vt = None
    order = np.argsort(s)[::-1]  # svds returns ascending singular values
    s = np.clip(s[order], 0.0, None)
    return s, (None if vt is None else vt[order])


@dataclass(frozen=True, eq=False)
class RealPCA:
    """PCA of the flattened real images (the reference of Delplace's realism rho).

    ``components`` (k, D): orthonormal rows, the top-k eigenvectors of the covariance matrix
    (sign fixed so that each row's largest-magnitude entry is positive).
    ``explained_variance`` (k,): their eigenvalues, descending, with the sample normalisation
    1 / (N - 1) (as ``np.cov``). ``total_variance``: the trace of that covariance,
    ||X - mean||_F^2 / (N - 1); ``explained_variance_ratio`` = eigenvalues / total_variance.
    """

    mean: np.ndarray
    components: np.ndarray
    explained_variance: np.ndarray
    explained_variance_ratio: np.ndarray
    total_variance: float
    n: int
    image_shape: tuple[int, int, int]

    def as_dict(self) -> dict[str, Any]:
        """Plain arrays and numbers (for ``np.savez`` or a weights-only torch checkpoint)."""
        return {
            "mean": self.mean,
            "components": self.components,
            "explained_variance": self.explained_variance,
            "explained_variance_ratio": self.explained_variance_ratio,
            "total_variance": float(self.total_variance),
            "n": int(self.n),
            "image_shape": tuple(int(s) for s in self.image_shape),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RealPCA:
        """Inverse of :meth:`as_dict`."""
        return cls(
            mean=np.asarray(d["mean"], dtype=np.float64),
            components=np.asarray(d["components"], dtype=np.float64),
            explained_variance=np.asarray(d["explained_variance"], dtype=np.float64),
            explained_variance_ratio=np.asarray(d["explained_variance_ratio"], dtype=np.float64),
            total_variance=float(d["total_variance"]),
            n=int(d["n"]),
            image_shape=tuple(int(s) for s in np.asarray(d["image_shape"]).ravel()),
        )


def fit_real_pca(real: np.ndarray, *, n_components: int = 16) -> RealPCA:
    """PCA of the real images: the top ``n_components`` eigenvectors of their covariance.

    Delplace 2019 sec. 3.2 uses 16 components ("55 %" of the variance of OASIS). Computed by
    a truncated SVD (ARPACK; block Krylov for large sets) of the centred (N, D) matrix, so
    it agrees with an eigendecomposition of ``np.cov`` of the flattened images to ~1e-10
    without forming it. Needs N >= n_components + 2 images and D > n_components pixels;
    constant data raise.
    """
    arr = check_images(real, "real", min_images=2)
    if not isinstance(n_components, int | np.integer) or n_components < 1:
        raise ValueError(f"n_components must be a positive integer, got {n_components!r}")
    n, d = arr.shape[0], int(np.prod(arr.shape[1:]))
    if n < n_components + 2:
        raise ValueError(
            f"real: a PCA with {n_components} components needs at least {n_components + 2} "
            f"images, got {n}"
        )
    if d <= n_components:
        raise ValueError(f"real: {d} pixels per image, need more than n_components={n_components}")
    flat = arr.reshape(n, d)
    mean = _flat_mean(flat)
    op = _CentredMatrix(flat, mean)
    total = op.squared_frobenius() / (n - 1)
    if not total > 0:
        raise ValueError("real: all images are identical; the PCA is undefined")
    s, vt = _top_singular(op, n_components, vectors=True)
    rows = np.arange(vt.shape[0])
    signs = np.sign(vt[rows, np.argmax(np.abs(vt), axis=1)])
    signs[signs == 0] = 1.0
    eig = s**2 / (n - 1)
    return RealPCA(
        mean=mean,
        components=vt * signs[:, None],
        explained_variance=eig,
        explained_variance_ratio=eig / total,
        total_variance=float(total),
        n=n,
        image_shape=tuple(int(x) for x in arr.shape[1:]),
    )


def realism_per_image(images: np.ndarray, pca: RealPCA) -> np.ndarray:
    """rho_g for each image (float64, in [0, 1]); see :func:`realism_rho`.

    An image numerically equal to the real mean (distance below 1e-9 x the real RMS distance
    to the mean) has no direction; its rho_g is defined as 0.
    """
    arr = check_images(images, "images")
    if tuple(arr.shape[1:]) != tuple(pca.image_shape):
        raise ValueError(
            f"images have shape {tuple(arr.shape[1:])} per image, the PCA was fitted on "
            f"{tuple(pca.image_shape)}"
        )
    n, d = arr.shape[0], int(np.prod(arr.shape[1:]))
    flat = arr.reshape(n, d)
    tiny = 1e-9 * math.sqrt(pca.total_variance)
    out = np.empty(n)
    comp_t = np.ascontiguousarray(pca.components.T)
    rows = min(n, max(1, _BLOCK_BYTES // d))  # 256 MB float64 blocks: dgemm efficiency
    buffer = np.empty((rows, d))  # reused: a fresh block each time costs page faults
    for start in range(0, n, rows):
        sl = slice(start, min(n, start + rows))
        c = buffer[: sl.stop - sl.start]
        np.subtract(flat[sl], pca.mean, out=c)
        norm = np.sqrt(np.einsum("ij,ij->i", c, c))
        proj = np.linalg.norm(c @ comp_t, axis=1)
        ok = norm > tiny
        out[sl] = np.where(ok, proj / np.where(ok, norm, 1.0), 0.0)
    return np.clip(out, 0.0, 1.0)


def realism_rho(images: np.ndarray, pca: RealPCA) -> float:
    """Delplace 2019 eq. 6: rho = mean_g || E (g - mean_real) / ||g - mean_real|| ||.

    E (k, D) are the real-data eigenvectors of :func:`fit_real_pca`; rho_g is the cosine of
    the angle between the centred image and the PCA subspace (1: fully explained by the main
    modes of the real data, ~sqrt(k / D): unstructured noise).
    """
    return float(realism_per_image(images, pca).mean())


def realism_rho_interval(images: np.ndarray, pca: RealPCA, *, level: float = 0.95,
                         n_boot: int = 1000, seed: int = 0) -> dict[str, float]:
    """rho with its percentile-bootstrap interval over the images (``rho``, ``rho_lo``,
    ``rho_hi``; the PCA of the real images held fixed)."""
    from medgan.analysis.metrics.intervals import bootstrap_mean_interval

    per_image = realism_per_image(images, pca)
    lo, hi = bootstrap_mean_interval(per_image, level=level, n_boot=n_boot, seed=seed)
    return {"rho": float(per_image.mean()), "rho_lo": lo, "rho_hi": hi}


DEFINITIONS = ("paper", "scatter")


def _streamed_count(op: _CentredMatrix, k: int, cap: int, tau: float, total: float):
    """Eigenvalues of A^T A above tau by the streamed block Krylov solver in count mode
    (:func:`medgan.analysis.metrics.subspace.top_eigenpairs`), growing the block (x 2, from
    the Ritz vectors found) while the count fills it. Returns (Ritz values, info)."""
    rows = CentredRows(op.flat, op.mean, block_bytes=8 * _BLOCK_BYTES, row_offsets=op.offsets)
    start = None
    while True:
        oversample = min(_OVERSAMPLE, min(op.shape) - k)
        theta, vt, info = top_eigenpairs(rows, k, oversample=oversample, seed=_SVD_SEED,
                                         tol=_COUNT_TOL, max_iter=_COUNT_PASSES, trace=total,
                                         count_above=tau, start=start)
        if not info["need_more"] or k >= cap:
            return theta, info
        k, start = min(cap, 2 * k), vt.T


def diversity_sigma_delta(
    images: np.ndarray, *, threshold: float = 0.01, max_eigenvalues: int = 100,
    definition: str = "paper",
) -> dict[str, Any]:
    """Delplace 2019 sec. 3.2 diversity: total variation sigma and eigenvalue count delta.

    ``definition="paper"`` (default), as Delplace's ``evaluate_gan.py`` computes Table 3: the
    images are flattened (N, P), the set's mean image is subtracted, and C = ``np.cov`` of the
    rows, the N x N covariance *between images*: np.cov also centres each image over its own P
    pixels and divides by P - 1. With A = J_N X J_P that doubly centred matrix,
    C = A A^T / (P - 1) and sigma = trace C = ||A||_F^2 / (P - 1) (exact, one float64 pass);
    delta = #{eigenvalues of C > threshold * sigma} (the paper: "the number of covariance
    matrix eigenvalues which are greater than 1% of sigma"; the code counts the leading run of
    np.linalg.eig's unordered output, the same when eig returns them in descending order).
    ``definition="scatter"``: medgan's former reading, sigma = sum_g ||g - mean||^2 (no pixel
    centring, no 1 / (P - 1); about P times the paper's) and delta of that scatter matrix.
    Both grow with N, so ``n`` and ``sigma_per_image`` = sigma / n are returned as well.

    Exactness of delta: the eigenvalues are >= 0 and sum to sigma, so fewer than 1 / threshold
    exceed threshold * sigma; only the top min(max_eigenvalues, N - 1, P) can (a smaller
    ``max_eigenvalues`` than floor(1 / threshold) raises). In memory (<= 512 MB) they are exact
    (ARPACK or a dense SVD, growing x 4 while the smallest computed one exceeds the threshold).
    Streamed (Table 3's 11,328 images of 256 px), block Krylov stops as soon as the *count* is
    decided (:func:`medgan.analysis.metrics.subspace.count_check`: rigorously by the trace
    bound, or when every Ritz value's residual interval lies on one side of the threshold),
    without converging eigenvalues that are far from it (a noise floor). Fewer than 2 images
    or constant images give sigma = 0, delta = 0. Returns sigma, delta, n, sigma_per_image,
    threshold, definition, ``eigenvalues_top`` (the largest delta + 1 eigenvalues of C,
    descending, where that many exist; streamed: Ritz values, each within its residual of an
    eigenvalue and on the same side of the threshold), ``eigenvalue_ratios_top`` (those /
    sigma) and ``certificate`` (``exact``, ``trace``, ``residual`` or ``undecided``: the
    streamed solver ran out of passes, e.g. an eigenvalue within rounding of the threshold, and
    delta counts the Ritz values above it).
    """
    arr = check_images(images, "images")
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    if definition not in DEFINITIONS:
        raise ValueError(f"definition must be one of {DEFINITIONS}, got {definition!r}")
    needed = math.floor(1.0 / threshold + 1e-9)
    if max_eigenvalues < needed:
        raise ValueError(
            f"max_eigenvalues={max_eigenvalues} < 1/threshold={needed}: delta would not be exact"
        )
    n, d = arr.shape[0], int(np.prod(arr.shape[1:]))
    flat = arr.reshape(n, d)
    paper = definition == "paper"
    if paper:
        op = _CentredMatrix(flat, *_doubly_centred(flat))
    else:
        op = _CentredMatrix(flat, _flat_mean(flat))
    scale = 1.0 / (d - 1) if paper and d > 1 else 1.0
    total = max(op.squared_frobenius(), 0.0) if (d > 1 or not paper) else 0.0
    tau = threshold * total
    cap = min(max_eigenvalues, n - 1, d)
    eig, certificate = np.zeros(0), "exact"
    streamed = op._dense is None and min(n, d) > 2 * _FIRST_EIGENVALUES + _OVERSAMPLE
    if total > 0 and streamed:
        eig, info = _streamed_count(op, min(cap, 2 * _FIRST_EIGENVALUES), cap, tau, total)
        certificate = info["certificate"] if info["decided"] else "undecided"
        if not info["decided"]:
            log.warning("delta: the count above the threshold is not decided (%s); delta "
                        "counts the Ritz values above it", info)
    k = min(cap, _FIRST_EIGENVALUES)
    while total > 0 and not streamed and k >= 1:
        eig = _top_singular(op, k, vectors=False)[0] ** 2
        if k >= cap or eig[-1] <= tau:
            break  # the k-th largest is already below the threshold: delta is exact
        k = min(cap, 4 * k)
    delta = int(np.sum(eig > tau)) if total > 0 else 0
    top = eig[: delta + 1] * scale
    sigma = total * scale
    return {
        "n": n, "threshold": float(threshold), "definition": definition,
        "sigma": float(sigma), "sigma_per_image": float(sigma / n), "delta": delta,
        "eigenvalues_top": top.tolist(),
        "eigenvalue_ratios_top": (top / sigma if sigma > 0 else top).tolist(),
        "certificate": certificate if total > 0 else "exact",
    }
