"""What the training loop reports besides its loss log: snapshots and TensorBoard events.

:class:`Monitor` is the one object the loop calls for them (:mod:`medgan.training.snapshots`,
:mod:`medgan.training.events`): after every logged row, at the snapshot steps, when the sample
grid is written, and at the end (``snapshots.jsonl`` into place, always written; empty when the
run takes no snapshots).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from medgan.atomic import write_text
from medgan.plotting import read_stats
from medgan.training.checkpoint import continue_stats
from medgan.training.events import EventLog
from medgan.training.snapshots import SOURCE_BASELINE, Snapshots, SnapshotScorer

log = logging.getLogger(__name__)


class Monitor:
    """Snapshots (or None) and TensorBoard events of one run; ``partial``/``final``: the
    snapshot log while training and at the end."""

    def __init__(self, snapshots: Snapshots | None, events: EventLog, *, partial: Path,
                 final: Path, main: bool, ranks: Any, stats: Path | None = None):
        self.snapshots, self.events, self.stats = snapshots, events, stats
        self.partial, self.final, self.main, self.ranks = partial, final, main, ranks

    @classmethod
    def open(cls, run: Any, state: Any, files: Any, *, scorer: SnapshotScorer | None,
             tensorboard: str | os.PathLike | None, start_step: int) -> Monitor:
        """The monitor of ``run`` (a :class:`~medgan.training.run.TrainingRun`) continuing at
        ``start_step``; snapshots when the schedule asks for them and a scorer is given."""
        main = run.ranks.is_main
        partial, final = files.partial_snapshots, files.snapshots
        every = int(run.schedule.get("snapshot_every", 0) or 0)
        snapshots = None
        if every and scorer is None:
            log.warning("%s: schedule snapshot_every is %d but no snapshot scorer was given: "
                        "no snapshots", files.out, every)
        elif every:
            rows = continue_stats([partial, final], start_step) if start_step and main else []
            condition = run.config.get("condition")
            snapshots = Snapshots(scorer, every=every, keep_best=run.schedule.get("keep_best"),
                                  config=run.config, latent_dim=state.G.latent_dim,
                                  device=run.device, path=partial if main else None, rows=rows,
                                  n_classes=len(condition["classes"]) if condition else None)
        events = EventLog(tensorboard if main else None, start_step=start_step)
        monitor = cls(snapshots, events, partial=partial, final=final, main=main,
                      ranks=run.ranks, stats=files.partial_stats)
        if snapshots is not None and not start_step:
            for row in snapshots.rows:
                if row.get("source") == SOURCE_BASELINE:
                    events.scalars(0, row, "baseline")
        return monitor

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.events.close()

    def logged(self, step: int, row: dict[str, Any]) -> None:
        """A row of ``stats.jsonl``."""
        self.events.scalars(step, row, "train")

    def snapshot_due(self, step: int, last: int) -> bool:
        return self.snapshots is not None and self.snapshots.due(step, last)

    def snapshot(self, step: int, G: Any) -> bool:
        """Take the snapshot of ``step`` (main process); whether it is the best so far (the
        same answer in every process)."""
        best = False
        if self.main:
            losses = read_stats(self.stats) if self.stats and self.stats.is_file() else None
            row, best = self.snapshots.take(step, G, losses=losses)
            self.events.scalars(step, row, "snapshot")
        return self.ranks.any(best)

    def samples(self, step: int, png: Path) -> None:
        self.events.image(step, png)

    def close_into(self) -> None:
        """Put the snapshot log in place (main process)."""
        if self.snapshots is not None and self.partial.is_file():
            os.replace(self.partial, self.final)
        else:
            write_text(self.final, "")
