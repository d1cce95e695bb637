"""The errors a user acts on: bad input (:class:`InputError`) and a full disk
(:class:`DiskFullError`). Each says in one line which file and what is wrong."""

from __future__ import annotations

import errno
import os
from os import PathLike

DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})  # no space left; quota exceeded


class InputError(ValueError):
    """Bad input data. ``str(err)`` is one line: ``<path>: <problem>``."""

    def __init__(self, path: str | PathLike | None, problem: str):
        self.path = None if path is None else str(path)
        self.problem = " ".join(str(problem).split())  # always one line
        super().__init__(self.problem if self.path is None else f"{self.path}: {self.problem}")

    def __reduce__(self):  # pickles (a worker process's error reaches the parent intact)
        return type(self), (self.path, self.problem)


class DiskFullError(OSError):
    """The disk (or the user's quota) filled up while writing ``path``; nothing was replaced.

    An :class:`OSError` with the original ``errno`` (ENOSPC or EDQUOT) and ``filename``
    ``path``, so ``except OSError`` still catches it. ``str(err)`` is one line:
    ``<path>: disk full (<strerror>) while writing it; <kept>; free some space and run again``,
    where ``kept`` says what was left as it was (by default the previous file of that name).
    """

    def __init__(self, path: str | PathLike, code: int = errno.ENOSPC, kept: str | None = None):
        super().__init__(code, os.strerror(code), str(path))
        self.path = str(path)
        self.kept = kept or (f"nothing was replaced: the previous {os.path.basename(self.path)}"
                             " (if any) is as it was")

    def __str__(self) -> str:
        return (f"{self.path}: disk full ({self.strerror}) while writing it; {self.kept}; "
                "free some space and run again")

    def __reduce__(self):
        return type(self), (self.path, self.errno, self.kept)
