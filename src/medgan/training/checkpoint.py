"""Checkpoints as plain dicts (DESIGN.md): state_dicts, config, step, RNG states; no pickled code.

:func:`save_checkpoint` writes atomically with ``torch.save``; :func:`load_checkpoint` reads with
``weights_only=True`` (both from :mod:`medgan.checkpoint_file`), so a file holding arbitrary
Python objects is refused with an :class:`~medgan.errors.InputError` instead of being executed.
RNG states are stored as tensors, lists and numbers (:func:`capture_rng_state` /
:func:`restore_rng_state`), which the weights-only unpickler accepts.

Resuming interrupted training: :func:`config_differences` names what differs between the config a
checkpoint was written with and the current one; :func:`continue_stats` keeps a log's rows up to
the checkpoint's step; :func:`sigterm_requested` turns SIGTERM (what SLURM sends before a time
limit) into a flag the training loop checks between steps, after which it writes a checkpoint and
raises :class:`TrainingInterrupted` (exit status 75, ``EX_TEMPFAIL``: retry and it resumes).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medgan import checkpoint_file
from medgan.checkpoint_file import file_sha256, save_checkpoint

REQUIRED_KEYS = ("generator", "config", "step")
__all__ = ["file_sha256", "save_checkpoint"]  # re-exported from medgan.checkpoint_file


def load_checkpoint(path: str | os.PathLike, *, map_location: str | torch.device = "cpu",
                    required: tuple[str, ...] = REQUIRED_KEYS) -> dict[str, Any]:
    """A GAN checkpoint (:func:`medgan.checkpoint_file.load_checkpoint`; by default it must
    hold ``generator``, ``config`` and ``step``)."""
    return checkpoint_file.load_checkpoint(path, map_location=map_location, required=required)


def capture_rng_state(generators: dict[str, torch.Generator] | None = None) -> dict[str, Any]:
    """The python, numpy, torch (and CUDA) global RNG states plus named ``generators``' states,
    as tensors, lists and numbers."""
    py_version, py_state, py_gauss = random.getstate()
    np_key, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()  # noqa: NPY002
    state: dict[str, Any] = {
        "python": {"version": py_version, "state": list(py_state), "gauss": py_gauss},
        "numpy": {"key": np_key, "keys": torch.from_numpy(np_keys.astype(np.int64)),
                  "pos": int(np_pos), "has_gauss": int(np_has_gauss),
                  "cached_gaussian": float(np_gauss)},
        "torch": torch.get_rng_state(),
        "generators": {name: g.get_state() for name, g in (generators or {}).items()},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any],
                      generators: dict[str, torch.Generator] | None = None) -> None:
    """Inverse of :func:`capture_rng_state`."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    npst = state["numpy"]
    np_state = (npst["key"], npst["keys"].numpy().astype(np.uint32), npst["pos"],
                npst["has_gauss"], npst["cached_gaussian"])
    np.random.set_state(np_state)  # noqa: NPY002
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    for name, g in (generators or {}).items():
        g.set_state(state["generators"][name].cpu())


# --- resuming ----------------------------------------------------------------------------------

EXIT_INTERRUPTED = 75  # sysexits.h EX_TEMPFAIL: "try again later"


class TrainingInterrupted(SystemExit):
    """Training stopped on request (SIGTERM) after writing a resumable checkpoint.

    A :class:`SystemExit` with code 75, so an uncaught one ends the process with exit status 75
    and no traceback, and ``except Exception`` blocks do not swallow it.
    """

    def __init__(self, checkpoint: str | os.PathLike, step: int):
        super().__init__(EXIT_INTERRUPTED)
        self.checkpoint, self.step = str(checkpoint), step

    def __str__(self) -> str:
        return (f"{self.checkpoint}: training interrupted by SIGTERM after step {self.step}; "
                "checkpoint written, run again to resume")


@contextlib.contextmanager
def sigterm_requested() -> Iterator[dict[str, bool]]:
    """A flag dict ``{"stop": False}`` set to True when SIGTERM arrives inside the block.

    The previous handler is restored on exit. Outside the main thread (where Python cannot
    install signal handlers) the flag simply stays False.
    """
    flag = {"stop": False}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, frame: Any) -> None:
        flag["stop"] = True

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGTERM, previous)


def config_differences(old: Any, new: Any, *, prefix: str = "",
                       ignore: frozenset[str] = frozenset()) -> list[str]:
    """Dotted keys (``"loss.n_critic"``) whose values differ between two nested configs;
    keys in ``ignore`` (dotted) are skipped. Lists and tuples compare equal element-wise."""
    if prefix in ignore:
        return []
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in [*old, *(k for k in new if k not in old)]:
            sub = f"{prefix}.{key}" if prefix else str(key)
            if key not in old or key not in new:
                if sub not in ignore:
                    out.append(sub)
            else:
                out += config_differences(old[key], new[key], prefix=sub, ignore=ignore)
        return out
    if isinstance(old, list | tuple) and isinstance(new, list | tuple):
        if len(old) != len(new):
            return [prefix]
        return [d for i, (a, b) in enumerate(zip(old, new, strict=True))
                for d in config_differences(a, b, prefix=f"{prefix}[{i}]", ignore=ignore)]
    return [] if old == new else [prefix]


def continue_stats(sources: list[Path], step: int) -> list[str]:
    """The JSON lines of the first existing file in ``sources`` whose ``step`` is <= ``step``
    (a run killed after its last checkpoint logged rows that the resumed run logs again)."""
    for path in sources:
        if path.is_file():
            rows = []
            for line in path.read_text().splitlines():
                try:
                    row_step = json.loads(line)["step"]
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut short by a kill
                if row_step <= step:
                    rows.append(line)
            return rows
    return []
