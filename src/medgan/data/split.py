"""Held-out split of a prepared dataset, by patient.

Analyses compare synthetic images with real images the GAN never saw (the encoder is applied to
them, the metrics use them as the real-vs-real baseline, the memorisation check measures how
close they come to the training set). Slices of one patient are nearly copies of each other,
and ProstateX holds several augmented patches of one lesion, so the split is by *group*
(patient): a patient's images are all in training or all held out.

``split.tsv`` has one row per image of the prepared dataset, in its order:
``index`` (row of ``images.npy``), ``group`` and ``split`` (``train`` or ``heldout``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from medgan.atomic import write_tsv
from medgan.errors import InputError
from medgan.tables import read_table

TRAIN, HELDOUT = "train", "heldout"
GROUP_COLUMNS = ("subject", "image")  # "auto": the first that meta.tsv has


def group_column(meta: pd.DataFrame, group_by: str = "auto") -> str | None:
    """The ``meta.tsv`` column that names each image's patient (None: every image its own)."""
    if group_by == "none":
        return None
    if group_by != "auto":
        if group_by not in meta.columns:
            raise ValueError(f"holdout.group_by: meta.tsv has no column {group_by!r}; it has "
                             f"{list(meta.columns)}")
        return group_by
    return next((c for c in GROUP_COLUMNS if c in meta.columns), None)


def assign_holdout(groups: np.ndarray, *, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of held-out images: a seeded ``fraction`` of the distinct groups.

    The number of held-out groups is ``round(fraction * n_groups)``, at least one when
    ``fraction > 0`` and at most ``n_groups - 1`` (training keeps a group). Which groups are
    held out depends only on the sorted set of group names and ``seed``.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"holdout.fraction must be in [0, 1), got {fraction}")
    groups = np.asarray(groups).astype(str)
    names = np.unique(groups)
    if fraction == 0:
        return np.zeros(len(groups), dtype=bool)
    if len(names) < 2:
        raise ValueError(f"cannot hold out a share of {len(names)} patient(s): a held-out split "
                         "needs at least two (set holdout.fraction: 0 to train on all)")
    n_held = min(len(names) - 1, max(1, round(fraction * len(names))))
    rng = np.random.default_rng(seed)
    held = set(rng.permutation(names)[:n_held].tolist())
    return np.array([g in held for g in groups], dtype=bool)


def write_split(meta_path: str | os.PathLike, out_path: str | os.PathLike, *, fraction: float,
                seed: int = 0, group_by: str = "auto") -> dict[str, int]:
    """Write ``split.tsv`` for the prepared dataset whose ``meta.tsv`` is ``meta_path``."""
    meta_path = Path(meta_path)
    meta = read_table(meta_path, "the table", dtype=str, keep_default_na=False)
    if len(meta) == 0:
        raise InputError(meta_path, "holds no images to split")
    try:
        column = group_column(meta, group_by)
        groups = (meta[column].to_numpy() if column else
                  np.array([str(i) for i in range(len(meta))]))
        held = assign_holdout(groups, fraction=fraction, seed=seed)
    except ValueError as err:
        raise InputError(meta_path, str(err)) from err
    table = pd.DataFrame({"index": np.arange(len(meta)), "group": groups,
                          "split": np.where(held, HELDOUT, TRAIN)})
    write_tsv(out_path, table)
    return {"n_train": int((~held).sum()), "n_heldout": int(held.sum()),
            "n_groups": len(np.unique(groups)), "n_heldout_groups": len(np.unique(groups[held]))}


def load_split(path: str | os.PathLike, n_images: int | None = None) -> pd.DataFrame:
    """Read ``split.tsv``; ``n_images``: the prepared dataset's size, which it must match."""
    path = Path(path)
    table = read_table(path, "the split table", dtype={"group": str}, keep_default_na=False)
    missing = {"index", "group", "split"} - set(table.columns)
    if missing:
        raise InputError(path, f"missing column(s) {sorted(missing)}")
    if not table["index"].tolist() == list(range(len(table))):
        raise InputError(path, "index column is not 0, 1, 2, ... in order")
    bad = sorted(set(table["split"]) - {TRAIN, HELDOUT})
    if bad:
        raise InputError(path, f"unknown split value(s) {bad}; expected {TRAIN!r}/{HELDOUT!r}")
    if n_images is not None and len(table) != n_images:
        raise InputError(path, f"has {len(table)} rows but the dataset has {n_images} images "
                               "(the split is of another version of the dataset)")
    return table


def split_indices(path: str | os.PathLike, n_images: int | None = None,
                  table: pd.DataFrame | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the training and the held-out images (ascending); ``table``: the split
    already read by :func:`load_split`."""
    table = load_split(path, n_images) if table is None else table
    held = (table["split"] == HELDOUT).to_numpy()
    train = np.flatnonzero(~held)
    if len(train) == 0:
        raise InputError(path, "no image is in the training split")
    return train, np.flatnonzero(held)
