"""Snapshots: cheap metrics of the generator at fixed steps while it trains.

Every ``schedule.snapshot_every`` steps (and at the last step) the generator that outputs use
(the EMA copy if kept) makes images from one *fixed* set of latents (its own seeded stream,
drawn once; the same latents at every snapshot), and a *scorer* turns them into numbers. The
scorer is given to :func:`~medgan.training.loop.train_gan` by the caller: training does not
know the metrics (they live in :mod:`medgan.analysis`, a later stage) and only needs an object
with

* ``n_images``: how many images a snapshot makes;
* ``__call__(images, *, losses) -> dict``: the metrics of a snapshot's images (float32
  (N, C, H, W) at the full resolution; a progressive run's earlier stages are scaled up by pixel
  repetition); ``losses``: the ``stats.jsonl`` rows so far;
* ``baseline``: the same metrics of real held-out images against the same real reference
  (a dict, or None), written once as the first row (``"source": "real_heldout"``, step 0);
* ``spec`` and ``entry_module`` (optional): JSON keyword arguments that rebuild the scorer and the
  ``python -m`` module that does so in every process of a torchrun run
  (:mod:`medgan.training.launch`).

The rows go to ``snapshots.jsonl`` beside ``stats.jsonl`` (while training
``snapshots.jsonl.partial`` in the resume directory, kept like the loss log on resume): ``step``,
``source`` (``"synthetic"``), the scorer's values and ``snapshot_s`` (the snapshot's seconds,
left out of the training throughput). ``schedule.keep_best`` names a metric of
:data:`~medgan.training.schedule.KEEP_BEST`; the snapshot that is best so far is written as
``checkpoint_best.pt`` beside ``checkpoint.pt`` (a full checkpoint of that step, readable by
:func:`~medgan.training.generate.load_generator`).

A snapshot consumes no random number of training (the torch and numpy global states are put
back afterwards), so a run's weights do not depend on whether it takes snapshots, and resuming
stays exact. Only the main process scores and writes; the decision "best so far" is shared.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from medgan.atomic import disk_full_reported, write_text
from medgan.training.generate import sample_images
from medgan.training.schedule import KEEP_BEST, draw_latents

log = logging.getLogger(__name__)

SNAPSHOT_SEED_INDEX = 3  # the stream after data order, training latents and sample latents
GENERATE_BATCH = 256
SOURCE_SYNTHETIC, SOURCE_BASELINE = "synthetic", "real_heldout"


class SnapshotScorer(Protocol):
    """What :class:`Snapshots` needs of a scorer (see the module docstring)."""

    n_images: int
    baseline: dict[str, Any] | None

    def __call__(self, images: np.ndarray, *, losses: list[dict] | None = None
                 ) -> dict[str, Any]: ...


def snapshot_seed(seed: int) -> int:
    """The seed of the fixed snapshot latents of a run seeded ``seed``."""
    ss = np.random.SeedSequence(seed).generate_state(SNAPSHOT_SEED_INDEX + 1, dtype=np.uint64)
    return int(ss[SNAPSHOT_SEED_INDEX] >> 1)


def better(metric: str, value: Any, best: float | None) -> bool:
    """Whether ``value`` of ``metric`` beats ``best`` (None: nothing yet); NaN never does."""
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    if best is None:
        return True
    return value < best if KEEP_BEST[metric] == "min" else value > best


@contextlib.contextmanager
def preserved_random_state(device: torch.device):
    """Put the torch (CPU and ``device``) and numpy global random states back afterwards."""
    np_state = np.random.get_state()  # noqa: NPY002 - the legacy global state
    devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        np.random.set_state(np_state)  # noqa: NPY002


class Snapshots:
    """The snapshots of one run: fixed latents, the scorer, the log rows and the best value."""

    def __init__(self, scorer: SnapshotScorer, *, every: int, keep_best: str | None,
                 config: dict[str, Any], latent_dim: int, device: torch.device,
                 path: Path | None, rows: list[str], n_classes: int | None = None):
        self.scorer, self.every, self.keep_best = scorer, every, keep_best
        self.resolution, self.device, self.path = int(config["resolution"]), device, path
        n = int(scorer.n_images)
        gen = torch.Generator().manual_seed(snapshot_seed(int(config["seed"])))
        self.z = draw_latents(n, latent_dim, generator=gen,
                              distribution=config["schedule"]["latent_distribution"])
        self.labels = None if not n_classes else torch.arange(n) % n_classes
        self.rows = [json.loads(r) for r in rows]
        if path is not None:
            if not self.rows and scorer.baseline is not None:
                self.rows = [{"step": 0, "source": SOURCE_BASELINE, **scorer.baseline}]
            write_text(path, "".join(json.dumps(r) + "\n" for r in self.rows))
        self.best = None
        for row in self.rows:
            if keep_best and row.get("source") == SOURCE_SYNTHETIC and \
                    better(keep_best, row.get(keep_best), self.best):
                self.best = row[keep_best]

    def due(self, step: int, last: int) -> bool:
        return bool(self.every) and (step % self.every == 0 or step == last)

    def images(self, G: torch.nn.Module) -> np.ndarray:
        """The images of the fixed latents, at the full resolution."""
        parts = []
        for start in range(0, len(self.z), GENERATE_BATCH):
            z = self.z[start:start + GENERATE_BATCH].to(self.device)
            labels = None if self.labels is None else \
                self.labels[start:start + GENERATE_BATCH].to(self.device)
            parts.append(sample_images(G, z, labels=labels))
        images = np.concatenate(parts)
        factor = self.resolution // images.shape[-1]
        if factor > 1:  # a progressive run's earlier stage
            images = images.repeat(factor, axis=2).repeat(factor, axis=3)
        return images

    def take(self, step: int, G: torch.nn.Module, *, losses: list[dict] | None = None
             ) -> tuple[dict[str, Any], bool]:
        """Score the snapshot of ``step`` (``losses``: the log rows so far), append its row;
        the row and whether it is the best so far (by ``keep_best``; False without)."""
        t0 = time.perf_counter()
        with preserved_random_state(self.device):
            values = self.scorer(self.images(G), losses=losses)
        row = {"step": step, "source": SOURCE_SYNTHETIC, **values,
               "snapshot_s": time.perf_counter() - t0}
        self.rows.append(row)
        if self.path is not None:
            with disk_full_reported(self.path, kept="the rows before it are as they were"), \
                    open(self.path, "a") as fh:
                fh.write(json.dumps(row) + "\n")
        log.info("snapshot %s", row)
        is_best = bool(self.keep_best) and better(self.keep_best, row.get(self.keep_best),
                                                  self.best)
        if is_best:
            self.best = row[self.keep_best]
        return row, is_best
