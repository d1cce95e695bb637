"""The training data: a prepared dataset's training rows, read in seeded batches.

:func:`load_training_data` opens a prepared dataset and checks its resolution;
:class:`EpochSampler` draws batch indices from shuffled epochs; :class:`RealBatches` turns them
into batches on the device, as the current stage (progressive growing) sees them. Datasets up to
:data:`PRELOAD_BYTES` are copied to the device once; larger ones are read from the memory map
batch by batch, one batch ahead on a background thread into pinned memory
(:mod:`medgan.training.readahead`), in the same order and with the same checkpointed sampler
state as reading each batch when it is asked for. Every real batch of training comes from
:meth:`RealBatches.next`.
"""

from __future__ import annotations

import hashlib
import os
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
from medgan.training.readahead import MemmapBatches

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

    def _size(self, batch_size: int | None) -> int:
        return self.batch_size if batch_size is None else min(batch_size, self.n)

    def _epoch_ends(self, size: int) -> bool:
        return self.perm is None or self.pos + size > self.n

    def next(self, batch_size: int | None = None) -> torch.Tensor:
        """The next batch of indices; ``batch_size`` (capped at ``n``) overrides the default."""
        size = self._size(batch_size)
        if self._epoch_ends(size):
            self.perm = torch.randperm(self.n, generator=self.generator)
            self.pos = 0
        idx = self.perm[self.pos:self.pos + size]
        self.pos += size
        return idx

    def peek(self, batch_size: int | None = None) -> torch.Tensor:
        """The indices :meth:`next` would return now, drawn without moving this sampler or its
        generator (a new epoch's permutation comes from a copy of the generator)."""
        size = self._size(batch_size)
        if not self._epoch_ends(size):
            return self.perm[self.pos:self.pos + size]
        copy = torch.Generator(device=self.generator.device)
        copy.set_state(self.generator.get_state())
        return torch.randperm(self.n, generator=copy)[:size]

    def state_dict(self) -> dict[str, Any]:
        return {"perm": self.perm, "pos": self.pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.perm, self.pos = state["perm"], int(state["pos"])


class DeviceCopy:
    """Index -> batch from a copy of the whole (small) dataset on the device."""

    def __init__(self, images: np.ndarray, device: torch.device):
        self.data = torch.from_numpy(np.array(images, dtype=np.float32)).to(device)

    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        return self.data[idx.to(self.data.device)]

    def ahead(self, idx: torch.Tensor) -> None:
        """Nothing to read ahead."""

    def close(self) -> None:
        pass


def batch_reader(images: np.ndarray, device: torch.device, rows: np.ndarray | None = None, *,
                 read_ahead: bool = True) -> DeviceCopy | MemmapBatches:
    """Index -> batch on ``device``: from a device copy of datasets up to :data:`PRELOAD_BYTES`,
    else from the memory map (read one batch ahead if ``read_ahead``). The reader's ``ahead(idx)``
    names the indices the next call will likely ask for; ``close()`` ends its thread.

    ``rows``: the dataset rows that index ``i`` refers to (the training split); None: all.
    """
    n_rows = images.shape[0] if rows is None else len(rows)
    if images[:1].nbytes * n_rows <= PRELOAD_BYTES:
        return DeviceCopy(images if rows is None else images[rows], device)
    return MemmapBatches(images, rows, device, read_ahead=read_ahead)


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

    A memory-mapped dataset is read one batch ahead (``read_ahead``; samplers with a ``peek``):
    after each batch the indices of the next one at the same batch size are read on a background
    thread. :meth:`close` (or leaving a ``with`` block) stops that thread.
    """

    def __init__(self, images: np.ndarray, rows: np.ndarray | None, sampler: EpochSampler,
                 device: torch.device, performance: dict[str, Any], ranks: Ranks | None = None,
                 labels: np.ndarray | None = None, read_ahead: bool = True):
        self.sampler, self.performance = sampler, performance
        self.ranks = ranks or Ranks()
        self.read = batch_reader(images, device, rows, read_ahead=read_ahead)
        reads_ahead = read_ahead and isinstance(self.read, MemmapBatches)
        self.peek = getattr(sampler, "peek", None) if reads_ahead else None
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
        if self.peek is not None:  # the sampler has not moved: these are the next indices
            self.read.ahead(self.ranks.take(self.peek(batch_size)))
        return accel.prepare_batch(images if stage is None else real_batch(images, stage),
                                   self.performance)

    def close(self) -> None:
        """Stop the background reader (if any); idempotent."""
        self.read.close()

    def __enter__(self) -> RealBatches:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
