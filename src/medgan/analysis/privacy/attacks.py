"""Membership-inference attacks on a generative model: each returns one score per query image,
higher = "more likely a member" (an image of a patient the model was trained on).

What each attack is given (its threat model):

* :func:`gan_leaks` (Chen et al. 2020, "GAN-Leaks", the full black-box attack): synthetic
  images only. Score: minus the Euclidean distance from the query to its closest synthetic
  image (pixels standardised per channel with the synthetic set's mean and standard deviation).
* :func:`gan_leaks_calibrated` (GAN-Leaks' calibrated attack): synthetic images and a
  reference set of real images of non-member patients (the attacker's sample of the same
  population, standing in for Chen's reference GAN). Score: distance to the closest reference
  image minus distance to the closest synthetic image, so an image that is close to everything
  (a plain, common slice) is not taken for a member.
* :func:`domias` (van Breugel et al. 2023, "Membership inference attacks against synthetic
  data through overfitting detection"): synthetic and reference images, in the feature space of
  the dataset's domain feature network. Score: ``log p_synthetic(f(x)) - log p_reference(f(x))``
  with Gaussian kernel density estimates in the first ``components`` principal axes of the
  synthetic features (whitened; Scott's bandwidth). A generator that overfits puts more density
  at its members than the population does.
* :func:`logan` (Hayes et al. 2019, "LOGAN", white-box): the trained discriminator. Score:
  D's logit for the query (eval mode); a D that overfits scores its training images higher.

Reference images of the query's own patient are left out for that query (``exclude``): slices of
one patient are near-duplicates, and keeping them would make every non-member look typical.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

_BLOCK = 1024  # query rows per distance block


def _flat(images: np.ndarray, mean: np.ndarray, std: np.ndarray) -> torch.Tensor:
    x = np.asarray(images, dtype=np.float64)
    x = (x - mean[None, :, None, None]) / std[None, :, None, None]
    return torch.from_numpy(x.reshape(len(x), -1))


def _channel_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(images, dtype=np.float64)
    mean, std = x.mean(axis=(0, 2, 3)), x.std(axis=(0, 2, 3))
    std[std == 0] = 1.0
    return mean, std


def min_distances(queries: torch.Tensor, reference: torch.Tensor,
                  exclude: np.ndarray | None = None) -> np.ndarray:
    """Distance of every query row to its closest reference row; ``exclude`` (Q, R) bool marks
    pairs not to consider (inf when a query has no pair left)."""
    out = np.full(len(queries), np.inf)
    for q0 in range(0, len(queries), _BLOCK):
        block = queries[q0:q0 + _BLOCK]
        d = torch.cdist(block, reference).numpy()
        if exclude is not None:
            d = np.where(exclude[q0:q0 + _BLOCK], np.inf, d)
        nearest = d.argmin(axis=1)
        found = np.isfinite(d[np.arange(len(d)), nearest])
        # the chosen neighbour's distance directly (cdist's matrix product leaves ~1e-7 where
        # a query has an exact copy)
        exact = torch.linalg.vector_norm(block - reference[nearest], dim=1).numpy()
        out[q0:q0 + _BLOCK] = np.where(found, exact, np.inf)
    return out


def same_patient(query_groups: np.ndarray | None, reference_groups: np.ndarray | None
                 ) -> np.ndarray | None:
    """(Q, R) bool: query and reference image come from the same patient (None: no groups)."""
    if query_groups is None or reference_groups is None:
        return None
    q = np.asarray(query_groups).astype(str)
    r = np.asarray(reference_groups).astype(str)
    return q[:, None] == r[None, :]


def gan_leaks(queries: np.ndarray, synthetic: np.ndarray) -> np.ndarray:
    """Minus the distance to the closest synthetic image (standardised pixels)."""
    mean, std = _channel_stats(synthetic)
    return -min_distances(_flat(queries, mean, std), _flat(synthetic, mean, std))


def gan_leaks_calibrated(queries: np.ndarray, synthetic: np.ndarray, reference: np.ndarray, *,
                         exclude: np.ndarray | None = None) -> np.ndarray:
    """Distance to the closest reference image minus distance to the closest synthetic one."""
    mean, std = _channel_stats(synthetic)
    q = _flat(queries, mean, std)
    d_syn = min_distances(q, _flat(synthetic, mean, std))
    d_ref = min_distances(q, _flat(reference, mean, std), exclude)
    if not np.isfinite(d_ref).all():
        raise ValueError("a query has no reference image of another patient")
    return d_ref - d_syn


def _log_kde(points: np.ndarray, data: np.ndarray, exclude: np.ndarray | None) -> np.ndarray:
    """Log Gaussian-kernel density of ``data`` (n, k) at ``points`` (Q, k), Scott's bandwidth
    (isotropic: the space is whitened); ``exclude`` (Q, n) leaves data points out per query."""
    n, k = data.shape
    h = n ** (-1.0 / (k + 4))
    p, d = torch.from_numpy(points), torch.from_numpy(data)
    out = np.empty(len(points))
    for q0 in range(0, len(points), _BLOCK):
        sq = (torch.cdist(p[q0:q0 + _BLOCK], d) ** 2).numpy() / (2 * h * h)
        count = np.full(len(sq), n, dtype=np.float64)
        if exclude is not None:
            sq = np.where(exclude[q0:q0 + _BLOCK], np.inf, sq)
            count = n - exclude[q0:q0 + _BLOCK].sum(axis=1)
        m = (-sq).max(axis=1, keepdims=True)
        lse = m[:, 0] + np.log(np.exp(-sq - m).sum(axis=1))
        out[q0:q0 + _BLOCK] = lse - np.log(count)
    return out - k * np.log(h) - 0.5 * k * np.log(2 * np.pi)


def domias(query_features: np.ndarray, synthetic_features: np.ndarray,
           reference_features: np.ndarray, *, components: int = 8,
           exclude: np.ndarray | None = None) -> np.ndarray:
    """``log p_synthetic - log p_reference`` at the queries, densities estimated by Gaussian
    KDE in the first ``components`` whitened principal axes of the synthetic features."""
    syn = np.asarray(synthetic_features, dtype=np.float64)
    mean = syn.mean(axis=0)
    _, s, vt = np.linalg.svd(syn - mean, full_matrices=False)
    keep = s > s.max() * 1e-9 if len(s) else s > 0
    k = max(1, min(int(components), int(keep.sum())))
    scale = s[:k] / np.sqrt(max(len(syn) - 1, 1))

    def project(x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, dtype=np.float64) - mean) @ vt[:k].T) / scale

    q = project(query_features)
    return _log_kde(q, project(syn), None) - _log_kde(q, project(reference_features), exclude)


@torch.no_grad()
def logan(discriminator: Callable[..., torch.Tensor], queries: np.ndarray, *,
          labels: np.ndarray | None = None, batch_size: int = 256,
          device: str | torch.device = "cpu") -> np.ndarray:
    """The discriminator's logit for each query (the model in eval mode); ``labels``: the class
    of each query for a class-conditional D."""
    out = np.empty(len(queries))
    for i in range(0, len(queries), batch_size):
        x = torch.from_numpy(np.asarray(queries[i:i + batch_size], dtype=np.float32)).to(device)
        if labels is None:
            logits = discriminator(x)
        else:
            y = torch.as_tensor(np.asarray(labels[i:i + batch_size], np.int64), device=device)
            logits = discriminator(x, y)
        out[i:i + batch_size] = logits.float().cpu().numpy().reshape(len(x))
    return out
