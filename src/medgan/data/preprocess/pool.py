"""Preparing a dataset subject by subject: a pool of worker processes, one writer, subject order.

:func:`write_subjects` is the loop every ``prepare_*`` shares: ``prepare_one(item)`` gives one
subject's ``(images, rows)``; the results are appended to one
:class:`~medgan.data.prepared.PreparedDatasetWriter` in the order of ``items`` whatever the
number of ``workers``, so ``images.npy``, ``meta.tsv`` and ``dataset.json`` are byte-identical
to a serial run's. The subjects are prepared by ``workers`` processes (:func:`ordered_map`;
each single-threaded, keeping its freed memory for the next subject, at most ``2 * workers``
results waiting) while this process writes, so memory is bounded by a few subjects per
worker, never by the dataset.

Bad input (:class:`~medgan.errors.InputError`) in one subject stops the whole preparation and
nothing is written (``on_bad_case="stop"``, the default), or, with ``on_bad_case="skip"``, the
subject is left out and listed in dataset.json's ``skipped_cases`` with the reason.
"""

from __future__ import annotations

import collections
import ctypes
import functools
import itertools
import json
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medgan.data.prepared import INFO, PreparedDatasetWriter
from medgan.errors import InputError

ON_BAD_CASE = ("stop", "skip")


@dataclass(frozen=True)
class Skipped:
    """A subject left out (``on_bad_case="skip"``): the one-line reason."""

    reason: str


def _guarded(prepare_one: Callable[[Any], Any], skip: bool, item: Any) -> Any:
    """``prepare_one(item)``, or :class:`Skipped` for bad input when ``skip``."""
    try:
        return prepare_one(item)
    except InputError as err:
        if not skip:
            raise
        return Skipped(str(err))


def ordered_map(fn: Callable[[Any], Any], items: Sequence[Any], *,
                workers: int = 1) -> Iterator[Any]:
    """``fn(item)`` for each item, yielded in the order of ``items``.

    One item (or ``workers < 1``): in this process, with one BLAS thread. Otherwise a pool
    of ``workers`` processes (one is a pool too: this process is then free to write, and
    stays as it was), forked (a Snakemake script is a ``__main__`` that a spawned process
    would run again), each with one BLAS thread (the pool is the parallelism) and glibc told
    to keep freed memory (:func:`keep_freed_memory`); the processes start together at the
    first item, before the caller starts any thread (e.g. a progress bar). At most
    ``2 * workers`` items are in flight, so results do not pile up behind a slow subject.
    The first exception stops the pool and propagates.
    """
    if workers < 1 or len(items) <= 1:
        yield from _in_this_process(fn, items, max(1, workers))
        return
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with ProcessPoolExecutor(max_workers=min(workers, len(items)),
                             mp_context=multiprocessing.get_context(method),
                             initializer=_start_worker) as pool:
        pending: collections.deque = collections.deque()
        todo = iter(items)
        try:
            for item in itertools.islice(todo, 2 * workers):
                pending.append(pool.submit(fn, item))
            while pending:
                result = pending.popleft().result()
                for item in itertools.islice(todo, 1):
                    pending.append(pool.submit(fn, item))
                yield result
        finally:
            for future in pending:
                future.cancel()


def _in_this_process(fn: Callable[[Any], Any], items: Sequence[Any],
                     threads: int) -> Iterator[Any]:
    """``fn(item)`` for each item in this process, each call with at most ``threads`` BLAS
    threads (a job given one core does not spread numpy over every core of the node); the
    limit is lifted between calls, while the caller writes."""
    from threadpoolctl import threadpool_limits

    for item in items:
        with threadpool_limits(limits=threads):
            result = fn(item)
        yield result


def _start_worker() -> None:
    from threadpoolctl import threadpool_limits

    global _LIMITS
    _LIMITS = threadpool_limits(limits=1)  # kept for the worker's life
    keep_freed_memory()


_LIMITS: Any = None
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3  # glibc's mallopt parameters


def keep_freed_memory(limit: int = 1 << 30) -> bool:
    """Tell glibc's malloc to serve arrays up to ``limit`` bytes from the heap and keep freed
    memory there; False where there is no glibc (nothing changed).

    By default glibc gives every allocation above 32 MiB (a BraTS volume in float32 is 36 MB)
    fresh pages of its own and returns them when it is freed, so each volume, copy and
    temporary of every subject is page-faulted and zeroed by the kernel anew: about a third of
    preparing a subject (``benchmarks/prepare_brats_bench.py``). With this, a worker's heap
    stays at its high-water mark - one subject's working set, measured as the workers' RSS -
    and the next subject reuses it. It changes the whole process for good: the pool's
    workers call it, this process does not.
    """
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return all(mallopt(param, value) == 1 for param, value in (
        (_M_MMAP_THRESHOLD, limit), (_M_TRIM_THRESHOLD, limit), (_M_TOP_PAD, 64 << 20)))


def check_provenance(info: dict[str, Any], provenance: dict[str, Any] | None,
                     reserved: Iterable[str]) -> dict[str, Any]:
    """``info`` updated with ``provenance``; ValueError if a key would overwrite one of
    ``info``'s own or a ``reserved`` one (the writer's)."""
    clash = sorted(set(provenance or {}) & (set(info) | set(reserved)))
    if clash:
        raise ValueError(f"provenance key(s) {clash} would overwrite dataset.json's own")
    return {**info, **(provenance or {})}


@dataclass
class Progress:
    """What :func:`write_subjects` saw: per-subject results, for a ``finish`` callback."""

    n_images: int = 0
    with_images: list[str] = field(default_factory=list)
    without_images: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)


def write_subjects(out_dir: str | os.PathLike, items: Sequence[Any],
                   prepare_one: Callable[[Any], tuple[Any, list[dict[str, Any]]]], *,
                   channels: list[str], resolution: Any, info: dict[str, Any],
                   names: Sequence[str], sources: Sequence[str | os.PathLike] | None = None,
                   workers: int = 0, on_bad_case: str = "stop", desc: str = "prepare",
                   finish: Callable[[Progress, dict[str, Any]], None] | None = None
                   ) -> dict[str, Any]:
    """Prepare every item and write the dataset to ``out_dir``; return dataset.json's content.

    ``workers``: the pool's processes (:func:`ordered_map`; ``prepare_one`` must then pickle);
    0, the default: every item in this process (a ``prepare_one`` that holds state, such as
    prepare_fundus's U-net and its counts). ``names[i]`` is item i's subject id (for
    ``skipped_cases``), ``sources[i]`` the file or folder an error of its images names.
    ``finish(progress, writer_info)`` runs after the last subject, before anything is
    written: it may raise (e.g. "no slice selected") or add keys to dataset.json. A failure
    leaves nothing under the output names and removes ``out_dir`` if this call created it
    and it is empty.
    """
    from tqdm import tqdm

    if on_bad_case not in ON_BAD_CASE:
        raise ValueError(f"on_bad_case must be one of {ON_BAD_CASE}, got {on_bad_case!r}")
    out_dir = Path(out_dir)
    sources = list(sources) if sources is not None else list(names)
    fn = functools.partial(_guarded, prepare_one, on_bad_case == "skip")
    created = not out_dir.exists()
    progress = Progress()
    try:
        with PreparedDatasetWriter(out_dir, channels=channels, resolution=resolution,
                                   info=info) as writer:
            bar = None  # made after the first result: the pool forks before its thread starts
            for k, result in enumerate(ordered_map(fn, items, workers=workers)):
                bar = bar or tqdm(total=len(items), desc=desc, unit="subject", disable=None)
                _append(writer, progress, result, names[k], sources[k], on_bad_case)
                bar.update()
            if bar is not None:
                bar.close()
            if on_bad_case == "skip":
                writer.info["skipped_cases"] = progress.skipped
            if finish is not None:
                finish(progress, writer.info)
    except BaseException:
        if created and out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()
        raise
    return json.loads((out_dir / INFO).read_text())


def _append(writer: PreparedDatasetWriter, progress: Progress, result: Any, name: str,
            source: str | os.PathLike, on_bad_case: str) -> None:
    if isinstance(result, Skipped):
        progress.skipped.append({"subject": name, "reason": result.reason})
        return
    images, rows = result
    try:
        writer.append(images, rows)
    except ValueError as err:
        if on_bad_case == "stop":
            raise InputError(source, str(err)) from err
        progress.skipped.append({"subject": name, "reason": f"{source}: {err}"})
        return
    progress.n_images += len(rows)
    (progress.with_images if rows else progress.without_images).append(name)

