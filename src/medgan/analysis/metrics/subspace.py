"""Top eigenpairs of the scatter matrix of a large image set, streamed in row blocks.

For an (N, D) matrix of flattened images X with mean m, the centred matrix is A = X - 1 m^T and
its scatter matrix M = A^T A (D x D, never formed). :func:`top_eigenpairs` finds the k largest
eigenvalues of M (the squared singular values of A) and their eigenvectors by **block Krylov
iteration with a Rayleigh-Ritz step over the whole Krylov basis** (Saad, "Numerical methods for
large eigenvalue problems", ch. 5-6; Musco & Musco 2015, "Randomized block Krylov methods"):

1. V: an orthonormal (D, b) start block, b = k + oversample, from a seeded Gaussian draw.
2. One pass over the images per block: W = M V, applied as A^T (A V) over blocks of rows of X
   (the centring is folded in: A V = X V - 1 (m^T V) and A^T U = X^T U - m (1^T U)).
3. The basis Q = [V_0, V_1, ...] grows by the new block W orthogonalised against it (block
   classical Gram-Schmidt twice), so after j passes it spans [V, M V, ..., M^(j-1) V] (j b
   vectors); H = Q^T M Q comes from the stored M Q without another pass.
4. Rayleigh-Ritz: H = S diag(theta) S^T; the top b Ritz pairs (theta_i, Q S_i), M Q S_i known.
5. Convergence check (stated): with r_i = ||M v_i - theta_i v_i|| the residual of a wanted pair,
   * eigenvalues (sigma, delta): min(r_i, r_i^2 / gap_i) <= tol theta_i (tol 1e-7), with gap_i
     = min_{j != i} |theta_i - theta_j| the distance to the other Ritz values; an eigenvalue of
     M lies within r_i of theta_i (Weyl) and, when r_i <= 1e-3 theta_i, within ~r_i^2 / gap_i
     (Kato-Temple), so each eigenvalue is within ~tol relative;
   * eigenvectors (the PCA): r_i / (theta_i - theta_{k+1}) <= tol (1e-9 from delplace): the
     sin-theta bound (Davis-Kahan) on the angle between the wanted subspace and M's top-k
     invariant subspace, which is all that rho depends on (close pairs inside it do not slow
     the check; rho_g moves by at most that sine).
   Residuals below 1e-12 theta_1 count as converged (rank-deficient data). Otherwise the next
   pass; after ``max_blocks`` blocks (12) the basis restarts from the top b Ritz vectors.

Precision: the products X V and X^T U are done in float32 (3-4x the speed of float64 on this
machine's BLAS) with float64 accumulation across row blocks and float64 basis, H and
Rayleigh-Ritz, until the check passes on the float32 residuals or they stop improving (float32's
floor); then a new Krylov run in float64 products starts from the top b Ritz vectors, and only
a float64 run can pass the final check. So the returned Ritz values and vectors come from a
float64 Rayleigh-Ritz step whose float64 residuals were checked. Compared with plain subspace
iteration (Rayleigh-Ritz on the last block only), the Krylov basis needs about half the passes
on Table 3's images (benchmarks/delplace_bench.py), at the price of (D, 12 b) float64 arrays
(Q and M Q: 2 x 300 MB at D = 65,536, b = 48) and O(D (j b) b) flops of orthogonalisation per
pass, small next to a pass over N = 11,328 images.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from scipy.linalg import solve_triangular

log = logging.getLogger(__name__)

_MAX_RESIDUAL = 1e-3  # eigenvalues: r_i / theta_i must also be below this (gap estimate valid)
_ABS_FLOOR = 1e-12  # residuals below this x theta_1 count as converged (rank-deficient data)
_MIN_COUNT_PASSES = 4  # count mode: Krylov degree >= 3 before a count is accepted


class CentredRows:
    """A = X - r 1^T - 1 m^T for flattened images X (N, D), applied block by block.

    ``mean`` m (D,): the mean image (of X - r 1^T when offsets are given). ``row_offsets`` r
    (N,): one number per image subtracted from all its pixels (its own pixel mean, for
    Delplace's doubly centred covariance); None: no offsets (A = X - 1 m^T).
    """

    def __init__(self, flat: np.ndarray, mean: np.ndarray, *, block_bytes: int,
                 row_offsets: np.ndarray | None = None):
        self.flat, self.mean = flat, np.asarray(mean, dtype=np.float64)
        self.offsets = None if row_offsets is None else np.asarray(row_offsets, np.float64)
        self.shape = flat.shape
        self.rows = max(1, int(block_bytes) // (4 * max(1, flat.shape[1])))
        self._buffer: np.ndarray | None = None

    def _blocks(self, dtype):
        """Row blocks as ``dtype``: views where the images already are, else copies into one
        reused buffer (a fresh 512 MB block per product would cost page faults each time)."""
        for start in range(0, self.shape[0], self.rows):
            sl = slice(start, min(self.shape[0], start + self.rows))
            block = self.flat[sl]
            if block.dtype != dtype or not block.flags.c_contiguous:
                if self._buffer is None or self._buffer.dtype != dtype:
                    self._buffer = np.empty((min(self.rows, self.shape[0]), self.shape[1]), dtype)
                block = self._buffer[: sl.stop - sl.start]
                np.copyto(block, self.flat[sl], casting="unsafe")
            yield sl, block

    def scatter_times(self, v: np.ndarray, *, dtype=np.float64) -> np.ndarray:
        """M v = A^T A v (D, b) in float64; products in ``dtype``, accumulated in float64."""
        vv = np.asarray(v, dtype=dtype)
        mv = (self.mean @ v).astype(dtype)
        vsum = np.asarray(v, dtype=np.float64).sum(axis=0)
        out = np.zeros_like(v, dtype=np.float64)
        col_sums = np.zeros(v.shape[1])
        offset_sums = np.zeros(v.shape[1])
        for sl, block in self._blocks(dtype):
            u = block @ vv
            u -= mv
            if self.offsets is not None:
                u -= np.outer(self.offsets[sl], vsum).astype(dtype)
                offset_sums += self.offsets[sl] @ u
            out += (u.T @ block).T  # 2-3x faster than block.T @ u in OpenBLAS
            col_sums += u.sum(axis=0, dtype=np.float64)
        out -= np.outer(self.mean, col_sums)
        out -= offset_sums  # the offsets' 1 r^T u, the same in every pixel
        return out


def _worst_error(theta: np.ndarray, res: np.ndarray, k: int, *, vectors: bool) -> float:
    """Largest error estimate of the k wanted Ritz pairs (see the module docstring, step 4)."""
    floor = _ABS_FLOOR * max(float(theta[0]), 0.0) + 1e-300
    r = np.where(res[:k] <= floor, 0.0, res[:k])
    if vectors:  # the wanted subspace against the rest: gap to the first unwanted Ritz value
        gap_out = theta[:k] - (theta[k] if len(theta) > k else 0.0)
        return float(np.max(r / np.maximum(gap_out, floor)))
    gaps = np.abs(theta[:k, None] - theta[None, :])
    gaps[np.arange(k), np.arange(k)] = np.inf
    gap = np.maximum(gaps.min(axis=1), floor)
    scale = np.clip(theta[:k], 0.0, None) + floor
    kato_temple = np.where(r <= _MAX_RESIDUAL * scale, r * r / gap, np.inf)
    return float(np.max(np.minimum(r, kato_temple) / scale))


def count_check(theta: np.ndarray, res: np.ndarray, k: int, tau: float,
                trace: float | None = None) -> dict[str, Any]:
    """Is the number of eigenvalues of M above ``tau`` decided by these Ritz pairs?

    ``theta`` (descending) and ``res``: Ritz values and residual norms from an orthonormal
    basis; ``k``: how many of them are wanted (the block minus the oversampling); ``trace``:
    trace(M), if known exactly. Returns ``count`` = #{theta_i > tau}, ``worst`` (decided when
    < 1), ``need_more`` (count >= k: a larger block is needed) and ``certificate``:

    * ``trace``: rigorous. Cauchy interlacing gives lambda_i >= theta_i, so lambda_1..lambda_count
      exceed tau; and since M is positive semi-definite, lambda_(count+1) <= sum_(j > count)
      lambda_j <= trace(M) - sum_(i <= count) theta_i; when that is <= tau the count is exact.
    * ``residual``: every Ritz value above tau has a residual interval [theta_i - r_i,
      theta_i + r_i] (each holds an eigenvalue of M, Weyl) entirely above tau, and the first
      Ritz value below tau one entirely below it (worst = the largest r_i / |theta_i - tau|).
      This alone does not exclude an eigenvalue above tau that the basis has not found yet
      (a random subspace has small Ritz values with residuals that bracket the noise floor),
      so the caller also asks for a small ``tol`` (r_i <= 5 % of |theta_i - tau|) after at
      least 4 passes (Krylov polynomials of degree >= 3 of a Gaussian start block, which
      amplify every eigenvector above tau by (lambda / floor)^3 over the floor); missing one
      then needs a start block nearly orthogonal to it (probability ~0). Not a deterministic
      proof: that needs the N x N Gram matrix (its inertia), 4.2e12 multiply-adds at
      Table 3's size (benchmarks/delplace_bench.py).
    """
    floor = _ABS_FLOOR * max(float(theta[0]), 0.0) + 1e-300
    r = np.where(res <= floor, 0.0, res)
    count = int(np.sum(theta > tau))
    out = {"count": count, "need_more": count >= k, "certificate": None, "worst": np.inf}
    if out["need_more"]:
        return out
    if trace is not None and trace - float(np.sum(theta[:count])) <= tau:
        return {**out, "worst": 0.0, "certificate": "trace"}
    dist = np.abs(theta[: count + 1] - tau)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(r[: count + 1] == 0, 0.0, r[: count + 1] / dist)
    return {**out, "worst": float(np.max(ratios)), "certificate": "residual"}


def _orthonormal(w: np.ndarray) -> np.ndarray:
    """An orthonormal basis of w's columns: Cholesky-QR twice on the column-normalised block
    (the Ritz-rotated W is nearly orthogonal, so well conditioned; several times faster than
    Householder QR of a (D, b) block), Householder QR if Cholesky fails."""
    norms = np.linalg.norm(w, axis=0)
    if np.all(norms > 0):
        q = w / norms
        try:
            for _ in range(2):
                chol = np.linalg.cholesky(q.T @ q)
                q = solve_triangular(chol, q.T, lower=True).T
            return np.ascontiguousarray(q)
        except np.linalg.LinAlgError:
            pass
    return np.linalg.qr(w)[0]


class _Krylov:
    """Block Krylov passes [V, M V, M^2 V, ...] in one precision, restarted from the top b Ritz
    vectors when the basis reaches ``max_blocks`` blocks; Rayleigh-Ritz over the whole basis.
    The basis Q, its image M Q and H = Q^T M Q live in preallocated arrays (one gemm per
    block against the whole basis, not one per block pair)."""

    def __init__(self, op: CentredRows, k: int, b: int, *, vectors: bool, max_blocks: int,
                 count: tuple[float, float | None] | None = None):
        self.op, self.k, self.b, self.vectors, self.max_blocks = op, k, b, vectors, max_blocks
        self.count, self.decision = count, None
        width = max_blocks * b  # stored transposed (rows = vectors): contiguous slices
        self.qt = np.empty((width, op.shape[1]))
        self.mqt = np.empty((width, op.shape[1]))
        self.h = np.empty((width, width))

    def _ritz(self, m: int):
        """Top b Ritz values (descending), vectors Y and M Y (D, b) from the first m vectors."""
        h = self.h[:m, :m]
        theta, s = np.linalg.eigh((h + h.T) / 2)
        st = np.ascontiguousarray(s[:, ::-1][:, : self.b].T)
        return theta[::-1][: self.b], (st @ self.qt[:m]).T, (st @ self.mqt[:m]).T

    def _extend(self, m: int, w: np.ndarray) -> None:
        """Put w (b, D), made orthonormal and orthogonal to the first m vectors (block classical
        Gram-Schmidt twice, normalised; once more if the check finds it needed), at m .. m + b."""
        qt = self.qt[:m]
        for sweep in range(3):
            if sweep < 2:
                w = w - (w @ qt.T) @ qt
                continue
            w = _orthonormal(w.T).T
            if np.max(np.abs(w @ qt.T)) < 1e-12:
                break
            w = w - (w @ qt.T) @ qt  # rank nearly exhausted: w was tiny
            w = _orthonormal(w.T).T
        self.qt[m : m + self.b] = w

    def run(self, v: np.ndarray, dtype, passes: int, tol: float, min_passes: int = 1):
        """Up to ``passes`` products; stops when the check passes (or, in float32, stalls).
        Returns (theta, Y, worst error, passes used)."""
        b, history, m, used = self.b, [], 0, 0
        self.qt[:b] = v.T
        while used < passes:
            used += 1
            new = slice(m, m + b)
            self.mqt[new] = self.op.scatter_times(self.qt[new].T, dtype=dtype).T
            m += b
            self.h[:m, new] = self.qt[:m] @ self.mqt[new].T
            self.h[new, :m] = self.h[:m, new].T
            theta, y, my = self._ritz(m)
            res = np.linalg.norm(my - y * theta, axis=0)
            if self.count is not None:
                self.decision = count_check(theta, res, self.k, *self.count)
                worst = self.decision["worst"]
                if self.decision["need_more"]:
                    break
            else:
                worst = _worst_error(theta, res, self.k, vectors=self.vectors)
            stalled = len(history) >= 3 and worst > 0.9 * min(history[-3:])  # float32 floor
            history.append(worst)
            if used >= min_passes and (worst <= tol or (dtype is np.float32 and stalled)):
                break
            if m >= self.max_blocks * b and self.max_blocks == 1:  # plain subspace iteration
                self.qt[:b], m = _orthonormal(my).T, 0
                continue
            if m >= self.max_blocks * b:  # thick restart: keep the Ritz vectors and M Y
                self.qt[:b], self.mqt[:b], m, new = y.T, my.T, b, slice(0, b)
                self.h[:b, :b] = y.T @ my
            self._extend(m, self.mqt[new])
        return theta, y, worst, used


def top_eigenpairs(
    op: CentredRows,
    k: int,
    *,
    oversample: int = 16,
    tol: float = 1e-7,
    vectors: bool = False,
    max_iter: int = 300,
    seed: int = 0,
    start: np.ndarray | None = None,
    max_blocks: int = 12,
    count_above: float | None = None,
    trace: float | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """The k largest eigenvalues of M = A^T A (descending) and eigenvectors (k, D).

    ``vectors``: check the eigenvectors' angles (r / gap <= tol) instead of the eigenvalues'
    errors (r^2 / gap <= tol theta). ``start`` (D, j): vectors to put first in the start block
    (a previous, smaller run). Block Krylov (``max_blocks`` blocks of b = k + oversample vectors
    before a restart) in float32 products until the check passes on float32 residuals or stalls,
    then in float64 products from the top b Ritz vectors until the check passes on float64
    residuals. Returns (eigenvalues, eigenvectors, info) with info = products (passes over the
    images) in float32 and float64, the block size and the largest error estimate of the wanted
    pairs. RuntimeError if ``max_iter`` passes do not pass the check. Needs k + oversample <=
    min(N, D) (callers use a dense SVD below that).

    ``count_above`` tau: instead, stop as soon as the number of eigenvalues above tau is
    decided (:func:`count_check`, ``tol`` then bounds its worst ratio, < 1; ``trace`` =
    trace(M) enables its rigorous certificate), without converging the other Ritz values
    (a flat noise floor below tau, say, need not converge at all). The info then also has
    ``count``, ``certificate``, ``decided`` and ``need_more`` (True when the count reached k:
    call again with a larger k, starting from the vectors returned); no RuntimeError, an
    undecided count (``max_iter`` spent, e.g. an eigenvalue within rounding of tau) is
    returned with ``decided`` False.
    """
    n, d = op.shape
    b = k + oversample
    if b > min(n, d):
        raise ValueError(f"block of {b} vectors needs N, D >= {b}; got N={n}, D={d}")
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((d, b))
    if start is not None:
        v[:, : start.shape[1]] = start
    v, _ = np.linalg.qr(v)
    counting = None if count_above is None else (float(count_above), trace)
    krylov = _Krylov(op, k, b, vectors=vectors, max_blocks=max(1, min(max_blocks, min(n, d) // b)),
                     count=counting)
    counts, left, worst = {"float32": 0, "float64": 0}, max_iter, np.inf
    for dtype in (np.float32, np.float64):
        if left <= 0:
            break
        first = counting is not None and dtype is np.float32
        theta, y, worst, used = krylov.run(v, dtype, left, tol,
                                           min_passes=_MIN_COUNT_PASSES if first else 1)
        counts[np.dtype(dtype).name] += used
        left -= used
        v = _orthonormal(y)
        if counting is not None and krylov.decision["need_more"]:
            break
    if counting is not None:
        dec = krylov.decision
        info = {"iterations_float32": counts["float32"], "iterations_float64": counts["float64"],
                "error_estimate": worst, "block": b, "count": dec["count"],
                "need_more": dec["need_more"], "certificate": dec["certificate"],
                "decided": bool(counts["float64"] and not dec["need_more"] and worst <= tol)}
        log.info("eigenvalues above %.4g: %s", count_above, info)
        return np.clip(theta, 0.0, None), y.T.copy(), info
    if counts["float64"] and worst <= tol:
        info = {"iterations_float32": counts["float32"],
                "iterations_float64": counts["float64"], "error_estimate": worst, "block": b}
        log.info("top %d eigenpairs: %s", k, info)
        return np.clip(theta[:k], 0.0, None), y[:, :k].T.copy(), info
    raise RuntimeError(
        f"subspace iteration for the top {k} eigenvalues did not converge in {max_iter} "
        f"iterations (largest relative residual {worst:.2e} > {tol:.0e})"
    )
