"""TensorBoard event files of a training run (``torch.utils.tensorboard``).

:class:`EventLog` writes, under ``log_dir``: every ``stats.jsonl`` row as scalars ``train/<key>``
(losses, loss statistics, throughput), every snapshot row (:mod:`medgan.training.snapshots`) as
scalars ``snapshot/<key>`` (the real-vs-real baseline row as ``baseline/<key>`` at step 0, a
verdict as text ``snapshot/health``), and the sample grid ``samples.png`` as the image
``samples`` whenever it is written (every ``schedule.sample_every`` steps and at the end).
View them with ``tensorboard --logdir results/models``.

The ``tensorboard`` package is needed only when a run asks for event files (the workflow does);
the trainer itself runs without it. A resumed run drops the events after its resumed step
(``purge_step``) so that the curves do not double back. Only the main process writes.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


class EventLog:
    """TensorBoard events in ``log_dir`` (None: a no-op log)."""

    def __init__(self, log_dir: str | os.PathLike | None, *, start_step: int = 0):
        self.writer: Any = None
        if log_dir is None:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            raise ImportError(f"writing TensorBoard events to {log_dir} needs the tensorboard "
                              "package (pip install tensorboard)") from err
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(str(log_dir), purge_step=start_step + 1 if start_step else None)

    def scalars(self, step: int, row: dict[str, Any], prefix: str) -> None:
        """Every finite number of ``row`` but ``step`` as ``<prefix>/<key>``; a string
        ``health`` as text."""
        if self.writer is None:
            return
        for key, value in row.items():
            if key == "step":
                continue
            if isinstance(value, (int, float)) and not isinstance(value, bool) and \
                    math.isfinite(value):
                self.writer.add_scalar(f"{prefix}/{key}", value, step)
            elif key == "health" and isinstance(value, str):
                reason = row.get("health_reason") or ""
                self.writer.add_text(f"{prefix}/health", f"{value}: {reason}", step)

    def image(self, step: int, png: str | os.PathLike, tag: str = "samples") -> None:
        """The PNG file ``png`` (a sample grid) as the image ``tag`` of ``step``."""
        if self.writer is None:
            return
        from PIL import Image

        with Image.open(png) as im:
            pixels = np.asarray(im.convert("RGB"))
        self.writer.add_image(tag, pixels, step, dataformats="HWC")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
