"""t-SNE maps of encoded images (Beers et al. 2018, section 4.4, Fig. 5).

Beers encode the training images into the generator's latent space (:mod:`medgan.analysis.encoder`),
project the codes onto two dimensions with t-distributed stochastic neighbour embedding (van der
Maaten & Hinton 2008) and colour the points by a property of the images: left / right eye for the
fundus photographs (a categorical column), the axial slice for the BraTS MRI (a numeric column).

:func:`embed_tsne` runs openTSNE (single-threaded, seeded: the same seed gives the same map),
:func:`embedding_table` puts the map beside the images' metadata and :func:`plot_embedding`
draws it, coloured by one metadata column.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from medgan.plotting import _pyplot, save_figure

log = logging.getLogger(__name__)

MIN_POINTS = 5
MAX_CATEGORIES = 20  # a string column with more levels is still drawn, with a shared colour cycle


def embed_tsne(codes: np.ndarray, *, seed: int = 0, perplexity: float = 30.0,
               n_iter: int = 750, return_info: bool = False) -> Any:
    """The 2-D t-SNE embedding (N, 2) float64 of ``codes`` (N, D) (Beers Fig. 5).

    t-SNE (van der Maaten & Hinton 2008) places the points so that their Student-t neighbour
    probabilities in 2-D match the Gaussian neighbour probabilities (of the given
    ``perplexity``) in the code space; computed with openTSNE (PCA initialisation, Euclidean
    distances, ``n_iter`` optimisation steps after 250 early-exaggeration steps, ``n_jobs=1``,
    ``random_state=seed``). The perplexity is capped at ``(N - 1) / 3``, the largest that
    ``N`` points support. With ``return_info`` the result is ``(embedding, info)``, ``info``
    recording ``n``, ``perplexity`` (used), ``perplexity_requested``, ``n_iter`` and ``seed``.
    """
    from openTSNE import TSNE

    codes = np.asarray(codes, dtype=np.float64)
    if codes.ndim != 2:
        raise ValueError(f"codes must be an (N, D) array, got shape {codes.shape}")
    n = codes.shape[0]
    if n < MIN_POINTS:
        raise ValueError(f"t-SNE needs at least {MIN_POINTS} points, got {n}")
    if not np.isfinite(codes).all():
        raise ValueError("codes hold NaN or infinite values")
    if not perplexity > 0:
        raise ValueError(f"perplexity must be > 0, got {perplexity!r}")
    if isinstance(n_iter, bool) or not isinstance(n_iter, int) or n_iter < 1:
        raise ValueError(f"n_iter must be a positive integer, got {n_iter!r}")
    used = min(float(perplexity), (n - 1) / 3.0)
    if used < perplexity:
        log.info("t-SNE perplexity %.3g capped to %.3g for %d points", perplexity, used, n)
    tsne = TSNE(n_components=2, perplexity=used, n_iter=n_iter, initialization="pca",
                metric="euclidean", n_jobs=1, random_state=seed, verbose=False)
    embedding = np.asarray(tsne.fit(codes), dtype=np.float64)
    info = {"n": n, "perplexity": used, "perplexity_requested": float(perplexity),
            "n_iter": n_iter, "seed": seed}
    return (embedding, info) if return_info else embedding


def embedding_table(embedding: np.ndarray, meta):
    """``meta`` (a DataFrame, one row per embedded image, in order) with columns ``tsne_1`` and
    ``tsne_2`` added (a copy; the index is reset)."""
    import pandas as pd

    embedding = np.asarray(embedding)
    if embedding.ndim != 2 or embedding.shape[1] != 2:
        raise ValueError(f"embedding must be (N, 2), got shape {embedding.shape}")
    if not isinstance(meta, pd.DataFrame):
        meta = pd.DataFrame(list(meta))
    if len(meta) != embedding.shape[0]:
        raise ValueError(f"{embedding.shape[0]} embedded points but {len(meta)} meta rows")
    table = meta.reset_index(drop=True).copy()
    table["tsne_1"], table["tsne_2"] = embedding[:, 0], embedding[:, 1]
    return table


def is_categorical(values) -> bool:
    """Whether a column is drawn as categories (strings, booleans, pandas categoricals) rather
    than on a colour scale (numbers)."""
    import pandas as pd

    series = pd.Series(values)
    return not (pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series))


def plot_embedding(embedding: np.ndarray, values, column: str, path: str | os.PathLike, *,
                   title: str | None = None, point_size: float = 12.0) -> None:
    """Scatter plot of a 2-D embedding coloured by ``values[column]`` (Beers Fig. 5).

    ``values`` is a DataFrame (or mapping of columns) with one row per point. A categorical
    column (strings such as laterality ``L``/``R``) gets one colour per level and a legend; a
    numeric column (slice index) a colour map and a colour bar. Missing values are drawn grey.
    """
    import pandas as pd

    embedding = np.asarray(embedding, dtype=np.float64)
    if embedding.ndim != 2 or embedding.shape[1] != 2:
        raise ValueError(f"embedding must be (N, 2), got shape {embedding.shape}")
    table = values if isinstance(values, pd.DataFrame) else pd.DataFrame(values)
    if column not in table.columns:
        raise ValueError(f"no column {column!r} to colour by; available: "
                         f"{[str(c) for c in table.columns]}")
    if len(table) != embedding.shape[0]:
        raise ValueError(f"{embedding.shape[0]} embedded points but {len(table)} rows of values")
    col = table[column].reset_index(drop=True)
    missing = col.isna().to_numpy()
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 4.2))
    if missing.any():
        ax.scatter(embedding[missing, 0], embedding[missing, 1], s=point_size, c="0.75",
                   label="missing", linewidths=0)
    present = ~missing
    if is_categorical(col):
        levels = sorted(col[present].astype(str).unique())
        cmap = plt.get_cmap("tab10" if len(levels) <= 10 else "tab20")
        labels = col.astype(str).to_numpy()
        for i, level in enumerate(levels):
            sel = present & (labels == level)
            ax.scatter(embedding[sel, 0], embedding[sel, 1], s=point_size,
                       color=cmap(i % cmap.N), label=level, linewidths=0)
        ax.legend(title=column, fontsize=7, title_fontsize=8, markerscale=1.5,
                  ncol=1 if len(levels) <= MAX_CATEGORIES else 2)
    else:
        numbers = col.to_numpy(dtype=np.float64)
        points = ax.scatter(embedding[present, 0], embedding[present, 1], s=point_size,
                            c=numbers[present], cmap="viridis", linewidths=0)
        fig.colorbar(points, ax=ax, label=column)
        if missing.any():
            ax.legend(fontsize=7)
    ax.set_xlabel("t-SNE 1")
    ax.set_ylabel("t-SNE 2")
    ax.set_title(title or f"t-SNE of encoded images, coloured by {column}", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


__all__ = ["embed_tsne", "embedding_table", "is_categorical", "plot_embedding"]
