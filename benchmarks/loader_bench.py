"""Images/s of the trainer's reader of a memory-mapped dataset, cold and warm.

    nice -n 10 python benchmarks/loader_bench.py --gb 10 --batches 500

Writes (or, with ``--path`` to an existing file, reuses) a prepared-dataset-like ``images.npy``:
float32 images of 1 x 128 x 128 px, ``--gb`` GB (10^9 bytes) of them, written in chunks (never
held in memory) and synced to disk. Then reads ``--batches`` random batches of ``--batch``
through the trainer's reader (:class:`medgan.training.data.RealBatches` on an
:class:`~medgan.training.data.EpochSampler`, the memory-map path of any set over
``PRELOAD_BYTES``), both synchronously and read one batch ahead, and prints images/s and the
ratio to the 20,000 img/s that 64 px DCGAN training at its target speed consumes:

* cold: the file's pages dropped from the page cache first (``posix_fadvise(DONTNEED)``, after
  unmapping it; ``fincore`` shows what stayed cached) so that every batch comes from the disk;
* disk: the disk's own pace, cold, for comparison: random image-sized ``os.pread`` calls from
  16 threads;
* warm: after one sequential read of the whole file (its GB/s is printed), from the page cache
  (``fincore`` shows how much of the file the cache held).

``--step-ms`` adds a pause after each batch that stands in for the GPU's training step (a
64 px DCGAN step at 20,000 img/s takes 3.2 ms per batch of 64): the read-ahead reader reads
during it, the synchronous one cannot; images/s then cannot pass 64 / step (20,000 at 3.2 ms),
and reaching it means the reader kept up. "waited" is the time per batch spent in ``next()``, the
time a GPU would wait for data; "cpu_ms" the CPU time per batch of this process (all its
threads; on a busy machine the wall times include waiting for a core). "ahead" counts the
batches that came read ahead. Each cold run draws other indices (another seed). A file the
benchmark wrote is deleted at the end unless ``--keep``; a reused one is never deleted. Nothing
here is timed by a test; run it by hand and read the table.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import medgan.training.data as training_data
from medgan.training.data import EpochSampler, RealBatches

TARGET = 20_000  # img/s: the 64 px DCGAN goal
CHUNK_BYTES = 256 << 20


def write_images(path: Path, *, gb: float, resolution: int, seed: int = 0) -> int:
    """Write ``gb`` GB of random float32 (n, 1, r, r) images to the .npy ``path`` in chunks,
    fsync it; returns n."""
    row = resolution * resolution * 4
    n = int(gb * 1e9) // row
    per_chunk = max(1, CHUNK_BYTES // row)
    rng = np.random.default_rng(seed)
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "wb") as f:
        np.lib.format.write_array_header_2_0(
            f, {"descr": "<f4", "fortran_order": False, "shape": (n, 1, resolution, resolution)})
        for start in range(0, n, per_chunk):
            k = min(per_chunk, n - start)
            f.write(rng.random((k, 1, resolution, resolution), dtype=np.float32).tobytes())
        f.flush()
        os.fsync(f.fileno())
    tmp.rename(path)
    return n


def resident(path: Path) -> str:
    """How much of ``path`` the page cache holds (``fincore``), or why that is unknown."""
    if shutil.which("fincore") is None:
        return "unknown (no fincore)"
    out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES,SIZE",
                          str(path)], capture_output=True, text=True)
    try:
        res, size = (int(v) for v in out.stdout.split())
    except ValueError:
        return f"unknown (fincore: {out.stderr.strip() or out.stdout.strip()})"
    return f"{res / 1e9:.2f} of {size / 1e9:.2f} GB ({100 * res / size:.0f} %)"


def drop_cache(path: Path) -> str:
    """Drop ``path``'s pages from the page cache (it must not be mapped); what happened."""
    if not hasattr(os, "posix_fadvise"):
        return "could not drop the page cache (no posix_fadvise here): cold = as found"
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    except OSError as err:
        return f"could not drop the page cache ({err}): cold = as found"
    finally:
        os.close(fd)
    return f"page cache dropped; cached now: {resident(path)}"


def warm_up(path: Path) -> float:
    """Read ``path`` sequentially once (into the page cache); returns GB/s."""
    buf = bytearray(64 << 20)
    start, total = time.perf_counter(), 0
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            total += n
    return total / 1e9 / (time.perf_counter() - start)


def disk_reads(path: Path, *, row: int, reads: int = 6400, threads: int = 16) -> float:
    """The disk's own pace: random ``row``-byte preads/s of ``path`` by ``threads`` threads,
    page cache dropped first (what any reader of random rows can at most get, cold)."""
    from concurrent.futures import ThreadPoolExecutor

    drop_cache(path)
    n = (path.stat().st_size - row) // row
    offsets = np.random.default_rng(0).choice(n, min(reads, n), replace=False) * row
    fd = os.open(path, os.O_RDONLY)
    try:
        start = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda off: os.pread(fd, row, int(off)), offsets))
        return len(offsets) / (time.perf_counter() - start)
    finally:
        os.close(fd)


def read_batches(path: Path, *, read_ahead: bool, batches: int, batch: int, seed: int,
                 step_s: float, device: torch.device) -> dict[str, float]:
    """Images/s and ms waited per batch for ``batches`` random batches through RealBatches."""
    images = np.load(path, mmap_mode="r")
    sampler = EpochSampler(images.shape[0], batch, torch.Generator().manual_seed(seed))
    waited = 0.0
    with RealBatches(images, None, sampler, device, {}, read_ahead=read_ahead) as reader:
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(batches):
            t0 = time.perf_counter()
            x = reader.next(batch)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            waited += time.perf_counter() - t0
            if step_s:
                time.sleep(step_s)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        assert x.shape == (batch, *images.shape[1:])
        hits = reader.read.worker.hits if read_ahead else 0
    del images, reader, x
    gc.collect()  # unmap the file, or its pages cannot be dropped
    return {"img_s": batches * batch / seconds, "wait_ms": 1e3 * waited / batches,
            "cpu_ms": 1e3 * cpu / batches, "hits": hits}


def _row(mode: str, cache: str, step_ms: float, r: dict[str, float]) -> str:
    return (f"{mode:<11}{cache:<6}{step_ms:>8.1f}{r['img_s']:>11.0f}{r['img_s'] / TARGET:>9.2f}"
            f"{r['wait_ms']:>10.2f}{r['cpu_ms']:>8.2f}{r['hits']:>7}")


def run(path: Path, args: argparse.Namespace, device: torch.device) -> None:
    n, *shape = np.load(path, mmap_mode="r").shape
    shape = "x".join(map(str, shape))
    print(f"{path}: {n} images of {shape} float32 "
          f"({path.stat().st_size / 1e9:.2f} GB); {args.batches} batches of {args.batch}; "
          f"device {device}; torch threads {torch.get_num_threads()}")
    header = (f"{'reader':<11}{'cache':<6}{'step_ms':>8}{'images/s':>11}{'/ 20k':>9}"
              f"{'waited_ms':>10}{'cpu_ms':>8}{'ahead':>7}")
    row = path.stat().st_size // n
    print(f"disk, cold: {disk_reads(path, row=row):.0f} random {row // 1024} KiB reads/s "
          "(16 threads, os.pread)")
    rows, seed = [], 1
    for cache in ("cold", "warm"):
        if cache == "warm":
            print(f"warm-up: sequential read {warm_up(path):.2f} GB/s; cached: {resident(path)}")
        for step_ms in args.step_ms:
            for read_ahead in (False, True):
                if cache == "cold":
                    print(drop_cache(path))
                r = read_batches(path, read_ahead=read_ahead, batches=args.batches,
                                 batch=args.batch, seed=seed, step_s=step_ms / 1e3,
                                 device=device)
                seed += 1
                rows.append(_row("read-ahead" if read_ahead else "sync", cache, step_ms, r))
                print(rows[-1], flush=True)
    print("\n" + header + "\n" + "\n".join(rows))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--path", type=Path, help="an images.npy to reuse (or where to write one)")
    p.add_argument("--gb", type=float, default=10.0, help="size of the file written (10^9 B)")
    p.add_argument("--resolution", type=int, default=128)
    p.add_argument("--batches", type=int, default=500)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--step-ms", type=float, nargs="+", default=[0.0, 3.2],
                   help="a pause per batch standing in for the training step")
    p.add_argument("--device", default="cpu", help="cpu or cuda (pinned memory on cuda)")
    p.add_argument("--keep", action="store_true", help="keep the file the benchmark wrote")
    args = p.parse_args(argv)
    training_data.PRELOAD_BYTES = 0  # the memory-map path also for a file under 1 GiB
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    path, created, tmp_dir = args.path, False, None
    if path is None:
        tmp_dir = Path(tempfile.mkdtemp(prefix="loader_bench_"))
        path = tmp_dir / "images.npy"
    try:
        if not path.exists():
            start = time.perf_counter()
            created = True
            write_images(path, gb=args.gb, resolution=args.resolution)
            print(f"wrote {path} in {time.perf_counter() - start:.0f} s")
        run(path, args, torch.device(args.device))
    finally:
        if created and not args.keep:
            path.unlink(missing_ok=True)
            path.with_name(path.name + ".partial").unlink(missing_ok=True)
            if tmp_dir is not None:
                shutil.rmtree(tmp_dir, ignore_errors=True)
            print(f"deleted {path}")
        print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
