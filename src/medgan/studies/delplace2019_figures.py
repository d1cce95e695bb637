"""Delplace 2019's figures: Fig. 1 (one image per architecture and an original), the latent
interpolations (sec. 3.2) and a grid of the loss comparison's verdicts (sec. 3.3)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from medgan.plotting import _pyplot, channel_windows, save_figure

VERDICT_COLOURS = {"converged": "#4daf4a", "collapsed": "#ff7f00", "diverged": "#e41a1c"}


def _show(ax, image: np.ndarray, window: tuple[float, float], title: str | None = None) -> None:
    ax.imshow(image, cmap="gray", vmin=window[0], vmax=window[1], interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)


def plot_fig1(
    checkpoints: Mapping[str, str | os.PathLike],
    real: np.ndarray,
    path: str | os.PathLike,
    *,
    seed: int = 0,
) -> np.ndarray:
    """Fig. 1: one generated image per model (``checkpoints``: label -> checkpoint, in order)
    and one original (a seeded pick of ``real``), left to right, channel 0, in the real images'
    display window. Returns the images shown (len(checkpoints) + 1, H, W)."""
    from medgan.training.generate import generate_images

    rng = np.random.default_rng(seed)
    original = np.asarray(real[rng.integers(len(real))], dtype=np.float32)
    shown = [generate_images(c, 1, seed=seed)[0, 0] for c in checkpoints.values()]
    shown.append(original[0])
    labels = [*checkpoints, "Original"]
    window = channel_windows(np.asarray(real[:2000], dtype=np.float32))[0]
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(shown), squeeze=False, figsize=(1.6 * len(shown), 1.9))
    for ax, image, label in zip(axes[0], shown, labels, strict=True):
        _show(ax, image, window, label)
    fig.tight_layout(pad=0.3)
    save_figure(fig, path)
    return np.stack(shown)


def plot_interpolations(
    checkpoints: Mapping[str, str | os.PathLike],
    real: np.ndarray,
    path: str | os.PathLike,
    *,
    steps: int = 8,
    seed: int = 0,
) -> np.ndarray:
    """Sec. 3.2: for each model one row of images generated along the straight line between
    two random latent vectors (drawn with ``seed`` from the run's latent distribution).
    Returns the images (models, steps, H, W) of channel 0."""
    import torch

    from medgan.analysis.interpolation import interpolation_images
    from medgan.training.generate import load_generator
    from medgan.training.schedule import draw_latents, latent_distribution

    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise ValueError(f"steps must be an integer >= 2, got {steps!r}")
    rows = []
    for ckpt in checkpoints.values():
        G, config = load_generator(ckpt)
        z = draw_latents(2, G.latent_dim, distribution=latent_distribution(config),
                         generator=torch.Generator().manual_seed(seed))
        pair = z.numpy().astype(np.float64).reshape(1, 2, -1)
        rows.append(interpolation_images(G, pair, steps, "linear")[0, :, 0])
    images = np.stack(rows)
    window = channel_windows(np.asarray(real[:2000], dtype=np.float32))[0]
    plt = _pyplot()
    fig, axes = plt.subplots(len(rows), steps, squeeze=False,
                             figsize=(0.9 * steps + 1.0, 0.95 * len(rows) + 0.3))
    for r, label in enumerate(checkpoints):
        for col in range(steps):
            _show(axes[r, col], images[r, col], window,
                  f"t={col / (steps - 1):.2f}" if r == 0 else None)
        axes[r, 0].set_ylabel(label, fontsize=8)
    fig.tight_layout(pad=0.2)
    save_figure(fig, path)
    return images


def plot_verdicts(table: pd.DataFrame, path: str | os.PathLike,
                  losses: Sequence[str] | None = None) -> None:
    """The loss comparison as a grid: architectures x losses, each cell coloured by its
    verdict and labelled with it (and the paper's finding below)."""
    archs = list(dict.fromkeys(table["architecture"]))
    losses = list(losses or dict.fromkeys(table["loss"]))
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.3 * len(losses) + 1.4, 0.6 * len(archs) + 0.9))
    for i, arch in enumerate(archs):
        for j, loss in enumerate(losses):
            row = table[(table["architecture"] == arch) & (table["loss"] == loss)]
            if row.empty:
                continue
            verdict, paper = row["verdict"].iloc[0], row["paper"].iloc[0]
            ax.add_patch(plt.Rectangle((j, i), 1, 1, color=VERDICT_COLOURS.get(verdict, "grey")))
            ax.text(j + 0.5, i + 0.42, verdict, ha="center", va="center", fontsize=8)
            ax.text(j + 0.5, i + 0.75, f"paper: {paper}", ha="center", va="center", fontsize=6)
    ax.set_xlim(0, len(losses))
    ax.set_ylim(len(archs), 0)
    ax.set_xticks(np.arange(len(losses)) + 0.5, losses, fontsize=8)
    ax.set_yticks(np.arange(len(archs)) + 0.5, archs, fontsize=8)
    ax.tick_params(length=0)
    fig.tight_layout(pad=0.3)
    save_figure(fig, path)
