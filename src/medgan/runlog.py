"""Send a job's output (progress bars, warnings, tracebacks) to its log file."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path


def log_to(path: str | os.PathLike | None) -> None:
    """Redirect stdout, stderr and the root logger to ``path`` (line-buffered), if given."""
    if not path:
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "w", buffering=1)  # noqa: SIM115 - lives as long as the process
    sys.stdout = sys.stderr = fh
    logging.basicConfig(
        stream=fh,
        level=logging.INFO,
        force=True,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
