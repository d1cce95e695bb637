"""Figures and tables of a study: real and synthetic image grids, panels, the model table.

Real and synthetic images of a channel are shown with the same grey-level window, taken from
the real training images (0.5 and 99.5 percentiles), so that a generator that gets the
intensities wrong looks wrong.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medgan.atomic import write_tsv
from medgan.plotting import _pyplot, pick_images, real_windows, save_figure, save_image_grid

RGB = ("R", "G", "B")


def plot_real_grid(
    data_dir: str | os.PathLike,
    path: str | os.PathLike,
    *,
    channel: str,
    n_images: int = 16,
    seed: int = 0,
) -> None:
    """Han 2018 Fig. 2: a grid of real training images of one sequence."""
    images = pick_images(data_dir, [channel], n_images, seed=seed)
    info = json.loads((Path(data_dir) / "dataset.json").read_text())
    save_image_grid(
        images,
        path,
        channel_names=[channel],
        value_ranges=real_windows(data_dir, [channel], seed=seed),
        title=f"real {channel} ({Path(data_dir).name}, {info['resolution']} px)",
    )


def _generate(checkpoint: str | os.PathLike, n_images: int, seed: int):
    from medgan.training.generate import generate_from, load_generator

    G, config = load_generator(checkpoint)
    return generate_from(G, config, n_images, seed=seed), list(config["channels"])


def plot_synthetic_grid(
    checkpoint: str | os.PathLike,
    path: str | os.PathLike,
    *,
    data_dir: str | os.PathLike,
    n_images: int = 16,
    seed: int = 0,
    title: str | None = None,
) -> None:
    """Han 2018 Figs. 3 and 4, one model: synthetic images, one block of columns per channel."""
    images, channels = _generate(checkpoint, n_images, seed)
    save_image_grid(
        images,
        path,
        channel_names=channels,
        ncols=min(8, n_images),
        value_ranges=real_windows(data_dir, channels, seed=seed),
        title=title,
    )


def plot_synthetic_panel(
    models: Sequence[str],
    checkpoints: Sequence[str | os.PathLike],
    path: str | os.PathLike,
    *,
    data_dirs: Sequence[str | os.PathLike],
    n_images: int = 8,
    seed: int = 0,
    title: str | None = None,
) -> None:
    """One figure for several models: a row of ``n_images`` samples per model and channel
    (R, G and B together in one colour row, as fundus photos)."""
    rows: list[tuple[str, np.ndarray, tuple[float, float] | None]] = []
    for name, ckpt, data_dir in zip(models, checkpoints, data_dirs, strict=True):
        images, channels = _generate(ckpt, n_images, seed)
        windows = real_windows(data_dir, channels, seed=seed)
        rgb = [channels.index(c) for c in RGB] if set(RGB) <= set(channels) else []
        if rgb:  # fundus photos (Beers 2018 Fig. 2) in colour: [-1, 1] -> [0, 1]
            rows.append((f"{name}\nRGB", np.clip((images[:, rgb] + 1) / 2, 0, 1)
                         .transpose(0, 2, 3, 1), None))
        for c, ch in enumerate(channels):
            if c in rgb:
                continue
            label = name if len(channels) == 1 else f"{name}\n{ch}"
            rows.append((label, images[:, c], windows[c]))
    plt = _pyplot()
    fig, axes = plt.subplots(
        len(rows), n_images, squeeze=False, figsize=(0.9 * n_images + 1.6, 0.9 * len(rows) + 0.4)
    )
    for r, (label, imgs, window) in enumerate(rows):
        for c in range(n_images):
            ax = axes[r, c]
            ax.axis("off")
            if c < imgs.shape[0] and window is None:
                ax.imshow(imgs[c], interpolation="nearest")
            elif c < imgs.shape[0]:
                ax.imshow(imgs[c], cmap="gray", vmin=window[0], vmax=window[1],
                          interpolation="nearest")
        axes[r, 0].text(
            -0.1, 0.5, label, transform=axes[r, 0].transAxes, ha="right", va="center", fontsize=7
        )
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(pad=0.3)
    fig.subplots_adjust(left=0.16, top=1 - 0.45 / fig.get_figheight() if title else 0.98)
    save_figure(fig, path)


def write_model_table(
    models: Sequence[str], runs: Sequence[str | os.PathLike], path: str | os.PathLike
) -> None:
    """One row per model from its ``run.json``: data, architecture, loss, schedule, final losses."""
    import pandas as pd

    rows = []
    for name, run_path in zip(models, runs, strict=True):
        run = json.loads(Path(run_path).read_text())
        cfg = run.get("config", {})
        last = run.get("final", {})
        rows.append(
            {
                "model": name,
                "dataset": run.get("provenance", {}).get("dataset", ""),
                "channels": "+".join(cfg.get("channels", [])),
                "resolution": cfg.get("resolution"),
                "architecture": cfg.get("architecture", {}).get("name"),
                "loss": cfg.get("loss", {}).get("name"),
                "optimizer": cfg.get("optimizer", {}).get("name"),
                "lr": cfg.get("optimizer", {}).get("lr"),
                "steps": cfg.get("schedule", {}).get("steps"),
                "batch_size": cfg.get("schedule", {}).get("batch_size"),
                "seed": cfg.get("seed"),
                "final_d_loss": last.get("d_loss"),
                "final_g_loss": last.get("g_loss"),
                "train_seconds": run.get("timing", {}).get("train_s"),
            }
        )
    write_tsv(path, pd.DataFrame(rows))
