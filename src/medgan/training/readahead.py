"""Batches of a memory-mapped dataset, read one batch ahead on a background thread.

:class:`MemmapBatches` reads the rows of a batch from the memory map into host memory (pinned
when the device is CUDA) and copies them to the device without blocking the host. With
``read_ahead`` a :class:`ReadAhead` thread reads the *next* batch while the trainer works on this
one: right after the sampler draws batch ``t``, the caller names the indices of batch ``t + 1``,
computed without moving the sampler (:meth:`~medgan.training.data.EpochSampler.peek`).

A batch read ahead is only a cache of "these indices -> these rows": it is used when its indices
equal the ones the sampler then really draws, and dropped otherwise (a new batch size at a
progressive stage change, a sampler that drew differently), the batch then read at once. The
sampler alone decides the order, and its checkpointed state is the state after the last batch
the trainer took, so batches, order and a resume are exactly those of reading synchronously.

Before copying a batch, the reader asks the kernel to start reading all of its rows
(``madvise(MADV_WILLNEED)``, Linux): the disk then serves the batch's rows in parallel instead of
one page fault at a time. ``benchmarks/loader_bench.py`` measures the reader, cold and warm.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import mmap
import queue
import threading
from concurrent.futures import Future

import numpy as np
import torch

log = logging.getLogger(__name__)

JOIN_TIMEOUT_S = 30.0  # close(): how long to wait for a read in flight (the thread is a daemon)


def _libc_madvise():
    """libc's ``madvise`` (None where there is none: then no read hints are given)."""
    if not hasattr(mmap, "MADV_WILLNEED"):
        return None
    try:
        fn = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


_MADVISE = _libc_madvise()


def hint_rows(images: np.ndarray, ix: np.ndarray) -> bool:
    """Ask the kernel to start reading rows ``ix`` of the C-contiguous ``images`` (a memory map)
    into the page cache; returns False where no hint could be given. Only a hint: the values read
    afterwards are the same either way."""
    if _MADVISE is None or not images.flags.c_contiguous or images.size == 0:
        return False
    base, row = images.__array_interface__["data"][0], images.strides[0]
    page = mmap.PAGESIZE
    for i in np.unique(ix):
        start = base + int(i) * row
        aligned = start - start % page
        if _MADVISE(aligned, start + row - aligned, mmap.MADV_WILLNEED) != 0:
            return False  # e.g. memory that is no mapping: stop hinting this batch
    return True


class ReadAhead:
    """One daemon thread that runs ``read(idx)`` for the batch after the current one.

    :meth:`prefetch` queues the read of ``idx``; :meth:`get` returns the batch of ``idx``: the one
    read ahead if it was of exactly these indices, else (it is dropped) one read now. A read's
    error is raised by the :meth:`get` that takes it. :meth:`close` stops the thread. ``hits``
    and ``misses`` count the batches that were and were not read ahead.
    """

    def __init__(self, read, name: str = "medgan-read-ahead"):
        self._read, self._name = read, name
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._ahead: tuple[torch.Tensor, Future] | None = None
        self._thread: threading.Thread | None = None  # started by the first prefetch
        self._closed = False
        self.hits = self.misses = 0

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            idx, future = job
            if not future.set_running_or_notify_cancel():
                continue  # dropped before it started
            try:
                future.set_result(self._read(idx))
            except BaseException as err:  # noqa: BLE001 - handed to the get() that takes it
                future.set_exception(err)

    def prefetch(self, idx: torch.Tensor) -> None:
        """Start reading the batch of ``idx`` (replacing any batch read ahead before)."""
        if self._closed:
            return
        self._drop()
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name=self._name, daemon=True)
            self._thread.start()
        future: Future = Future()
        self._ahead = (idx.clone(), future)
        self._jobs.put((idx, future))

    def get(self, idx: torch.Tensor) -> torch.Tensor:
        """The batch of ``idx``: read ahead if it was of these indices, else read now."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            if torch.equal(ahead[0], idx):  # False for a different batch size
                self.hits += 1
                return ahead[1].result()
            ahead[1].cancel()
        self.misses += 1
        return self._read(idx)

    def _drop(self) -> None:
        if self._ahead is not None:
            self._ahead[1].cancel()
            self._ahead = None

    def close(self) -> None:
        """Drop the batch read ahead and stop the thread (waits for a read in flight)."""
        if self._closed:
            return
        self._closed = True
        self._drop()
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join(JOIN_TIMEOUT_S)
            if self._thread.is_alive():
                log.warning("%s: a read did not end within %.0f s; leaving the daemon thread",
                            self._name, JOIN_TIMEOUT_S)


class MemmapBatches:
    """Index -> batch on ``device`` from the memory-mapped ``images`` (rows ``rows`` of it; None:
    all), read one batch ahead when ``read_ahead`` (see the module text). ``pin``: read into
    pinned host memory (default: when ``device`` is CUDA and CUDA is available); ``hint``: ask
    the kernel for a batch's rows before copying them (:func:`hint_rows`)."""

    def __init__(self, images: np.ndarray, rows: np.ndarray | None, device: torch.device, *,
                 read_ahead: bool = True, pin: bool | None = None, hint: bool = True):
        self.images, self.rows, self.device = images, rows, torch.device(device)
        self.hint = hint
        self.pin = (self.device.type == "cuda" and torch.cuda.is_available()) if pin is None \
            else pin
        self.worker = ReadAhead(self.host) if read_ahead else None

    def host(self, idx: torch.Tensor) -> torch.Tensor:
        """The rows of ``idx`` in host memory (pinned if :attr:`pin`), float32.

        Copied by numpy's fancy indexing, which releases the GIL while it copies (and waits for
        the disk), so that the trainer's thread runs on; ``np.take(..., out=)`` would copy once
        but holds the GIL throughout."""
        ix = idx.numpy() if self.rows is None else self.rows[idx.numpy()]
        if self.hint:
            hint_rows(self.images, ix)
        batch = np.asarray(self.images[ix], dtype=np.float32)
        if not self.pin:
            return torch.from_numpy(batch)
        out = torch.empty(batch.shape, dtype=torch.float32, pin_memory=True)
        out.numpy()[...] = batch  # a second copy, into memory the GPU copies from directly
        return out

    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        batch = self.host(idx) if self.worker is None else self.worker.get(idx)
        return batch.to(self.device, non_blocking=self.pin)

    def ahead(self, idx: torch.Tensor) -> None:
        """The indices of the batch that the next call will most likely ask for."""
        if self.worker is not None:
            self.worker.prefetch(idx)

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close()
