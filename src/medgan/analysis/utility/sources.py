"""Where "synthetic" training images come from: a GAN, or a control with a known answer.

Every source has ``name``, ``conditional`` and ``draw(n, seed=..., labels=...) -> TaskData``;
``labels`` (class indices, length ``n``) are the classes the caller wants, which a
class-conditional generator honours and the others ignore.

* :class:`GeneratorSource`: images of a sampler (e.g. a trained GAN, see
  :class:`~medgan.analysis.utility.run.GeneratorSampler`) turned into task data;
* :class:`PoolSource`: draws from a fixed set of real images - with real images the task network
  never sees otherwise, it is the *oracle* (a perfect generator of new patients), which must help
  when real data is scarce;
* :class:`NoiseSource`: Gaussian noise with the real images' per-channel mean and standard
  deviation, with targets drawn from the real ones independently of the images - it must not
  help;
* :class:`RepeatSource`: one real image and its target, repeated - a generator that has
  collapsed to one mode; it must help less than the oracle.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from medgan.analysis.metrics.featurenet import pool_images
from medgan.analysis.utility.tasks import Task, TaskData

Sampler = Callable[..., np.ndarray]  # sampler(n, seed=..., labels=...) -> (n, C, H, W)


class GeneratorSource:
    """``sampler(n, seed=..., labels=...)`` images of ``channels``, as data of ``task``;
    ``pool``: average-pool factor applied to the images first (1: none)."""

    def __init__(self, sampler: Sampler, channels: Sequence[str], task: Task, *,
                 name: str = "gan", conditional: bool = False, pool: int = 1):
        self.sampler, self.channels, self.task = sampler, list(channels), task
        self.name, self.conditional, self.pool = name, conditional, pool

    def draw(self, n: int, *, seed: int, labels: np.ndarray | None = None) -> TaskData:
        images = self.sampler(n, seed=seed, labels=labels if self.conditional else None)
        if not np.isfinite(images).all():
            raise ValueError(f"source {self.name}: the generator makes non-finite values")
        images = pool_images(images, self.pool).astype(np.float32, copy=False)
        return self.task.from_images(images, self.channels,
                                     labels=labels if self.conditional else None)


class PoolSource:
    """Draws with replacement from ``pool``; with ``labels``, each image from the pool's images
    of that class (any image where the pool has none)."""

    def __init__(self, pool: TaskData, *, name: str = "oracle", classification: bool = False):
        if len(pool) == 0:
            raise ValueError(f"source {name}: the pool is empty")
        self.data, self.name = pool, name
        self.conditional = classification

    def draw(self, n: int, *, seed: int, labels: np.ndarray | None = None) -> TaskData:
        rng = np.random.default_rng(seed)
        if labels is None or not self.conditional:
            return self.data.take(rng.integers(len(self.data), size=n))
        idx = np.empty(n, dtype=np.int64)
        for c in np.unique(labels):
            members = np.flatnonzero(self.data.y == c)
            members = members if len(members) else np.arange(len(self.data))
            where = np.flatnonzero(labels == c)
            idx[where] = rng.choice(members, size=len(where))
        return self.data.take(idx)


class NoiseSource:
    """Gaussian-noise images shaped and scaled like ``like``, targets drawn from ``like``
    independently (uninformative); classification targets are the given labels or drawn."""

    conditional = False

    def __init__(self, like: TaskData, *, name: str = "noise"):
        self.like, self.name = like, name
        axes = (0, 2, 3)
        self.mean = like.x.mean(axis=axes, dtype=np.float64)[None, :, None, None]
        self.std = like.x.std(axis=axes, dtype=np.float64)[None, :, None, None]

    def draw(self, n: int, *, seed: int, labels: np.ndarray | None = None) -> TaskData:
        rng = np.random.default_rng(seed)
        shape = (n, *self.like.x.shape[1:])
        x = (rng.standard_normal(shape) * self.std + self.mean).astype(np.float32)
        y = self.like.y[rng.integers(len(self.like), size=n)]
        return TaskData(x, y)


class RepeatSource:
    """One image of ``data`` (the ``index``-th) and its target, ``n`` times."""

    conditional = False

    def __init__(self, data: TaskData, *, index: int = 0, name: str = "repeat"):
        self.item, self.name = data.take(np.array([index])), name

    def draw(self, n: int, *, seed: int, labels: np.ndarray | None = None) -> TaskData:
        return self.item.take(np.zeros(n, dtype=np.int64))
