"""Start a training run on several processes of this machine with ``torchrun``.

:func:`run_processes` is what :func:`~medgan.training.loop.train_gan` does when asked for
``processes > 1`` in a process that torchrun did not start (a workflow job, a notebook): it writes
the arguments to a temporary JSON file and runs

    python -m torch.distributed.run --standalone --nproc_per_node N -m medgan.training ARGS.json

waiting for it; each of the N processes runs ``train_gan`` with those arguments, joins the process
group (:mod:`medgan.training.distributed`) and trains its shard. SIGTERM and SIGINT are passed on
to torchrun, which passes them to every process: they stop together after the same step, rank 0
writes the checkpoint, and this function raises
:class:`~medgan.training.checkpoint.TrainingInterrupted` like a one-process run.

Several nodes (SLURM): start one torchrun per node yourself, e.g. ``srun torchrun --nnodes
$SLURM_NNODES --nproc_per_node 4 --rdzv-backend c10d --rdzv-endpoint $HEAD:29500 -m
medgan.training args.json`` (see the README); ``train_gan`` inside them trains directly.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from medgan.atomic import write_json
from medgan.training.checkpoint import TrainingInterrupted, load_checkpoint

log = logging.getLogger(__name__)

FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def torchrun_command(nproc: int, args_path: Path, *, module: str = "medgan.training"
                     ) -> list[str]:
    """The torchrun command line that runs ``python -m module args_path`` on ``nproc``
    processes of this machine."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={nproc}", "-m", module, str(args_path)]


def _fileno(stream: Any) -> int | None:
    """The file descriptor behind ``stream`` (a job's log file), or None (inherit)."""
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def run_processes(nproc: int, kwargs: dict[str, Any], *,
                  module: str = "medgan.training") -> dict[str, Any]:
    """Train with ``train_gan(**kwargs)`` on ``nproc`` processes; returns ``run.json``'s
    content. ``kwargs`` must be JSON-serialisable (paths as strings); ``threads`` is divided
    among the processes. ``module``: the entry point each process runs (``python -m module
    ARGS.json``; ARGS.json lives in a temporary directory while they run)."""
    threads = kwargs.get("threads")  # the job's threads, shared by its processes
    kwargs = {**kwargs, "threads": None if threads is None else max(1, threads // nproc)}
    env = {**os.environ, "OMP_NUM_THREADS": str(kwargs["threads"] or 1)}
    with tempfile.TemporaryDirectory(prefix="medgan-torchrun-") as tmp:
        args_path = Path(tmp) / "args.json"
        write_json(args_path, kwargs)
        proc = subprocess.Popen(torchrun_command(nproc, args_path, module=module), env=env,
                                stdout=_fileno(sys.stdout), stderr=_fileno(sys.stderr))
        returncode, received = _wait_forwarding_signals(proc)
    out_dir = Path(kwargs["out_dir"])
    if returncode == 0:
        return json.loads((out_dir / "run.json").read_text())
    checkpoint = Path(kwargs.get("resume_dir") or out_dir) / "checkpoint.pt"
    if received and checkpoint.is_file():
        raise TrainingInterrupted(checkpoint, int(load_checkpoint(checkpoint)["step"]))
    raise RuntimeError(f"{out_dir}: training on {nproc} processes failed (torchrun exit status "
                       f"{returncode}); the processes' errors are in the log above")


def _wait_forwarding_signals(proc: subprocess.Popen) -> tuple[int, list[int]]:
    """Wait for ``proc``, passing SIGTERM and SIGINT on to it; its exit status and the signals
    passed on."""
    received: list[int] = []

    def forward(signum: int, frame: Any) -> None:
        received.append(signum)
        proc.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in FORWARDED_SIGNALS}
    try:
        return proc.wait(), received
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
