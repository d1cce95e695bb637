"""Beers et al. 2018 (progressively grown GANs): the supplement's traversal through the axial
slices, and sec. 4.1's vessel AUC next to the paper's 0.97. The paper's Fig. 4 and Fig. 5 are
figures of a model's latent analyses (:mod:`medgan.analysis.latent_analysis`), which the
workflow copies into the study (:func:`medgan.atomic.copy_file`).

Figs. 2 and 3 (synthetic images of each PGGAN, with and without the segmentation channels)
are the study's panels (:func:`medgan.studies.figures.plot_synthetic_panel`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from medgan.atomic import write_tsv
from medgan.errors import InputError
from medgan.plotting import _pyplot, channel_windows, save_figure
from medgan.tables import read_table

PAPER_VESSEL_AUC = 0.97  # sec. 4.1


def _path_through(embedding: np.ndarray, position: np.ndarray, n_steps: int
                  ) -> list[np.ndarray]:
    """Indices of the images in each of ``n_steps`` equal-count bins of ``position`` (the
    slice), in order: the traversal visits the bins' t-SNE centroids one after the other."""
    order = np.argsort(position, kind="stable")
    return [b for b in np.array_split(order, n_steps) if len(b)]


def slice_traversal(checkpoint: str | os.PathLike, encoder: str | os.PathLike,
                    data_dir: str | os.PathLike, split: str | os.PathLike,
                    tsne_table: str | os.PathLike, path: str | os.PathLike, *,
                    column: str = "slice", n_steps: int = 8, seed: int = 0) -> pd.DataFrame:
    """Beers' supplement: the t-SNE map of the encoded training slices coloured by slice
    position, a path through it from the lowest to the highest slices (the centroids of
    ``n_steps`` equal-count slice bins), and below it the images G decodes at the path's
    points (the mean latent code of each bin), one row per channel. Returns the path."""
    import torch

    from medgan.analysis.encoder import encode, load_encoder
    from medgan.analysis.evaluate import load_model_data
    from medgan.training.generate import load_generator

    table = pd.read_csv(tsne_table, sep="\t")
    data = load_model_data(checkpoint, data_dir, split, need_heldout=False)
    if len(table) != len(data.train) or column not in table.columns:
        raise InputError(tsne_table, f"expected {len(data.train)} rows with a {column!r} column "
                                     f"(the t-SNE of this model's training images)")
    embedding = table[["tsne_1", "tsne_2"]].to_numpy()
    position = table[column].to_numpy(dtype=float)
    bins = _path_through(embedding, position, n_steps)
    E, _ = load_encoder(encoder)
    codes = encode(E, data.train)
    G, _ = load_generator(checkpoint)
    z = np.stack([codes[b].mean(axis=0) for b in bins]).astype(np.float32)
    with torch.no_grad():
        images = G(torch.from_numpy(z)).numpy()
    path_xy = np.stack([embedding[b].mean(axis=0) for b in bins])
    _plot_traversal(embedding, position, path_xy, images, data.channel_names,
                    channel_windows(data.train), column, path)
    return pd.DataFrame({"step": range(len(bins)), "tsne_1": path_xy[:, 0],
                         "tsne_2": path_xy[:, 1],
                         f"{column}_mean": [position[b].mean() for b in bins],
                         "n_images": [len(b) for b in bins]})


def _plot_traversal(embedding, position, path_xy, images, channel_names, windows, column,
                    path) -> None:
    plt = _pyplot()
    s, c = images.shape[:2]
    fig = plt.figure(figsize=(max(6.0, 0.9 * s), 4.0 + 0.9 * c))
    grid = fig.add_gridspec(1 + c, s, height_ratios=[4.0] + [0.9] * c)
    ax = fig.add_subplot(grid[0, :])
    points = ax.scatter(embedding[:, 0], embedding[:, 1], c=position, s=6, cmap="viridis")
    ax.plot(path_xy[:, 0], path_xy[:, 1], "-o", color="red", ms=4, lw=1)
    for k, (x, y) in enumerate(path_xy):
        ax.annotate(str(k + 1), (x, y), fontsize=7, color="red", xytext=(3, 3),
                    textcoords="offset points")
    fig.colorbar(points, ax=ax, label=column)
    ax.set_title(f"t-SNE of encoded training slices, coloured by {column}; path through the "
                 "slice bins and G(mean code) below", fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    for ch in range(c):
        for k in range(s):
            a = fig.add_subplot(grid[1 + ch, k])
            a.imshow(images[k, ch], cmap="gray", vmin=windows[ch][0], vmax=windows[ch][1],
                     interpolation="nearest")
            a.set_xticks([])
            a.set_yticks([])
            if k == 0:
                a.set_ylabel(channel_names[ch], fontsize=6)
            if ch == 0:
                a.set_title(str(k + 1), fontsize=7)
    fig.tight_layout(pad=0.3)
    save_figure(fig, path)


def write_slice_traversal(*args, table: str | os.PathLike, **kwargs) -> pd.DataFrame:
    """:func:`slice_traversal`, its path written to ``table``."""
    out = slice_traversal(*args, **kwargs)
    write_tsv(table, out, float_format="%.6g")
    return out


def vessel_auc_table(models: Sequence[str], tables: Sequence[str | os.PathLike],
                     path: str | os.PathLike) -> pd.DataFrame:
    """Sec. 4.1: per fundus model the mean vessel AUC of its synthetic images (the U-net's
    segmentation against the GAN's own vessel channel) and of the held-out real images (the
    pipeline's baseline), next to the paper's 0.97 for synthetic images."""
    rows = []
    for name, file in zip(models, tables, strict=True):
        table = read_table(file, "the vessel AUC table")
        means = table[table["image"].astype(str) == "mean"]
        for _, row in means.iterrows():
            rows.append({"model": name, "images": row["source"],
                         "vessel_auc": row["vessel_auc"],
                         "vessel_auc_reverse": row["vessel_auc_reverse"],
                         "scored": row["reason"],
                         "paper_vessel_auc": PAPER_VESSEL_AUC
                         if row["source"] == "synthetic" else None})
    out = pd.DataFrame(rows)
    write_tsv(path, out, float_format="%.4g")
    return out
