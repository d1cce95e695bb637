"""The training data: a prepared dataset's training rows, read in seeded batches.

:func:`load_training_data` opens a prepared dataset and checks its resolution;
:class:`EpochSampler` draws batch indices from shuffled epochs; :class:`RealBatches` turns them
into batches on the device, as the current stage (progressive growing) sees them. Datasets up to
:data:`PRELOAD_BYTES` are copied to the device once; larger ones are read from the memory map
batch by batch. Every real batch of training comes from :meth:`RealBatches.next`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medgan.data.prepared import load_prepared
from medgan.errors import InputError
from medgan.plotting import display_range
from medgan.training import accel
from medgan.training.distributed import Ranks
from medgan.training.progressive import Stage, real_batch

PRELOAD_BYTES = 1 << 30  # datasets up to this size are copied to the device once


class EpochSampler:
    """Batch indices from shuffled epochs of ``n`` items, drawn from a seeded generator.

    Incomplete last batches are dropped when ``n >= batch_size``; a dataset smaller than a
    batch is used whole as every batch.
    """

    def __init__(self, n: int, batch_size: int, generator: torch.Generator):
        self.n, self.batch_size, self.generator = n, min(batch_size, n), generator
        self.perm: torch.Tensor | None = None
        self.pos = 0

    def next(self, batch_size: int | None = None) -> torch.Tensor:
        """The next batch of indices; ``batch_size`` (capped at ``n``) overrides the default."""
        size = self.batch_size if batch_size is None else min(batch_size, self.n)
        if self.perm is None or self.pos + size > self.n:
            self.perm = torch.randperm(self.n, generator=self.generator)
            self.pos = 0
        idx = self.perm[self.pos:self.pos + size]
        self.pos += size
        return idx

    def state_dict(self) -> dict[str, Any]:
        return {"perm": self.perm, "pos": self.pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.perm, self.pos = state["perm"], int(state["pos"])


def batch_reader(images: np.ndarray, device: torch.device, rows: np.ndarray | None = None
                  ) -> Callable[[torch.Tensor], torch.Tensor]:
    """Index -> batch on ``device``: from a device copy of small datasets, else from the memmap.

    ``rows``: the dataset rows that index ``i`` refers to (the training split); None: all.
    """
    n_rows = images.shape[0] if rows is None else len(rows)
    if images[:1].nbytes * n_rows <= PRELOAD_BYTES:
        subset = images if rows is None else images[rows]
        data = torch.from_numpy(np.array(subset, dtype=np.float32)).to(device)
        return lambda idx: data[idx.to(device)]
    if rows is None:
        return lambda idx: torch.from_numpy(images[idx.numpy()]).to(device, non_blocking=True)
    return lambda idx: torch.from_numpy(images[rows[idx.numpy()]]).to(device, non_blocking=True)


def load_training_data(data_dir: Path, channels: list[str] | None, resolution: int):
    data = load_prepared(data_dir, channels=channels)
    n, _, h, w = data.images.shape
    if n < 1:
        raise InputError(data_dir, "the prepared dataset holds no images")
    if (h, w) != (resolution, resolution):
        raise InputError(data_dir, f"images are {h}x{w} px but training expects resolution "
                                   f"{resolution} (dataset.json resolution: "
                                   f"{data.info.get('resolution')!r})")
    return data


def dataset_summary(data_dir: Path, info: dict[str, Any], n: int,
                     split: str | os.PathLike | None = None,
                     rows: np.ndarray | None = None) -> dict[str, Any]:
    stats = info.get("channel_stats") or {}
    held_out = None
    if rows is not None:
        # a digest of the training rows: a resumed run must train on the same images
        held_out = {"path": str(split), "n_train": int(len(rows)),
                    "rows_sha256": hashlib.sha256(np.asarray(rows, np.int64).tobytes()).hexdigest()}
    return {"path": str(data_dir), "n_images": n, "split": held_out,
            "channels": list(info["channels"]),
            "resolution": info.get("resolution"), "value_range": info.get("value_range"),
            "channel_stats": {c: stats[c] for c in info["channels"] if c in stats}}


def display_ranges(images: np.ndarray, max_images: int = 256) -> list[tuple[float, float]]:
    """Per-channel display windows from up to ``max_images`` evenly spaced real images."""
    idx = np.unique(np.linspace(0, images.shape[0] - 1, min(max_images, images.shape[0]))
                    .astype(int))
    sample = np.asarray(images[idx])
    return [display_range(sample[:, c]) for c in range(sample.shape[1])]


class RealBatches:
    """Real batches on ``device`` from ``images`` (rows ``rows`` of it; None: all), in the order
    of ``sampler``, shaped for the stage being trained and laid out for ``performance``.

    In a data-parallel run (``ranks``) every process draws the same global batch of indices and
    reads only its own rows of it (:meth:`~medgan.training.distributed.Ranks.take`).
    ``labels`` (class-conditional runs): the class of each of those rows; :attr:`labels` is then
    the classes of the last batch (this process's rows).
    """

    def __init__(self, images: np.ndarray, rows: np.ndarray | None, sampler: EpochSampler,
                 device: torch.device, performance: dict[str, Any], ranks: Ranks | None = None,
                 labels: np.ndarray | None = None):
        self.sampler, self.performance = sampler, performance
        self.ranks = ranks or Ranks()
        self.read = batch_reader(images, device, rows)
        self.all_labels = (None if labels is None else
                           torch.as_tensor(np.asarray(labels, np.int64), device=device))
        self.labels: torch.Tensor | None = None

    def next(self, batch_size: int, stage: Stage | None = None) -> torch.Tensor:
        """The next real images of a global batch of ``batch_size`` (this process's rows), at
        ``stage``'s resolution and fade if given."""
        idx = self.ranks.take(self.sampler.next(batch_size))
        if self.all_labels is not None:
            self.labels = self.all_labels[idx.to(self.all_labels.device)]
        images = self.read(idx)
        return accel.prepare_batch(images if stage is None else real_batch(images, stage),
                                   self.performance)


def condition_labels(condition: dict[str, Any], meta: Any, rows: np.ndarray | None,
                     data_dir: Path) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """A class-conditional run's resolved ``condition`` (``column``, ``embed_dim``, the
    dataset's ``classes`` and their ``class_counts`` among the training rows), the class of each
    training row, and the training rows that have a class (rows without one are not trained
    on). :class:`InputError` naming meta.tsv when the column is missing or holds < 2 classes."""
    from medgan.data.classes import class_names, encode_labels, label_column
    from medgan.models.conditional import EMBED_DIM

    column = condition["column"]
    try:
        names = label_column(meta, column)
    except KeyError as err:
        raise InputError(data_dir / "meta.tsv", f"condition.column: {err.args[0]}") from err
    classes = class_names(names)
    if len(classes) < 2:
        raise InputError(data_dir / "meta.tsv", f"condition.column {column!r} holds "
                                                f"{len(classes)} class(es) {classes}; a "
                                                "class-conditional GAN needs at least 2")
    rows = np.arange(len(meta)) if rows is None else np.asarray(rows)
    codes = encode_labels(names.iloc[rows].tolist(), classes)
    keep = codes >= 0
    counts = np.bincount(codes[keep], minlength=len(classes))
    resolved = {"column": column, "embed_dim": int(condition.get("embed_dim", EMBED_DIM)),
                "classes": classes, "class_counts": [int(c) for c in counts]}
    return resolved, codes[keep], rows[keep]
