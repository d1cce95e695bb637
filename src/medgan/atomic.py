"""Atomic writes: a file appears under its final name only once it is complete.

A full disk (ENOSPC, or EDQUOT: the quota) while writing is reported as a
:class:`~medgan.errors.DiskFullError` naming the final path (:func:`disk_full_reported`), and
the previous file of that name is left as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medgan.errors import DISK_FULL_ERRNOS, DiskFullError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` when the block succeeds.

    On an exception the temporary file is removed and ``path`` is left untouched; a full disk
    is raised as :class:`~medgan.errors.DiskFullError` naming ``path``.
    ``suffix`` defaults to the final name's suffixes so that libraries that look at the
    extension (``.nii.gz``, ``.png``, ``.npy``) write the right format.
    """
    path = Path(path)
    if suffix is None:
        suffix = "".join(path.suffixes)
    with disk_full_reported(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}",
                                   dir=path.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        try:
            yield tmp_path
            os.replace(tmp_path, path)
        except BaseException:
            tmp_path.unlink(missing_ok=True)
            raise


@contextlib.contextmanager
def disk_full_reported(path: str | os.PathLike, *, kept: str | None = None) -> Iterator[None]:
    """Raise an ``OSError`` of a full disk (ENOSPC, EDQUOT) inside the block as a
    :class:`~medgan.errors.DiskFullError` naming ``path`` (``kept``: what the writer left as it
    was; default the previous file of that name); one already named passes unchanged. So does
    an error raised while handling one (``torch.save`` fails to finish its file after a write
    failed): the full disk is what the user can act on."""
    try:
        yield
    except DiskFullError:
        raise
    except Exception as err:
        full = _disk_full_in(err)
        if full is None:
            raise
        if isinstance(full, DiskFullError):
            raise full from err
        raise DiskFullError(path, full.errno, kept) from err


def _disk_full_in(err: BaseException) -> OSError | None:
    """The full-disk ``OSError`` that ``err`` is, or was raised while handling, if any."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, OSError) and err.errno in DISK_FULL_ERRNOS:
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; move it to ``path`` when the block succeeds.

    An existing ``path`` is replaced only after the new content is complete.
    """
    path = Path(path)
    with disk_full_reported(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        try:
            yield tmp
            if path.exists():
                shutil.rmtree(path)
            os.replace(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json_text(obj))


def json_text(obj: Any) -> str:
    """``obj`` as the indented JSON (and final newline) that :func:`write_json` writes."""
    return json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n"


def write_tsv(path: str | os.PathLike, table: Any, *, float_format: str | None = None) -> None:
    """Write a pandas DataFrame as a tab-separated table without its index, atomically."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format=float_format)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text``, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def copy_file(source: str | os.PathLike, path: str | os.PathLike) -> None:
    """Copy the file ``source`` to ``path``, atomically."""
    with atomic_path(path) as tmp:
        shutil.copyfile(source, tmp)


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
