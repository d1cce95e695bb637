"""A job's log: its output (progress bars, warnings, tracebacks) to its log file, and the one
line that a failed job leaves on the terminal.

Every workflow script starts with ``log_to(snakemake.log[0], rule=snakemake.rule)``. From then
on an exception the script does not catch ends the job (exit status 1) with one line
``<rule>: <message>`` written to the log and to the job's own stderr, which is the terminal of a
local run and the SLURM log of a cluster job (the profiles' ``show-failed-logs`` prints both):

* bad input (:class:`~medgan.errors.InputError`) or an inconsistent config
  (:class:`~medgan.config.ConfigError`): ``<rule>: <file>: <problem>``, no traceback anywhere;
* anything else: the traceback goes to the log, for whoever debugs it, and its last line to
  stderr, ``<rule>: <Type>: <message> (traceback in <log>)``.

``SystemExit`` (a training job's exit status 75 at its time limit) passes through untouched.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import traceback
from pathlib import Path

from medgan.config import ConfigError
from medgan.errors import InputError

# The user's errors: their message is the whole story, a traceback would only hide it.
EXPECTED_ERRORS = (InputError, ConfigError)


def log_to(path: str | os.PathLike | None, *, rule: str | None = None) -> None:
    """Redirect stdout, stderr and the root logger to ``path`` (line-buffered), if given, and
    end the process on an uncaught exception with one line naming ``rule`` (module doc)."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fh = open(path, "w", buffering=1)  # noqa: SIM115 - lives as long as the process
        sys.stdout = sys.stderr = fh
        logging.basicConfig(
            stream=fh,
            level=logging.INFO,
            force=True,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )

    sys.excepthook = functools.partial(_hook, rule=rule, log=path)


def _hook(exc_type, exc, tb, *, rule: str | None, log: str | os.PathLike | None) -> None:
    report_uncaught(exc, tb, rule=rule, log=log)


def error_line(exc: BaseException, *, rule: str | None = None,
               log: str | os.PathLike | None = None) -> str:
    """The one line a job that failed with ``exc`` leaves: ``<rule>: <file>: <problem>`` for the
    user's errors, ``<rule>: <Type>: <message> (traceback in <log>)`` for anything else."""
    if isinstance(exc, EXPECTED_ERRORS):
        text = str(exc)
    else:
        text = "".join(traceback.format_exception_only(type(exc), exc))
        if log:
            text += f" (traceback in {log})"
    text = " ".join(text.split())  # one line, whatever the message held
    return f"{rule}: {text}" if rule else text


def report_uncaught(exc: BaseException, tb, *, rule: str | None = None,
                    log: str | os.PathLike | None = None) -> None:
    """What :func:`log_to`'s hook does with an uncaught exception (module doc)."""
    if not isinstance(exc, Exception):  # KeyboardInterrupt and the like: Python's own report
        sys.__excepthook__(type(exc), exc, tb)
        return
    line = error_line(exc, rule=rule, log=log)
    if not isinstance(exc, EXPECTED_ERRORS):
        traceback.print_exception(type(exc), exc, tb, file=sys.stderr)
    for stream in dict.fromkeys((sys.stderr, sys.__stderr__)):  # the log, the job's stderr
        if stream is not None:
            print(line, file=stream, flush=True)
