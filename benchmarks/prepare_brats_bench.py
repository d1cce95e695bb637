"""Time and memory of prepare_brats on BraTS-size phantoms, for several numbers of subjects.

    python benchmarks/prepare_brats_bench.py --subjects 4 8 16 32 64 --workers 1 2

Generates max(N) phantom subjects (BraTS 2017-2021 layout, :func:`make_brats_phantoms`) in
a temporary folder once; each N uses the first N of them. For each N and each number of
workers W (default 1, 2 and every core) it measures

* read: the time to just read a subject's files (nibabel load + ``get_fdata(float32)`` of
  the 4 sequences and the label map), per subject, in a fresh child process as glibc
  starts it; ``read kept``: the same in a child that first calls
  :func:`~medgan.data.preprocess.pool.keep_freed_memory`, as the preparation's workers do
  (without it each 36 MB volume is page-faulted anew);
* prepare: the wall time of :func:`prepare_brats` (``workers=W``) per subject, run in a
  fresh child process; ``prep/read`` is its ratio to read and ``prep/kept`` to read kept
  (with W = 1: the cost of preparing over that of reading), ``speed-up`` one worker's wall
  time over W's;
* peak RSS: the child's resident high-water mark (``VmHWM`` of /proc/self/status) and the
  same less the child's RSS after its imports (what preparing adds). Not ``ru_maxrss``:
  Linux carries a forking parent's high-water mark into it across exec (here the ~1 GB of
  generating the phantoms), so it would show the parent's peak, not prepare_brats';
* worker RSS: the largest high-water mark of the pool's worker processes (W = 1 is a
  pool of one)
  (``ru_maxrss`` of the child's children: forked from the child after its imports, so it
  counts those, and is the memory each worker needs);
* traced peak: with ``--tracemalloc``, the peak of the Python/numpy heap (tracemalloc) in
  a second child run, which is slower and not timed.

Memory must not grow with N: preparing writes one subject at a time and keeps only the
meta rows. Nothing here is timed by a test; run it by hand and read the table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MIB = 1024.0  # /proc/self/status gives kiB


def _prepare_kwargs(args) -> dict:
    return {"resolution": args.resolution, "plane": args.plane,
            "slice_start": args.slice_start, "slice_stop": args.slice_stop,
            "slice_units": "fraction", "label_channels": args.label_channels}


def child_prepare(root: str, out: str, kwargs_json: str, trace: bool) -> None:
    """Run prepare_brats once and print its time and memory as one JSON line."""
    import tracemalloc

    import skimage.transform  # noqa: F401 - imported lazily by prepare_brats; count it in base
    import tqdm  # noqa: F401

    from medgan.data.preprocess.brats import prepare_brats

    base_kib = _proc_status_kib("VmRSS")
    if trace:
        tracemalloc.start()
    start = time.perf_counter()
    info = prepare_brats(root, out, **json.loads(kwargs_json))
    seconds = time.perf_counter() - start
    traced = tracemalloc.get_traced_memory()[1] if trace else None
    workers_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # kiB on Linux
    print(json.dumps({"seconds": seconds, "n_images": info["n_images"],
                      "hwm_kib": _proc_status_kib("VmHWM"), "workers_kib": workers_kib,
                      "base_kib": base_kib, "traced_peak_bytes": traced}))


def _proc_status_kib(field: str) -> int:
    """A memory field (kiB) of /proc/self/status: VmRSS now, VmHWM its peak (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field} (not Linux?)")


def _read_child(root: Path, keep: bool) -> float:
    cmd = [sys.executable, __file__, "--child-read", str(root), "1" if keep else "0"]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])["seconds"]


def _run_child(root: Path, out: Path, kwargs: dict, *, trace: bool) -> dict:
    cmd = [sys.executable, __file__, "--child", str(root), str(out), json.dumps(kwargs)]
    if trace:
        cmd.append("--trace")
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def child_read(root: str, keep: bool) -> None:
    """Print the mean time to read a subject's files under ``root`` as one JSON line."""
    if keep:
        from medgan.data.preprocess.pool import keep_freed_memory

        keep_freed_memory()
    folders = sorted(p for p in Path(root).iterdir() if p.is_dir())
    read_seconds_per_subject(folders[:1])  # imports and first-call costs, not timed
    print(json.dumps({"seconds": read_seconds_per_subject(folders)}))


def read_seconds_per_subject(folders: list[Path]) -> float:
    """Mean time to nibabel-load and get_fdata the 5 files of a subject."""
    import nibabel as nib
    import numpy as np

    start = time.perf_counter()
    for folder in folders:
        for path in sorted(folder.glob("*.nii.gz")):
            data = np.asarray(nib.load(path).get_fdata(dtype=np.float32))
            del data
    return (time.perf_counter() - start) / len(folders)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subjects", type=int, nargs="+", default=[3, 12],
                        help="numbers of subjects to prepare (default 3 12)")
    parser.add_argument("--shape", type=int, nargs=3, default=[240, 240, 155],
                        metavar=("X", "Y", "Z"), help="volume shape (default 240 240 155)")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--plane", default="sagittal")
    parser.add_argument("--slice-start", type=float, default=80 / 240,
                        help="fraction of the axis (default 80/240: Han 2018's #80)")
    parser.add_argument("--slice-stop", type=float, default=150 / 240)
    parser.add_argument("--label-channels", action="store_true",
                        help="also write the three tumour-label channels (Beers 2018)")
    parser.add_argument("--workers", type=int, nargs="+", default=None,
                        help="numbers of pool workers (default 1, 2 and every core)")
    parser.add_argument("--tracemalloc", action="store_true",
                        help="also measure the traced heap peak in a second (untimed) run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--child-read", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child_prepare(*args.child, trace=args.trace)
        return 0
    if args.child_read:
        child_read(args.child_read[0], args.child_read[1] == "1")
        return 0

    from medgan.data.phantoms.brats import make_brats_phantoms

    counts = sorted(set(args.subjects))
    workers = sorted(set(args.workers or [1, 2, os.cpu_count() or 1]))
    if counts[0] < 1 or workers[0] < 1:
        parser.error("--subjects and --workers must be >= 1")
    shape = tuple(args.shape)
    with tempfile.TemporaryDirectory(prefix="prepare_brats_bench.") as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        folders = make_brats_phantoms(tmp / "phantoms", n_subjects=counts[-1], shape=shape,
                                      seed=args.seed)
        generate = (time.perf_counter() - start) / len(folders)
        kwargs = _prepare_kwargs(args)
        print(f"phantoms: {len(folders)} subjects of {shape}, {generate:.2f} s each to "
              f"generate; prepare_brats({', '.join(f'{k}={v!r}' for k, v in kwargs.items())}); "
              f"{os.cpu_count()} cores", flush=True)
        rows = [row for n in counts
                for row in _measure(tmp, folders[:n], kwargs, workers, args.tracemalloc)]
    _print_table(rows)
    return 0


def _measure(tmp: Path, folders: list[Path], kwargs: dict, workers: list[int],
             tracemalloc: bool) -> list[dict]:
    """One row per number of workers for these subjects (the first of ``workers`` is the
    speed-up's reference)."""
    n = len(folders)
    root = tmp / f"root_{n}"
    root.mkdir()
    for folder in folders:
        (root / folder.name).symlink_to(folder, target_is_directory=True)
    read, kept = (_read_child(root, keep) for keep in (False, True))
    rows = []
    for w in workers:
        res = _run_child(root, tmp / f"out_{n}_{w}", {**kwargs, "workers": w}, trace=False)
        traced = None
        if tracemalloc:
            traced = _run_child(root, tmp / f"out_{n}_{w}_traced", {**kwargs, "workers": w},
                                trace=True)["traced_peak_bytes"]
        rows.append({"subjects": n, "workers": w, "images": res["n_images"], "read": read,
                     "kept": kept, "prepare": res["seconds"] / n,
                     "rss": res["hwm_kib"] / MIB,
                     "added": (res["hwm_kib"] - res["base_kib"]) / MIB,
                     "worker_rss": res["workers_kib"] / MIB,
                     "traced": None if traced is None else traced / 2**20})
        print(f"  N={n} W={w}: {res['seconds']:.1f} s", flush=True)
    for row in rows:
        row["speedup"] = rows[0]["prepare"] / row["prepare"]
    return rows


def _print_table(rows: list[dict]) -> None:
    header = ("subjects", "workers", "images", "read s/subj", "read kept", "prepare s/subj",
              "prep/read", "prep/kept", "speed-up", "peak RSS MiB", "RSS added MiB",
              "worker RSS MiB", "traced MiB")

    def fmt(value, spec):
        return "-" if value is None else format(value, spec)

    print(" | ".join(header))
    print(" | ".join("-" * len(h) for h in header))
    for r in rows:
        cells = (f"{r['subjects']}", f"{r['workers']}", f"{r['images']}",
                 f"{r['read']:.2f}", f"{r['kept']:.2f}", f"{r['prepare']:.2f}",
                 f"{r['prepare'] / r['read']:.2f}", f"{r['prepare'] / r['kept']:.2f}",
                 f"{r['speedup']:.2f}", f"{r['rss']:.0f}", f"{r['added']:.0f}",
                 fmt(r["worker_rss"], ".0f"), fmt(r["traced"], ".0f"))
        print(" | ".join(c.rjust(len(h)) for c, h in zip(cells, header, strict=True)))
    for w in sorted({r["workers"] for r in rows}):
        same = [r for r in rows if r["workers"] == w]
        if len(same) > 1:
            lo, hi = same[0], same[-1]
            print(f"W={w}: peak RSS from N={lo['subjects']} to N={hi['subjects']}: "
                  f"{hi['rss'] - lo['rss']:+.0f} MiB (workers' "
                  f"{hi['worker_rss'] - lo['worker_rss']:+.0f} MiB); prepare "
                  f"{hi['prepare']:.2f} s/subject at N={hi['subjects']}, so 1,251 cases "
                  f"take about {1251 * hi['prepare'] / 60:.0f} min")


if __name__ == "__main__":
    sys.exit(main())
