"""The prepared-dataset format every trainer reads (DESIGN.md, stage 2).

A prepared dataset is a directory holding

* ``images.npy``: ``(N, C, H, W)`` float32, a plain ``.npy`` file that memory-maps;
* ``meta.tsv``: one row per image (subject, source file, slice, ...);
* ``dataset.json``: channel names, value range, resolution, provenance.

:class:`PreparedDatasetWriter` writes it incrementally, so memory stays bounded by what one
``append`` call holds, not by the dataset; :func:`load_prepared` reads it back and selects
channels by name (e.g. one MRI sequence, or all four for Han 2018's "Concat").
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medgan import __version__
from medgan.atomic import atomic_path, disk_full_reported, json_text
from medgan.errors import InputError

IMAGES = "images.npy"
META = "meta.tsv"
INFO = "dataset.json"

_HEADER_LEN = 128  # fixed .npy header size, so the shape can be rewritten in place at the end


def _npy_header(shape: tuple[int, ...]) -> bytes:
    body = "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }" % (
        ", ".join(str(int(s)) for s in shape) + ("," if len(shape) == 1 else "")
    )
    pad = _HEADER_LEN - 10 - len(body) - 1
    if pad < 0:
        raise ValueError(f"shape {shape} too large for the reserved .npy header")
    text = body + " " * pad + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode("latin1")


class PreparedDatasetWriter:
    """Write a prepared dataset one batch of images at a time.

    Use as a context manager; nothing appears under the final names unless the block
    completes and at least one image was written::

        with PreparedDatasetWriter(out, channels=["T1", "T2"], resolution=64) as w:
            w.append(images, [{"subject": "s1", "slice": 80}, ...])
            w.info["source"] = "BraTS 2020"
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        *,
        channels: list[str],
        resolution: int | list[int],
        info: dict[str, Any] | None = None,
    ):
        self.out_dir = Path(out_dir)
        self.channels = list(channels)
        self.resolution = resolution
        self.info: dict[str, Any] = dict(info or {})
        self._rows: list[dict[str, Any]] = []
        self._n = 0
        self._hw: tuple[int, int] | None = None
        self._min = np.full(len(self.channels), np.inf)
        self._max = np.full(len(self.channels), -np.inf)
        self._sum = np.zeros(len(self.channels))
        self._sumsq = np.zeros(len(self.channels))
        self._fh = None
        self._tmp_images: Path | None = None

    def __enter__(self) -> PreparedDatasetWriter:
        try:
            with self._disk_full_reported(IMAGES):
                self.out_dir.mkdir(parents=True, exist_ok=True)
                self._tmp_images = self.out_dir / f".{IMAGES}.{os.getpid()}.tmp"
                self._fh = open(self._tmp_images, "wb")  # noqa: SIM115 - closed in __exit__
                self._fh.write(_npy_header((0, len(self.channels), 0, 0)))
        except BaseException:
            self._discard()
            raise
        return self

    def _disk_full_reported(self, name: str) -> contextlib.AbstractContextManager:
        """A full disk while writing ``name`` -> :class:`~medgan.errors.DiskFullError` saying
        that the previous dataset (if any) is as it was."""
        return disk_full_reported(self.out_dir / name, kept=(
            f"nothing was replaced: the previous {IMAGES}, {META} and {INFO} of "
            f"{self.out_dir} (if any) are as they were"))

    def append(self, images: np.ndarray, rows: list[dict[str, Any]]) -> None:
        """Append ``images`` (n, C, H, W) and their ``rows`` of metadata."""
        images = np.asarray(images, dtype=np.float32)
        if images.ndim != 4 or images.shape[1] != len(self.channels):
            raise ValueError(f"expected (n, {len(self.channels)}, H, W) images, got {images.shape}")
        if len(rows) != images.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {len(rows)} metadata rows")
        if self._hw is None:
            self._hw = images.shape[2:]
        elif images.shape[2:] != self._hw:
            raise ValueError(f"image size {images.shape[2:]} differs from earlier {self._hw}")
        if not np.all(np.isfinite(images)):
            raise ValueError("images contain NaN or infinite values")
        if images.shape[0] == 0:
            return
        with self._disk_full_reported(IMAGES):
            self._fh.write(np.ascontiguousarray(images).tobytes())
        flat = images.transpose(1, 0, 2, 3).reshape(len(self.channels), -1).astype(np.float64)
        self._min = np.minimum(self._min, flat.min(axis=1))
        self._max = np.maximum(self._max, flat.max(axis=1))
        self._sum += flat.sum(axis=1)
        self._sumsq += (flat**2).sum(axis=1)
        self._rows.extend(dict(r) for r in rows)
        self._n += images.shape[0]

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self._finish()
        finally:
            self._discard()

    def _discard(self) -> None:
        """Close and remove the temporary images file (gone already once it is in place)."""
        if self._fh is not None and not self._fh.closed:
            with contextlib.suppress(OSError):  # a full disk fails the last flush again
                self._fh.close()
        if self._tmp_images is not None and self._tmp_images.exists():
            self._tmp_images.unlink()

    def _finish(self) -> None:
        """Complete images.npy, write meta.tsv and dataset.json beside it, then put all three
        in place: every byte is written before the first rename, so a full disk (or any error)
        leaves a previous dataset in ``out_dir`` as it was."""
        if self._n == 0:
            raise ValueError(f"no images were written to {self.out_dir}")
        h, w = self._hw
        with self._disk_full_reported(IMAGES):
            self._fh.seek(0)
            self._fh.write(_npy_header((self._n, len(self.channels), h, w)))
            self._fh.close()
        count = self._n * h * w
        mean = self._sum / count
        std = np.sqrt(np.maximum(self._sumsq / count - mean**2, 0.0))
        info = {
            "channels": self.channels,
            "n_images": self._n,
            "shape": [self._n, len(self.channels), h, w],
            "resolution": self.resolution,
            "value_range": [float(self._min.min()), float(self._max.max())],
            "channel_stats": {
                c: {
                    "min": float(self._min[i]),
                    "max": float(self._max[i]),
                    "mean": float(mean[i]),
                    "std": float(std[i]),
                }
                for i, c in enumerate(self.channels)
            },
            "medgan_version": __version__,
            **self.info,
        }
        with atomic_path(self.out_dir / INFO) as js, atomic_path(self.out_dir / META) as meta:
            with self._disk_full_reported(META):
                _write_tsv(meta, self._rows)
            with self._disk_full_reported(INFO):
                js.write_text(json_text(info))
        # leaving the block renamed meta.tsv, then dataset.json, into place; images.npy last
        os.replace(self._tmp_images, self.out_dir / IMAGES)


def _write_tsv(path: Path, rows: list[dict[str, Any]]) -> None:
    columns: list[str] = []
    for r in rows:
        columns.extend(k for k in r if k not in columns)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(
            fh, fieldnames=columns, delimiter="\t", lineterminator="\n", restval=""
        )
        writer.writeheader()
        writer.writerows(rows)


@dataclass
class PreparedDataset:
    """A prepared dataset in memory (``images`` may be a read-only memory map)."""

    images: np.ndarray
    meta: Any  # pandas.DataFrame
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def channels(self) -> list[str]:
        return list(self.info["channels"])


def load_prepared(
    path: str | os.PathLike, *, channels: list[str] | None = None, mmap: bool = True
) -> PreparedDataset:
    """Read a prepared dataset; ``channels`` selects (and orders) channels by name."""
    import pandas as pd

    path = Path(path)
    for name in (IMAGES, META, INFO):
        if not (path / name).is_file():
            raise InputError(path / name, "missing: not a prepared dataset directory")
    try:
        info = json.loads((path / INFO).read_text())
    except json.JSONDecodeError as err:
        raise InputError(path / INFO, f"not valid JSON ({err})") from err
    try:
        images = np.load(path / IMAGES, mmap_mode="r" if mmap else None)
    except (ValueError, OSError) as err:
        raise InputError(path / IMAGES, f"not a readable .npy array ({err})") from err
    meta = pd.read_csv(path / META, sep="\t")
    if images.ndim != 4 or images.dtype != np.float32:
        raise InputError(
            path / IMAGES, f"expected (N, C, H, W) float32, got {images.shape} {images.dtype}"
        )
    if images.shape[1] != len(info.get("channels", [])):
        raise InputError(
            path / INFO,
            f"lists {len(info.get('channels', []))} channels but images.npy has {images.shape[1]}",
        )
    if len(meta) != images.shape[0]:
        raise InputError(
            path / META, f"has {len(meta)} rows but images.npy has {images.shape[0]} images"
        )
    if channels is not None:
        missing = [c for c in channels if c not in info["channels"]]
        if missing:
            raise InputError(path / INFO, f"has no channel(s) {missing}; it has {info['channels']}")
        idx = [info["channels"].index(c) for c in channels]
        if idx != list(range(images.shape[1])):
            images = images[:, idx]
        info = {**info, "channels": list(channels)}
    return PreparedDataset(images=images, meta=meta, info=info)
