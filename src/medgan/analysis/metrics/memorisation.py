"""Memorisation (privacy) check: how close synthetic images come to their nearest training image.

A generator that copies training images puts synthetic images closer to the training set
than new real images of the same population are. The yardstick is a held-out real set:
the ``quantile`` (1 %) quantile of the held-out images' nearest-training-image distances is a
threshold, and the share of synthetic images below it is ~``quantile`` for a generator that
does not copy and approaches 1 for one that does (the "distance to closest record" test of
the synthetic-data privacy literature, e.g. Yale et al. 2020; Park et al. 2018).

Distances are Euclidean between flattened images after standardising every channel with the
*training* set's channel mean and standard deviation (a constant channel: std 1), so that
channels in different units weigh alike and the same transform applies to every set.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.stats import mannwhitneyu

from medgan.analysis.metrics.delplace import check_images
from medgan.plotting import _pyplot, channel_windows, save_figure

_BLOCK_BYTES = 64 * 2**20  # one float64 block of rows (queries or reference)


def channel_stats(reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation (float64) of (N, C, H, W) images."""
    ref = check_images(reference, "reference")
    n, c = ref.shape[:2]
    s1, s2, count = np.zeros(c), np.zeros(c), 0
    rows = max(1, _BLOCK_BYTES // (8 * int(np.prod(ref.shape[1:]))))
    for start in range(0, n, rows):
        block = np.asarray(ref[start : start + rows], dtype=np.float64)
        s1 += block.sum(axis=(0, 2, 3))
        count += block.shape[0] * block.shape[2] * block.shape[3]
    mean = s1 / count
    for start in range(0, n, rows):
        block = np.asarray(ref[start : start + rows], dtype=np.float64)
        s2 += ((block - mean[None, :, None, None]) ** 2).sum(axis=(0, 2, 3))
    std = np.sqrt(s2 / count)
    std[std == 0] = 1.0
    return mean, std


def nearest_neighbours(
    queries: np.ndarray, reference: np.ndarray, *, chunk: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact Euclidean nearest reference image of every query: (distances (Q,), indices (Q,)).

    Both sets are standardised per channel with the reference's channel mean / std, then
    flattened. Blocks of ``chunk`` rows (default: as many as fit 64 MB in float64) are
    compared with float64 ``torch.cdist``; the distance to the chosen neighbour is then
    recomputed directly as ||q - r|| (no cancellation), so distances are exact and memory stays
    well under 1 GB (two row blocks and one block of distances). Ties (duplicate training
    images) resolve deterministically to the first one found.
    """
    q = check_images(queries, "queries")
    ref = check_images(reference, "reference")
    if q.shape[1:] != ref.shape[1:]:
        raise ValueError(
            f"queries are {q.shape[1:]} per image, reference {ref.shape[1:]}: shapes must match"
        )
    d = int(np.prod(ref.shape[1:]))
    if chunk is None:
        chunk = max(1, min(4096, _BLOCK_BYTES // (8 * d)))
    if int(chunk) != chunk or chunk < 1:
        raise ValueError(f"chunk must be a positive integer, got {chunk!r}")
    mean, std = channel_stats(ref)

    def standardised(arr: np.ndarray, sl: slice) -> torch.Tensor:
        block = (np.asarray(arr[sl], dtype=np.float64) - mean[None, :, None, None]) / std[
            None, :, None, None
        ]
        return torch.from_numpy(block.reshape(block.shape[0], d))

    nq, nr = q.shape[0], ref.shape[0]
    best = torch.full((nq,), float("inf"), dtype=torch.float64)
    best_idx = torch.zeros(nq, dtype=torch.int64)
    with torch.no_grad():
        for r0 in range(0, nr, chunk):
            rb = standardised(ref, slice(r0, r0 + chunk))
            for q0 in range(0, nq, chunk):
                qb = standardised(q, slice(q0, q0 + chunk))
                dist = torch.cdist(qb, rb)
                val, idx = dist.min(dim=1)
                better = val < best[q0 : q0 + len(qb)]
                best[q0 : q0 + len(qb)] = torch.where(better, val, best[q0 : q0 + len(qb)])
                best_idx[q0 : q0 + len(qb)] = torch.where(
                    better, idx + r0, best_idx[q0 : q0 + len(qb)]
                )
        indices = best_idx.numpy()
        distances = np.empty(nq)
        for q0 in range(0, nq, chunk):
            sl = slice(q0, q0 + chunk)
            qb = standardised(q, sl).numpy()
            nn = indices[sl]
            rb = (np.asarray(ref[nn], dtype=np.float64) - mean[None, :, None, None]) / std[
                None, :, None, None
            ]
            distances[sl] = np.linalg.norm(qb - rb.reshape(len(nn), d), axis=1)
    return distances, indices


def memorisation_report(
    train: np.ndarray, synthetic: np.ndarray, heldout: np.ndarray, *, quantile: float = 0.01
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Nearest-training-image distances of synthetic vs held-out real images.

    threshold = the ``quantile`` quantile (linear interpolation) of the held-out images'
    distances to their nearest training image; share_closer = fraction of synthetic images
    whose distance is strictly below it (~``quantile`` when the generator does not copy,
    -> 1 when it does). Also: median distance of each set, their ratio (synthetic /
    held-out; < 1 = synthetic images sit closer to the training set), the one-sided
    Mann-Whitney U p-value for "synthetic distances are smaller", and the set sizes.
    The table has one row per synthetic image: index, nn_index (training image), distance,
    below_threshold.
    """
    tr = check_images(train, "train")
    syn = check_images(synthetic, "synthetic")
    held = check_images(heldout, "heldout", min_images=2)
    for name, arr in (("synthetic", syn), ("heldout", held)):
        if arr.shape[1:] != tr.shape[1:]:
            raise ValueError(f"{name} images are {arr.shape[1:]}, train images {tr.shape[1:]}")
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    d_syn, i_syn = nearest_neighbours(syn, tr)
    d_held, _ = nearest_neighbours(held, tr)
    threshold = float(np.quantile(d_held, quantile))
    below = d_syn < threshold
    med_syn, med_held = float(np.median(d_syn)), float(np.median(d_held))
    p_value = float(mannwhitneyu(d_syn, d_held, alternative="less").pvalue)
    summary = {
        "quantile": float(quantile),
        "threshold": threshold,
        "share_closer": float(below.mean()),
        "median_distance_synthetic": med_syn,
        "median_distance_heldout": med_held,
        "median_ratio": med_syn / med_held if med_held > 0 else float("nan"),
        "mannwhitney_p_synthetic_smaller": p_value,
        "min_distance_synthetic": float(d_syn.min()),
        "n_train": int(tr.shape[0]),
        "n_synthetic": int(syn.shape[0]),
        "n_heldout": int(held.shape[0]),
    }
    table = pd.DataFrame(
        {
            "index": np.arange(len(d_syn)),
            "nn_index": i_syn,
            "distance": d_syn,
            "below_threshold": below,
        }
    )
    return summary, table


def plot_closest_pairs(
    synthetic: np.ndarray,
    train: np.ndarray,
    distances: np.ndarray,
    indices: np.ndarray,
    path: str | os.PathLike,
    *,
    n: int = 8,
    channel_names: Sequence[str],
    windows: Sequence[tuple[float, float]] | None = None,
) -> None:
    """The ``n`` synthetic images closest to the training set, each above its nearest training
    image (one pair of rows per channel), the distance in the column title. ``windows`` are
    the display ranges per channel (default: robust percentiles of ``train``). Written
    atomically (PNG unless ``path`` says otherwise)."""
    syn = check_images(synthetic, "synthetic")
    tr = check_images(train, "train")
    distances = np.asarray(distances, dtype=np.float64).ravel()
    indices = np.asarray(indices).ravel()
    if len(distances) != syn.shape[0] or len(indices) != syn.shape[0]:
        raise ValueError(
            f"{syn.shape[0]} synthetic images but {len(distances)} distances and "
            f"{len(indices)} indices"
        )
    if syn.shape[1:] != tr.shape[1:]:
        raise ValueError(f"synthetic images are {syn.shape[1:]}, train images {tr.shape[1:]}")
    if indices.size and (indices.min() < 0 or indices.max() >= tr.shape[0]):
        raise ValueError(f"indices out of range for {tr.shape[0]} training images")
    c = syn.shape[1]
    names = list(channel_names)
    if len(names) != c:
        raise ValueError(f"{c} channels but {len(names)} channel names")
    windows = channel_windows(tr, windows)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    order = np.argsort(distances, kind="stable")[: min(n, len(distances))]
    plt = _pyplot()
    cols = len(order)
    fig, axes = plt.subplots(2 * c, cols, squeeze=False, figsize=(1.3 * cols, 1.35 * 2 * c + 0.4))
    for col, i in enumerate(order):
        for ch in range(c):
            for row, (img, label) in enumerate(
                [(syn[i, ch], "synthetic"), (tr[indices[i], ch], "nearest train")]
            ):
                ax = axes[2 * ch + row, col]
                ax.imshow(
                    img,
                    cmap="gray",
                    vmin=windows[ch][0],
                    vmax=windows[ch][1],
                    interpolation="nearest",
                )
                ax.set_xticks([])
                ax.set_yticks([])
                if col == 0:
                    ax.set_ylabel(f"{label}\n{names[ch]}", fontsize=6)
        axes[0, col].set_title(f"#{i} d={distances[i]:.3g}", fontsize=7)
    fig.suptitle("closest synthetic / training pairs", fontsize=9)
    fig.tight_layout(pad=0.3)
    save_figure(fig, path)
