"""Latent-space analyses of a trained model over files: held-out inversion (Beers 2018 Fig. 4),
t-SNE of the encoded training images (Fig. 5) and latent interpolation (Kitchen 2017 Fig. 5).

The numerics live in :mod:`medgan.analysis.encoder`, :mod:`medgan.analysis.embedding` and
:mod:`medgan.analysis.interpolation`; these functions read a model's prepared data and split, call
them,
and write the tables and figures atomically.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd

from medgan.analysis.evaluate import FLOAT_FORMAT, load_model_data
from medgan.atomic import write_tsv
from medgan.plotting import channel_windows
from medgan.training.checkpoint import load_checkpoint


def _meta_columns(meta: pd.DataFrame) -> pd.DataFrame:
    keep = [c for c in ("subject", "image", "slice", "laterality", "zone") if c in meta.columns]
    return meta[keep].reset_index(drop=True)


def _code_table(meta: pd.DataFrame, codes: np.ndarray) -> pd.DataFrame:
    z = pd.DataFrame(codes, columns=[f"z{i}" for i in range(codes.shape[1])])
    return pd.concat([_meta_columns(meta), z], axis=1)


def invert_heldout(checkpoint: str | os.PathLike, encoder: str | os.PathLike,
                   data_dir: str | os.PathLike, split: str | os.PathLike, *,
                   figure: str | os.PathLike, table: str | os.PathLike,
                   codes: str | os.PathLike, n_figure: int = 8, seed: int = 0,
                   device: str = "cpu") -> pd.DataFrame:
    """Encode the held-out real images, reconstruct them as G(E(x)) and write the per-image
    reconstruction error (``table``), the latent codes (``codes``) and Beers' Fig. 4
    (``figure``: ``n_figure`` seeded held-out images above their reconstructions)."""
    from medgan.analysis.encoder import (
        load_encoder,
        plot_reconstructions,
        reconstruct,
        reconstruction_table,
    )
    from medgan.training.generate import load_generator

    data = load_model_data(checkpoint, data_dir, split)
    G, _ = load_generator(checkpoint, device=device)
    E, _ = load_encoder(encoder, device=device)
    z, recon = reconstruct(G, E, data.heldout)
    errors = reconstruction_table(data.heldout, recon, data.channel_names,
                                  meta_rows=_meta_columns(data.heldout_meta))
    pick = np.sort(np.random.default_rng(seed).choice(
        len(data.heldout), size=min(n_figure, len(data.heldout)), replace=False))
    plot_reconstructions(data.heldout[pick], recon[pick], data.channel_names, figure,
                         n=len(pick), windows=channel_windows(data.train),
                         title=f"held-out real images (top) and G(E(x)) (bottom); "
                               f"mean MSE {errors['mse'].mean():.3g}")
    write_tsv(codes, _code_table(data.heldout_meta, z), float_format=FLOAT_FORMAT)
    write_tsv(table, errors, float_format=FLOAT_FORMAT)
    return errors


def tsne_of_training_set(checkpoint: str | os.PathLike, encoder: str | os.PathLike,
                         data_dir: str | os.PathLike, split: str | os.PathLike, *,
                         figure: str | os.PathLike, table: str | os.PathLike, color_by: str,
                         perplexity: float = 30.0, seed: int = 0,
                         device: str = "cpu") -> pd.DataFrame:
    """Encode every training image, embed the codes in 2-D with t-SNE and plot them coloured
    by the ``meta.tsv`` column ``color_by`` (Beers 2018 Fig. 5)."""
    from medgan.analysis.embedding import embed_tsne, embedding_table, plot_embedding
    from medgan.analysis.encoder import encode, load_encoder

    data = load_model_data(checkpoint, data_dir, split, need_heldout=False)
    if color_by not in data.train_meta.columns:
        raise ValueError(f"analysis.tsne.color_by: {data_dir}/meta.tsv has no column "
                         f"{color_by!r}; it has {list(data.train_meta.columns)}")
    E, _ = load_encoder(encoder, device=device)
    codes = encode(E, data.train)
    embedding, info = embed_tsne(codes, seed=seed, perplexity=perplexity, return_info=True)
    out = embedding_table(embedding, data.train_meta)
    plot_embedding(embedding, data.train_meta, color_by, figure,
                   title=f"t-SNE of encoded training images (N={len(codes)}, perplexity "
                         f"{info.get('perplexity', perplexity):.3g})")
    write_tsv(table, out, float_format=FLOAT_FORMAT)
    return out


def interpolate_model(checkpoint: str | os.PathLike, data_dir: str | os.PathLike, *,
                      figure: str | os.PathLike, walk: str | os.PathLike,
                      settings: dict[str, Any] | None = None, device: str = "cpu") -> None:
    """Kitchen 2017 Fig. 5: the linear and spherical interpolation grid (``figure``) and an
    animated GIF of a closed spherical walk (``walk``), shown in the real images' windows."""
    from medgan.analysis.interpolation import interpolation_figure, latent_walk
    from medgan.plotting import real_windows

    s = dict(settings or {})
    channels = list(load_checkpoint(checkpoint)["config"]["channels"])
    windows = real_windows(data_dir, channels)
    seed = int(s.get("seed", 0))
    interpolation_figure(checkpoint, figure, n_pairs=int(s.get("n_pairs", 2)),
                         steps=int(s.get("steps", 9)), seed=seed, windows=windows,
                         device=device)
    latent_walk(checkpoint, walk, n_keypoints=int(s.get("keypoints", 4)),
                frames_per_segment=int(s.get("frames_per_segment", 12)), seed=seed,
                duration_ms=int(s.get("frame_ms", 80)), windows=windows, device=device)
