"""Multi-scale SSIM (Wang, Simoncelli & Bovik 2003) and the MS-SSIM diversity score.

SSIM uses an 11-tap Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03 and population
(co)variances, evaluated only where the window fits inside the image ("valid"), which equals
``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
use_sample_covariance=False)``. MS-SSIM multiplies the contrast-structure term cs_j of the
finer scales and the full SSIM of the coarsest scale, each to the power of Wang's weights
(0.0448, 0.2856, 0.3001, 0.2363, 0.1333), halving the image (2 x 2 mean) between scales.

Small images: only as many scales as keep the smallest scale at least 11 px (the window)
are used: 64 px -> 3 scales, 16 px -> 1. The first M weights are then renormalised to sum
to 1, so a single scale is exactly plain SSIM. With several scales, negative cs / SSIM
values are clipped at 0 before the fractional powers (as tf.image.ssim_multiscale and
pytorch-msssim do). Multi-channel images: MS-SSIM of each channel, then the mean over
channels.

Diversity (Odena et al. 2017, "Conditional image synthesis with auxiliary classifier GANs"):
the mean MS-SSIM of random pairs of distinct images of one set; higher = less diverse
(a collapsed generator gives ~1).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from medgan.analysis.metrics.delplace import check_images

WINDOW_SIZE = 11
WINDOW_SIGMA = 1.5
K1, K2 = 0.01, 0.03
WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_BATCH_BYTES = 128 * 2**20


def _window() -> torch.Tensor:
    x = torch.arange(WINDOW_SIZE, dtype=torch.float64) - (WINDOW_SIZE - 1) / 2
    g = torch.exp(-(x**2) / (2 * WINDOW_SIGMA**2))
    return g / g.sum()


def n_scales_for(height: int, width: int) -> int:
    """How many MS-SSIM scales fit: the smallest scale keeps >= 11 px, at most 5."""
    size, m = min(height, width), 0
    while m < len(WEIGHTS) and size >= WINDOW_SIZE:
        m += 1
        size //= 2
    return m


@functools.lru_cache(maxsize=16)
def _band(n: int) -> torch.Tensor:
    """(n, n - 10) matrix T with (x @ T)[j] = sum_k g[k] x[j + k]: valid 1-D Gaussian filter."""
    g = _window()
    m = n - WINDOW_SIZE + 1
    t = torch.zeros(n, m, dtype=torch.float64)
    cols = torch.arange(m)
    for k in range(WINDOW_SIZE):
        t[cols + k, cols] = g[k]
    return t


def _filter(x: torch.Tensor) -> torch.Tensor:
    """Separable 'valid' Gaussian filtering of (B, 1, H, W), as two banded matrix products
    (several times faster than conv2d in float64 on CPU)."""
    b, _, h, w = x.shape
    y = (x.reshape(b * h, w) @ _band(w)).reshape(b, h, -1)
    return (_band(h).T @ y).reshape(b, 1, h - WINDOW_SIZE + 1, -1)


def _ssim_and_cs(x: torch.Tensor, y: torch.Tensor, c1: float, c2: float):
    """Mean SSIM and mean contrast-structure term of each (B, 1, H, W) pair (valid window)."""
    mx, my = _filter(x), _filter(y)
    sxx = _filter(x * x) - mx * mx
    syy = _filter(y * y) - my * my
    sxy = _filter(x * y) - mx * my
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    lum = (2 * mx * my + c1) / (mx * mx + my * my + c1)
    return (lum * cs).mean(dim=(1, 2, 3)), cs.mean(dim=(1, 2, 3))


def _ms_ssim_planes(x: torch.Tensor, y: torch.Tensor, data_range: float) -> torch.Tensor:
    """MS-SSIM of (B, 1, H, W) float64 planes."""
    m = n_scales_for(x.shape[-2], x.shape[-1])
    weights = torch.tensor(WEIGHTS[:m], dtype=torch.float64)
    weights = weights / weights.sum()
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    values = []
    for j in range(m):
        ssim, cs = _ssim_and_cs(x, y, c1, c2)
        values.append(ssim if j == m - 1 else cs)
        if j < m - 1:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    if m == 1:
        return values[0]
    stacked = torch.stack(values, dim=1).clamp_min(0.0)
    return torch.prod(stacked ** weights[None, :], dim=1)


def ms_ssim(a: Any, b: Any, *, data_range: float) -> np.ndarray:
    """MS-SSIM (Wang 2003) of each pair (a[i], b[i]) of (N, C, H, W) images: (N,) float64.

    ``data_range`` is the dynamic range L of the images (C1 = (0.01 L)^2, C2 = (0.03 L)^2);
    pass the real data's range (max - min) for z-scored MRI. Images need >= 11 px per side.
    See the module docstring for the scale rule on small images and the channel mean.
    """
    a = check_images(a.detach().cpu().numpy() if torch.is_tensor(a) else a, "a")
    b = check_images(b.detach().cpu().numpy() if torch.is_tensor(b) else b, "b")
    if a.shape != b.shape:
        raise ValueError(f"ms_ssim: shapes differ, {a.shape} vs {b.shape}")
    if not (math.isfinite(data_range) and data_range > 0):
        raise ValueError(f"data_range must be a positive finite number, got {data_range}")
    n, c, h, w = a.shape
    if min(h, w) < WINDOW_SIZE:
        raise ValueError(f"ms_ssim needs images of at least {WINDOW_SIZE} px, got {h} x {w}")
    batch = max(1, _BATCH_BYTES // (c * h * w * 8 * 12))
    out = np.empty(n)
    for start in range(0, n, batch):
        sl = slice(start, min(n, start + batch))
        x = torch.from_numpy(np.asarray(a[sl], dtype=np.float64)).reshape(-1, 1, h, w)
        y = torch.from_numpy(np.asarray(b[sl], dtype=np.float64)).reshape(-1, 1, h, w)
        val = _ms_ssim_planes(x, y, float(data_range)).reshape(-1, c).mean(dim=1)
        out[sl] = val.numpy()
    return out


def random_distinct_pairs(n: int, n_pairs: int, *, seed: int = 0) -> np.ndarray:
    """(P, 2) index pairs i < j, all different; every pair when n_pairs >= n (n - 1) / 2."""
    total = n * (n - 1) // 2
    if n_pairs >= total:
        i, j = np.triu_indices(n, k=1)
        return np.stack([i, j], axis=1)
    rng = np.random.default_rng(seed)
    chosen: dict[tuple[int, int], None] = {}
    while len(chosen) < n_pairs:
        draw = rng.integers(0, n, size=(2 * (n_pairs - len(chosen)) + 8, 2))
        for i, j in draw:
            if i != j:
                chosen.setdefault((min(i, j), max(i, j)), None)
                if len(chosen) == n_pairs:
                    break
    return np.array(list(chosen), dtype=np.int64)


def msssim_diversity(
    images: np.ndarray, *, n_pairs: int = 1000, seed: int = 0, data_range: float | None = None
) -> dict[str, Any]:
    """Odena et al. 2017 diversity: mean (and std) MS-SSIM of random distinct image pairs.

    ``n_pairs`` different unordered pairs of different images (all pairs if fewer exist),
    drawn with ``seed``. ``data_range`` defaults to max - min of ``images`` (the orchestrator
    passes the real data's range, so that real and synthetic sets are scored alike).
    Higher = less diverse. Returns msssim_mean, msssim_std, n_pairs, scales, data_range.
    """
    arr = check_images(images, "images", min_images=2)
    if int(n_pairs) != n_pairs or n_pairs < 1:
        raise ValueError(f"n_pairs must be a positive integer, got {n_pairs!r}")
    if data_range is None:
        data_range = float(np.max(arr)) - float(np.min(arr))
        if not data_range > 0:
            raise ValueError("images are constant (max == min): pass data_range explicitly")
    pairs = random_distinct_pairs(arr.shape[0], int(n_pairs), seed=seed)
    batch = max(1, _BATCH_BYTES // (int(np.prod(arr.shape[1:])) * 8))
    values = np.concatenate(
        [
            ms_ssim(arr[p[:, 0]], arr[p[:, 1]], data_range=data_range)
            for p in np.array_split(pairs, math.ceil(len(pairs) / batch))
        ]
    )
    return {
        "msssim_mean": float(values.mean()),
        "msssim_std": float(values.std()),
        "n_pairs": int(len(pairs)),
        "scales": n_scales_for(*arr.shape[2:]),
        "data_range": float(data_range),
    }
