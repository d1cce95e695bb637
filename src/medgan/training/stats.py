"""What training logs: running sums of the step statistics, and the ``stats.jsonl`` log.

:class:`StatsAccumulator` keeps the losses and loss statistics of every step as device tensors
(no host sync per step); :class:`StatsLog` turns them into one JSON row per logged step
(``step``, the stage of progressive runs, the means since the last row, ``images_per_s``,
``s_per_step``, ``elapsed_s``), appended to ``stats.jsonl.partial`` and renamed to
``stats.jsonl`` at the end. Time spent writing checkpoints and samples (:meth:`StatsLog.paused`)
is left out of the throughput.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medgan.atomic import disk_full_reported, write_text

log = logging.getLogger(__name__)


class StatsAccumulator:
    """Running sums of scalar tensors, kept on the device; :meth:`means` syncs once."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, values: dict[str, torch.Tensor]) -> None:
        for k, v in values.items():
            v = v.detach()
            self.sums[k] = self.sums[k] + v if k in self.sums else v.clone()
            self.counts[k] = self.counts.get(k, 0) + 1

    def means(self) -> dict[str, float]:
        """Mean of each key since the last call (one device-to-host copy), then reset."""
        keys = list(self.sums)
        values = torch.stack([self.sums[k].float() for k in keys]).cpu().tolist() if keys else []
        out = {k: v / self.counts[k] for k, v in zip(keys, values, strict=True)}
        self.sums.clear()
        self.counts.clear()
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"sums": dict(self.sums), "counts": dict(self.counts)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sums, self.counts = dict(state["sums"]), {k: int(v) for k, v in
                                                       state["counts"].items()}


class StatsLog:
    """``stats.jsonl.partial`` at ``path``, started with the JSON lines ``rows`` (those a
    resumed run keeps), and the throughput of the steps since the last row. Use as a context
    manager around the training loop."""

    def __init__(self, path: Path | None, rows: list[str], *, run_name: str):
        self.path, self.run_name = path, run_name  # path None: count and check, write nothing
        if path is not None:
            write_text(path, "".join(f"{r}\n" for r in rows))
        self.last_row: dict[str, Any] = json.loads(rows[-1]) if rows else {}
        self.fh: Any = None
        self.t_train = self.t_interval = time.perf_counter()
        self.overhead, self.steps_in_interval = 0.0, 0
        self.images_in_interval = self.images_trained = 0

    def __enter__(self) -> StatsLog:
        if self.path is not None:
            self.fh = open(self.path, "a")  # noqa: SIM115 - closed by __exit__
        self.t_train = self.t_interval = time.perf_counter()
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if self.fh is None:
            return
        if exc_type is not None:  # e.g. a full disk: the close would fail the same way again
            with contextlib.suppress(OSError):
                self.fh.close()
            return
        with self._disk_full_reported():
            self.fh.close()

    def _disk_full_reported(self) -> contextlib.AbstractContextManager:
        return disk_full_reported(self.path, kept="the rows before it and the last checkpoint "
                                                  "are as they were, and a new run resumes from "
                                                  "that checkpoint")

    def count_step(self, images: int) -> None:
        """One training step that showed D ``images`` real images."""
        self.steps_in_interval += 1
        self.images_in_interval += images
        self.images_trained += images

    def write_row(self, step: int, columns: dict[str, Any], means: dict[str, float], *,
                  tolerate_divergence: bool = False) -> dict[str, Any]:
        """Append the row of ``step`` (``columns`` first, then the statistics' ``means``);
        a non-finite value raises ``FloatingPointError`` unless ``tolerate_divergence`` (the
        row is then written as JSON allows: NaN / Infinity)."""
        now = time.perf_counter()
        dt = max(now - self.t_interval - self.overhead, 1e-9)
        row = {"step": step, **columns, **means,
               "images_per_s": self.images_in_interval / dt,
               "s_per_step": dt / self.steps_in_interval,
               "elapsed_s": now - self.t_train}
        if not tolerate_divergence and not row_is_finite(row):
            raise FloatingPointError(f"{self.run_name}: training diverged at step {step}: {row}")
        if self.fh is not None:
            with self._disk_full_reported():
                self.fh.write(json.dumps(row) + "\n")
                self.fh.flush()
            log.info("%s", row)
        self.last_row = row
        self.t_interval, self.overhead, self.steps_in_interval = time.perf_counter(), 0.0, 0
        self.images_in_interval = 0
        return row

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Time inside the block (checkpoints, samples) does not count as training time."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.overhead += time.perf_counter() - t0

    def flush(self) -> None:
        if self.fh is not None:
            with self._disk_full_reported():
                self.fh.flush()

    @property
    def train_s(self) -> float:
        return time.perf_counter() - self.t_train

    def close_into(self, final: Path) -> None:
        """Rename the finished log to ``final`` (``stats.jsonl``)."""
        os.replace(self.path, final)


def row_is_finite(row: dict[str, Any]) -> bool:
    """Whether every value of a log row is finite (a diverged run's are not)."""
    return all(np.isfinite(v) for v in row.values())
