"""Checkpoint files: plain dicts written atomically with ``torch.save``, read weights-only.

Below every stage, so that a model outside training (the vessel U-net of :mod:`medgan.data`)
stores its weights the same way; :mod:`medgan.training.checkpoint` adds what a GAN checkpoint
holds (RNG states, resuming). :func:`load_checkpoint` reads with ``weights_only=True``, so a file
holding arbitrary Python objects is refused with an :class:`~medgan.errors.InputError` instead of
being executed, and a truncated or corrupt file is refused with one naming it.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any

import torch

from medgan.atomic import atomic_path
from medgan.errors import InputError


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (recorded beside results derived from a checkpoint)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_checkpoint(path: str | os.PathLike, checkpoint: dict[str, Any], *,
                    previous: str | os.PathLike | None = None) -> None:
    """Write ``checkpoint`` (a plain dict) to ``path`` atomically, on disk before it is renamed
    into place (``fsync``: a crash just after cannot leave a truncated file under ``path``).

    ``previous``: keep the checkpoint now at ``path`` under this name, in place of the one
    there (which is deleted first, freeing its space): two checkpoints on disk, as while
    writing without. A full disk raises :class:`~medgan.errors.DiskFullError` naming ``path``,
    with the checkpoint at ``path`` as it was (and ``previous`` deleted). The bytes depend on
    the content only (``torch.save`` to a file object: not on the temporary file's name).
    """
    if not isinstance(checkpoint, dict):
        raise TypeError(f"a checkpoint is a plain dict, got {type(checkpoint).__name__}")
    path = Path(path)
    if previous is not None:
        Path(previous).unlink(missing_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:  # a file object: a full disk raises OSError(ENOSPC)
            torch.save(checkpoint, fh)
            fh.flush()
            os.fsync(fh.fileno())
        if previous is not None and path.is_file():
            os.replace(path, previous)


def load_checkpoint(path: str | os.PathLike, *, map_location: str | torch.device = "cpu",
                    required: tuple[str, ...] = ()) -> dict[str, Any]:
    """Read a checkpoint dict with ``torch.load(..., weights_only=True)``.

    Raises :class:`InputError` naming ``path`` if the file is missing, is not a torch file
    (e.g. truncated: a copy cut short, a crash of a file system that lost its end),
    holds anything but tensors and plain containers (e.g. a pickled class instance), or lacks
    one of the ``required`` keys.
    """
    if not os.path.isfile(path):
        raise InputError(path, "checkpoint file not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        reason = _unpickler_reason(err)
        if "Unsupported global" in reason:
            raise InputError(path, "refused: the checkpoint holds Python objects other than "
                                   f"tensors and plain containers ({reason})") from err
        raise InputError(path, f"not a readable torch checkpoint ({reason})") from err
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, struct.error) as err:
        raise InputError(path, _unreadable(path, err)) from err
    if not isinstance(ckpt, dict):
        raise InputError(path, f"a checkpoint must be a dict, found {type(ckpt).__name__}")
    missing = [k for k in required if k not in ckpt]
    if missing:
        raise InputError(path, f"checkpoint lacks key(s) {missing}")
    return ckpt


def _unreadable(path: str | os.PathLike, err: Exception) -> str:
    """Why torch cannot read ``path``: its size and the first sentence of torch's error."""
    size = os.path.getsize(path)
    if size == 0:
        return "not a readable torch checkpoint: the file is empty (0 bytes)"
    text = " ".join(str(err).split())
    first = text.split(". ")[0] if text else ""
    return (f"not a readable torch checkpoint: truncated or corrupt ({size} bytes; "
            f"{type(err).__name__}{': ' + first if first else ''})")


def _unpickler_reason(err: Exception) -> str:
    """The informative part of torch's weights-only error, e.g. ``Unsupported global: ...``."""
    text = str(err)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0].split(". Please use")[0] if lines else type(err).__name__
