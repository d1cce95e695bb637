"""Distribution metrics on feature vectors: FID, KID, precision/recall, density/coverage.

Every function takes ``real`` (the reference set: a model's real training images, as features)
and ``fake`` (the candidate set: synthetic images, or held-out real images for the real-vs-real
baseline) as 2-D arrays ``(n, d)`` of the same feature dimension ``d``. Computations run in
float64; pairwise distances are computed with :func:`torch.cdist` in row chunks (at most
``CHUNK_ROWS`` rows against the whole other set), so 5000 x 5000 sets need tens of MB.

* :func:`frechet_distance`: Heusel et al. 2017 (FID's formula on any features);
* :func:`kernel_inception_distance`: Binkowski et al. 2018 (KID, unbiased MMD^2, cubic kernel);
* :func:`precision_recall`: Kynkaanniemi et al. 2019 (k-NN manifolds);
* :func:`density_coverage`: Naeem et al. 2020;
* :func:`feature_metrics`: all of them, keys prefixed ``domain_``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

CHUNK_ROWS = 1024


def _features(x: Any, what: str, *, min_rows: int = 2) -> np.ndarray:
    if not isinstance(x, np.ndarray | torch.Tensor):
        raise ValueError(f"{what} must be a numpy array (n, d), got {type(x).__name__}")
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{what} must be a 2-D array (n, d), got shape {x.shape}")
    if x.shape[0] < min_rows:
        raise ValueError(f"{what} needs at least {min_rows} feature vectors, got {x.shape[0]}")
    if x.shape[1] < 1:
        raise ValueError(f"{what} has no feature columns")
    if not np.isfinite(x).all():
        raise ValueError(f"{what} holds NaN or inf values")
    return x


def _pair(real: Any, fake: Any, *, min_rows: int = 2) -> tuple[np.ndarray, np.ndarray]:
    real = _features(real, "real features", min_rows=min_rows)
    fake = _features(fake, "fake features", min_rows=min_rows)
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"real and fake features differ in dimension: {real.shape[1]} vs "
                         f"{fake.shape[1]}")
    return real, fake


# --- Frechet distance -----------------------------------------------------------------------------

def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(real: np.ndarray, fake: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (Heusel et al. 2017, FID):

    ``|mu_r - mu_f|^2 + tr(S_r) + tr(S_f) - 2 tr((S_r^1/2 S_f S_r^1/2)^1/2)``

    with sample means and unbiased covariances (ddof 1). The trace of the matrix square root is
    computed in the symmetric form above by eigen-decomposition (equal to ``tr((S_r S_f)^1/2)``
    for positive semi-definite matrices; eigenvalues below 0 from rounding are clipped, so no
    imaginary parts arise) or, when a set has no more vectors than dimensions, as the sum of
    the singular values of ``A B^T`` with ``S_r = A^T A``, ``S_f = B^T B`` the centred, scaled
    feature matrices (the same number, cheaper). Needs n > 1 in each set. With n <= d the
    covariances are singular and the estimate is strongly biased (upwards, and dependent on
    n): compare values only between sets of the same sizes, and prefer n well above d.
    """
    real, fake = _pair(real, fake)
    mu_r, mu_f = real.mean(axis=0), fake.mean(axis=0)
    a = (real - mu_r) / np.sqrt(real.shape[0] - 1)  # cov_r = a.T @ a
    b = (fake - mu_f) / np.sqrt(fake.shape[0] - 1)  # cov_f = b.T @ b
    if min(real.shape[0], fake.shape[0]) <= real.shape[1]:
        # tr((a'a b'b)^1/2) is the sum of singular values of a b' (n_real x n_fake): cheaper
        # than d x d matrix square roots when a set has fewer vectors than dimensions.
        trace_root = float(np.linalg.svd(a @ b.T, compute_uv=False).sum())
    else:
        cov_r, cov_f = a.T @ a, b.T @ b
        root_r = _sqrt_psd(cov_r)
        middle = np.linalg.eigvalsh(root_r @ cov_f @ root_r)
        trace_root = float(np.sqrt(np.clip(middle, 0.0, None)).sum())
    value = float(((mu_r - mu_f) ** 2).sum() + (a ** 2).sum() + (b ** 2).sum() - 2 * trace_root)
    return max(value, 0.0)


# --- KID ------------------------------------------------------------------------------------------

def _cubic_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def kernel_inception_distance(real: np.ndarray, fake: np.ndarray, *, subsets: int = 50,
                              subset_size: int = 1000, seed: int = 0) -> dict[str, float]:
    """Kernel distance (Binkowski et al. 2018, KID): the unbiased estimate of the squared MMD
    with the polynomial kernel ``k(x, y) = (x.y / d + 1)^3``,

    ``MMD^2_u = sum_{i!=j} k(x_i, x_j) / (m(m-1)) + sum_{i!=j} k(y_i, y_j) / (m(m-1))
    - 2 sum_{i,j} k(x_i, y_j) / m^2``,

    averaged over ``subsets`` random subsets of ``m = min(subset_size, n_real, n_fake)`` vectors
    of each set (drawn without replacement with ``seed``). Returns ``kid_mean`` and ``kid_std``
    (standard deviation over subsets). Unbiased: can be slightly negative for equal
    distributions.
    """
    real, fake = _pair(real, fake)
    if subsets < 1 or subset_size < 2:
        raise ValueError(f"KID needs subsets >= 1 and subset_size >= 2, got {subsets}, "
                         f"{subset_size}")
    m = min(subset_size, real.shape[0], fake.shape[0])
    rng = np.random.default_rng(seed)
    values = np.empty(subsets)
    for s in range(subsets):
        x = real[rng.choice(real.shape[0], m, replace=False)]
        y = fake[rng.choice(fake.shape[0], m, replace=False)]
        kxx, kyy, kxy = _cubic_kernel(x, x), _cubic_kernel(y, y), _cubic_kernel(x, y)
        within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        values[s] = within - 2 * kxy.sum() / (m * m)
    return {"kid_mean": float(values.mean()),
            "kid_std": float(values.std(ddof=1)) if subsets > 1 else 0.0}


# --- k-NN manifolds -------------------------------------------------------------------------------

def _chunks(n: int):
    for start in range(0, n, CHUNK_ROWS):
        yield start, min(start + CHUNK_ROWS, n)


def knn_radii(x: np.ndarray, k: int, groups: np.ndarray | None = None) -> np.ndarray:
    """Distance from every row of ``x`` to its k-th nearest *other* row (exact, chunked).

    ``groups`` (one label per row, e.g. the patient): the k-th nearest row of *another*
    group. A patient's neighbouring slices are near-copies of each other, so without it the
    radii measure the slice spacing, not the spread between patients (see
    :func:`usable_groups`)."""
    t = torch.from_numpy(x)
    codes = None if groups is None else torch.from_numpy(_group_codes(groups, x.shape[0]))
    radii = np.empty(x.shape[0])
    for a, b in _chunks(x.shape[0]):
        d = torch.cdist(t[a:b], t)
        d[torch.arange(b - a), torch.arange(a, b)] = float("inf")  # exclude the point itself
        if codes is not None:
            d[codes[a:b, None] == codes[None, :]] = float("inf")  # and its own group
        radii[a:b] = torch.topk(d, k, dim=1, largest=False).values[:, k - 1].numpy()
    if not np.isfinite(radii).all():
        raise ValueError(f"k-NN radii across groups with k={k}: some group has fewer than {k} "
                         f"vectors outside it (check with usable_groups)")
    return radii


def _group_codes(groups: np.ndarray, n: int) -> np.ndarray:
    groups = np.asarray(groups)
    if groups.shape != (n,):
        raise ValueError(f"groups must give one label per feature vector ({n}), got shape "
                         f"{groups.shape}")
    return np.unique(groups.astype(str), return_inverse=True)[1].astype(np.int64)


def usable_groups(groups: np.ndarray | None, n: int, k: int) -> np.ndarray | None:
    """``groups`` if every vector has at least ``k`` vectors of other groups (two groups at
    least), else None: the radii are then taken over all other vectors."""
    if groups is None:
        return None
    _, counts = np.unique(np.asarray(groups).astype(str), return_counts=True)
    return groups if len(counts) >= 2 and n - counts.max() >= k else None


def _ball_counts(points: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """For every point, the number of balls ``B(centres[i], radii[i])`` (closed) holding it."""
    p, c, r = torch.from_numpy(points), torch.from_numpy(centres), torch.from_numpy(radii)
    counts = np.empty(points.shape[0], dtype=np.int64)
    for a, b in _chunks(points.shape[0]):
        counts[a:b] = (torch.cdist(p[a:b], c) <= r[None, :]).sum(dim=1).numpy()
    return counts


def _nearest_distance(points: np.ndarray, others: np.ndarray) -> np.ndarray:
    p, o = torch.from_numpy(points), torch.from_numpy(others)
    out = np.empty(points.shape[0])
    for a, b in _chunks(points.shape[0]):
        out[a:b] = torch.cdist(p[a:b], o).min(dim=1).values.numpy()
    return out


def _check_k(k: int, real: np.ndarray, fake: np.ndarray | None, what: str) -> None:
    if int(k) != k or k < 1:
        raise ValueError(f"{what}: k must be a positive integer, got {k!r}")
    for name, x in (("real", real), ("fake", fake)):
        if x is not None and x.shape[0] <= k:
            raise ValueError(f"{what} with k={k} needs more than {k} {name} feature vectors, "
                             f"got {x.shape[0]}")


def _precision_recall_hits(real: np.ndarray, fake: np.ndarray, k: int,
                           real_groups: np.ndarray | None = None
                           ) -> tuple[np.ndarray, np.ndarray]:
    """Per fake vector: inside the real manifold; per real vector: inside the fake manifold."""
    _check_k(k, real, fake, "precision/recall")
    real_radii, fake_radii = knn_radii(real, k, real_groups), knn_radii(fake, k)
    return (_ball_counts(fake, real, real_radii) > 0), (_ball_counts(real, fake, fake_radii) > 0)


def precision_recall(real: np.ndarray, fake: np.ndarray, *, k: int = 3,
                     real_groups: np.ndarray | None = None) -> dict[str, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019).

    The real manifold is the union of balls around every real vector with radius its distance
    to its k-th nearest real neighbour; likewise the fake manifold. ``precision`` is the
    fraction of fake vectors inside the real manifold, ``recall`` the fraction of real vectors
    inside the fake manifold. ``real_groups`` (e.g. the real images' patients): the real
    radii are distances to other groups' vectors only (:func:`knn_radii`).
    """
    real, fake = _pair(real, fake)
    in_real, in_fake = _precision_recall_hits(real, fake, k, real_groups)
    return {"precision": float(in_real.mean()), "recall": float(in_fake.mean())}


def _density_coverage_parts(real: np.ndarray, fake: np.ndarray, k: int,
                            real_groups: np.ndarray | None = None
                            ) -> tuple[np.ndarray, np.ndarray]:
    """Per fake vector: real balls holding it / k; per real vector: covered by a fake one."""
    _check_k(k, real, None, "density/coverage")
    radii = knn_radii(real, k, real_groups)
    return _ball_counts(fake, real, radii) / k, _nearest_distance(real, fake) <= radii


def density_coverage(real: np.ndarray, fake: np.ndarray, *, k: int = 5,
                     real_groups: np.ndarray | None = None) -> dict[str, float]:
    """Density and coverage (Naeem et al. 2020), with balls around the *real* vectors only
    (radius: distance to the k-th nearest real neighbour, of another group with
    ``real_groups``):

    ``density = 1/(k M) sum_j sum_i 1[Y_j in B(X_i, r_i)]`` (M fake vectors Y; ~1 when the fake
    set is distributed like the real one, above 1 when it crowds dense real regions);
    ``coverage = 1/N sum_i 1[exists j: Y_j in B(X_i, r_i)]`` (N real vectors X).
    """
    real, fake = _pair(real, fake)
    density, covered = _density_coverage_parts(real, fake, k, real_groups)
    return {"density": float(density.mean()), "coverage": float(covered.mean())}


def manifold_intervals(real: np.ndarray, fake: np.ndarray, *, k_pr: int = 3, k_dc: int = 5,
                       level: float = 0.95, n_boot: int = 1000, seed: int = 0,
                       real_groups: np.ndarray | None = None) -> dict[str, float]:
    """Precision, recall, density and coverage with their ``level`` intervals (``<name>_lo``,
    ``<name>_hi``) and the set sizes (``n_real``, ``n_fake``). Precision, recall and coverage
    are shares of counts: exact Clopper-Pearson intervals; density is a mean of per-fake
    counts: percentile bootstrap over the fake vectors. The manifolds (k-NN radii) are held
    fixed: the intervals give the uncertainty of which vectors were drawn into the scored
    set, not of the radii. ``real_groups``: the real radii across groups (:func:`knn_radii`)."""
    from medgan.analysis.metrics.intervals import bootstrap_mean_interval, proportion_interval

    real, fake = _pair(real, fake)
    in_real, in_fake = _precision_recall_hits(real, fake, k_pr, real_groups)
    density, covered = _density_coverage_parts(real, fake, k_dc, real_groups)
    out: dict[str, float] = {"n_real": real.shape[0], "n_fake": fake.shape[0]}
    for name, hits in (("precision", in_real), ("recall", in_fake), ("coverage", covered)):
        lo, hi = proportion_interval(int(hits.sum()), len(hits), level=level)
        out.update({name: float(hits.mean()), f"{name}_lo": lo, f"{name}_hi": hi})
    lo, hi = bootstrap_mean_interval(density, level=level, n_boot=n_boot, seed=seed)
    out.update({"density": float(density.mean()), "density_lo": lo, "density_hi": hi})
    return out


def matched_recall_coverage(real: np.ndarray, pool: np.ndarray, n: int, *, k_pr: int = 3,
                            k_dc: int = 5, subsets: int = 100, level: float = 0.95,
                            seed: int = 0, real_groups: np.ndarray | None = None
                            ) -> dict[str, float]:
    """Recall and coverage of ``n`` fake vectors, as their means over ``subsets`` random
    subsets of ``n`` drawn (without replacement) from the larger ``pool``.

    Both depend on the number of fake vectors, so they are scored at ``n`` (the baseline
    row's N), but one draw of ``n`` is noisy (issue 20: one 30-image set of a StyleGAN2 model
    had coverage 0.07; 200 others averaged 0.40, sd 0.07). ``<name>_lo`` / ``_hi``: the normal
    interval of the mean over the subsets (their sampling, with the real manifold and the
    pool fixed); ``<name>_subset_sd``: the spread of a single ``n``-set, for comparison with a
    row scored on one set. ``real_groups``: the real radii across groups (:func:`knn_radii`)."""
    from medgan.analysis.metrics.intervals import mean_interval

    real, pool = _pair(real, pool)
    if not k_pr < n <= pool.shape[0]:
        raise ValueError(f"matched recall/coverage needs {k_pr} < n <= {pool.shape[0]} (the "
                         f"pool), got n={n}")
    if subsets < 2:
        raise ValueError(f"matched recall/coverage needs at least 2 subsets, got {subsets}")
    _check_k(k_dc, real, None, "density/coverage")
    dc_radii = knn_radii(real, k_dc, real_groups)  # the real manifold once; each subset has its own
    rng = np.random.default_rng(seed)
    values = {"recall": np.empty(subsets), "coverage": np.empty(subsets)}
    for s in range(subsets):
        fake = pool[np.sort(rng.choice(pool.shape[0], size=n, replace=False))]
        values["recall"][s] = (_ball_counts(real, fake, knn_radii(fake, k_pr)) > 0).mean()
        values["coverage"][s] = (_nearest_distance(real, fake) <= dc_radii).mean()
    out: dict[str, float] = {"matched_subsets": subsets}
    for name, v in values.items():
        sd = float(v.std(ddof=1))
        lo, hi = mean_interval(float(v.mean()), sd, subsets, level=level)
        out.update({name: float(v.mean()), f"{name}_lo": max(0.0, lo),
                    f"{name}_hi": min(1.0, hi), f"{name}_subset_sd": sd})
    return out


def feature_metrics(real: np.ndarray, fake: np.ndarray, *, seed: int = 0, kid_subsets: int = 50,
                    kid_subset_size: int = 1000, k_pr: int = 3, k_dc: int = 5,
                    level: float = 0.95, n_boot: int = 1000,
                    real_groups: np.ndarray | None = None) -> dict[str, float]:
    """All distribution metrics of this module on one pair of feature sets, keys prefixed
    ``domain_`` (features of the dataset's own feature network, see
    :mod:`medgan.analysis.metrics.featurenet`): ``domain_fid``, ``domain_kid_mean``,
    ``domain_kid_std``, ``domain_precision``, ``domain_recall``, ``domain_density``,
    ``domain_coverage``, the last four with ``_lo`` / ``_hi`` interval bounds
    (:func:`manifold_intervals`, with ``real_groups``), and the set sizes
    ``domain_n_real``, ``domain_n_fake``."""
    real, fake = _pair(real, fake)
    out: dict[str, float] = {"domain_fid": frechet_distance(real, fake)}
    kid = kernel_inception_distance(real, fake, subsets=kid_subsets,
                                    subset_size=kid_subset_size, seed=seed)
    out.update({f"domain_{key}": value for key, value in kid.items()})
    manifold = manifold_intervals(real, fake, k_pr=k_pr, k_dc=k_dc, level=level, n_boot=n_boot,
                                  seed=seed, real_groups=real_groups)
    out.update({f"domain_{key}": value for key, value in manifold.items()})
    return out
