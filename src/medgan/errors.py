"""One exception type for bad input: it names the file and what is wrong with it."""

from __future__ import annotations

from os import PathLike


class InputError(ValueError):
    """Bad input data. ``str(err)`` is one line: ``<path>: <problem>``."""

    def __init__(self, path: str | PathLike | None, problem: str):
        self.path = None if path is None else str(path)
        self.problem = " ".join(str(problem).split())  # always one line
        super().__init__(self.problem if self.path is None else f"{self.path}: {self.problem}")

    def __reduce__(self):  # pickles (a worker process's error reaches the parent intact)
        return type(self), (self.path, self.problem)
