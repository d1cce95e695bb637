"""Time limits never cost finished work: stop before a SLURM job's end, keep the final state.

SLURM ends a job at its time limit with SIGTERM and, ``KillWait`` seconds later, SIGKILL; a job
that ends after its end time is recorded ``TIMEOUT`` even when it exited 0, so Snakemake deletes
its outputs and retries it. Two defences, used by the training loop of :mod:`medgan.training.loop`:

* :class:`JobDeadline`: the job's end time, from ``SLURM_JOB_END_TIME`` (SLURM >= 23.02) or
  ``squeue -h -j $SLURM_JOB_ID -o %e`` (re-read every ``MEDGAN_SLURM_POLL_S`` seconds, default 120,
  so a limit changed with ``scontrol update`` is seen). :meth:`JobDeadline.due` turns True a margin
  before it (``MEDGAN_STOP_MARGIN_S``; default 5% of the job's time limit, between 10 s and 300 s);
  the loop then writes a checkpoint and exits 75 exactly as on SIGTERM, before SLURM stops it.
  Outside a SLURM job, or where ``squeue`` does not answer, it is never due.
* :func:`keep_finished` / :func:`reuse_finished`: when a run completes, its final checkpoint and
  log stay in the resume directory (hard links to the outputs: no extra disk), and the next run of
  the same config takes them up and finishes in seconds instead of training again. A run of a
  different config discards them.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from medgan.errors import InputError
from medgan.training.checkpoint import load_checkpoint

log = logging.getLogger(__name__)

FINISHED = "finished"  # the resume directory's folder of a completed run's final state
SQUEUE_TIMEOUT_S = 10
DEFAULT_POLL_S = 120.0
MARGIN_FRACTION, MARGIN_MIN_S, MARGIN_MAX_S = 0.05, 10.0, 300.0


def _float_env(env: Mapping[str, str], name: str) -> float | None:
    value = env.get(name, "").strip()
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        raise ValueError(
            f"environment variable {name} must be a number of seconds, got {value!r}"
        ) from None


def query_job_times(
    job_id: str, env: Mapping[str, str] | None = None
) -> tuple[float, float] | None:
    """(start, end) of SLURM job ``job_id`` as epoch seconds from ``squeue``; None if unknown."""
    cmd = ["squeue", "-h", "-j", str(job_id), "-o", "%S|%e"]
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=SQUEUE_TIMEOUT_S,
            env={**(env or os.environ), "SLURM_TIME_FORMAT": "%s"},
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        log.warning("cannot read the job's end time (%s): %s", " ".join(cmd), err)
        return None
    try:
        start, end = proc.stdout.strip().splitlines()[0].split("|")
        return float(start), float(end)
    except (IndexError, ValueError):
        log.warning(
            "cannot read the job's end time: %s gave %r (exit %d)",
            " ".join(cmd),
            proc.stdout.strip() or proc.stderr.strip(),
            proc.returncode,
        )
        return None


class JobDeadline:
    """When a SLURM job should stop training: ``margin_s`` before its end time.

    ``read_times`` returns (start, end) epoch seconds or None; it is called at most every
    ``poll_s`` seconds. ``margin_s`` None: 5% of the time limit, within [10 s, 300 s].
    """

    def __init__(
        self,
        read_times: Callable[[], tuple[float, float] | None],
        *,
        poll_s: float = DEFAULT_POLL_S,
        margin_s: float | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.read_times, self.poll_s, self.margin_s, self.clock = (
            read_times,
            poll_s,
            margin_s,
            clock,
        )
        self.end: float | None = None
        self.margin = 0.0
        self.last_read = -float("inf")
        self.announced = False

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> JobDeadline | None:
        """The deadline of the SLURM job this process runs in; None outside SLURM."""
        env = os.environ if env is None else env
        job_id = env.get("SLURM_JOB_ID")
        if not job_id:
            return None
        end_env = _float_env(env, "SLURM_JOB_END_TIME")
        start_env = _float_env(env, "SLURM_JOB_START_TIME")
        poll_s = _float_env(env, "MEDGAN_SLURM_POLL_S") or DEFAULT_POLL_S

        def read_times() -> tuple[float, float] | None:
            times = query_job_times(job_id, env)
            if times is None and end_env is not None:  # squeue failed: the value at job start
                return (start_env if start_env is not None else end_env), end_env
            return times

        return cls(read_times, poll_s=poll_s, margin_s=_float_env(env, "MEDGAN_STOP_MARGIN_S"))

    def _refresh(self, now: float) -> None:
        self.last_read = now
        times = self.read_times()
        if times is None:
            return
        start, end = times
        if self.margin_s is not None:
            margin = self.margin_s
        else:
            margin = min(max(MARGIN_FRACTION * max(end - start, 0.0), MARGIN_MIN_S), MARGIN_MAX_S)
        if end != self.end:
            log.info(
                "SLURM job ends at %s; training stops %.0f s before",
                time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(end)),
                margin,
            )
        self.end, self.margin = end, margin

    def due(self) -> bool:
        """True once less than the margin is left before the job's end time."""
        now = self.clock()
        if now - self.last_read >= self.poll_s:
            self._refresh(now)
        due = self.end is not None and now >= self.end - self.margin
        if due and not self.announced:
            self.announced = True
            log.warning("stopping: %.0f s left before the SLURM job's end time", self.end - now)
        return due


# --- the final state of a completed run --------------------------------------------------------


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not allowed
        shutil.copy2(src, dst)


def keep_finished(
    resume_dir: str | os.PathLike, *, checkpoint: str | os.PathLike, stats: str | os.PathLike,
    snapshots: str | os.PathLike | None = None,
) -> None:
    """Keep a completed run's final ``checkpoint`` and ``stats`` log (and ``snapshots`` log,
    if it exists) in ``resume_dir/finished`` (hard links where possible), for
    :func:`reuse_finished` if the outputs are thrown away."""
    folder = Path(resume_dir) / FINISHED
    folder.mkdir(parents=True, exist_ok=True)
    _link_or_copy(Path(stats), folder / "stats.jsonl")
    if snapshots is not None and Path(snapshots).is_file():
        _link_or_copy(Path(snapshots), folder / "snapshots.jsonl")
    _link_or_copy(Path(checkpoint), folder / "checkpoint.pt")  # last: marks the folder complete


def discard_finished(resume_dir: str | os.PathLike) -> None:
    folder = Path(resume_dir) / FINISHED
    for name in ("checkpoint.pt", "stats.jsonl", "snapshots.jsonl"):
        (folder / name).unlink(missing_ok=True)
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def reuse_finished(
    resume_dir: str | os.PathLike,
    *,
    checkpoint: str | os.PathLike,
    stats: str | os.PathLike,
    check: Callable[[Path, dict[str, Any]], None],
    snapshots: str | os.PathLike | None = None,
) -> bool:
    """Move a kept final state into place as the run's ``checkpoint`` and partial ``stats`` log
    (and ``snapshots`` log),
    so that training resumes at its last step (i.e. only writes the outputs again).

    ``check(path, ckpt)`` raises :class:`InputError` if the checkpoint does not belong to the
    current run; such a state is discarded. A kept state replaces an interim ``checkpoint``
    beside it (the run was killed after keeping it, before removing that older one). Returns
    whether a state was taken up.
    """
    folder = Path(resume_dir) / FINISHED
    kept, kept_stats = folder / "checkpoint.pt", folder / "stats.jsonl"
    if not kept.is_file() or not kept_stats.is_file():
        discard_finished(resume_dir)
        return False
    try:
        check(kept, load_checkpoint(kept))
    except InputError as err:
        log.info("not reusing the final state of an earlier run: %s", err)
        discard_finished(resume_dir)
        return False
    os.replace(kept_stats, stats)
    if snapshots is not None and (folder / "snapshots.jsonl").is_file():
        os.replace(folder / "snapshots.jsonl", snapshots)
    os.replace(kept, checkpoint)
    discard_finished(resume_dir)
    log.info("%s: the run had finished; taking up its final state", kept)
    return True
