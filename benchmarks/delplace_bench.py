"""Delplace 2019's realism rho and diversity sigma, delta at the paper's size (Table 3: N = 11,328
images of 256 x 256), timed, with the memory they need beyond the images, and checked against
the naive computation (a dense float64 SVD of the centred images) on a subset, through the
streamed path whatever the subset's size.

    nice python benchmarks/delplace_bench.py --n 11328 --resolution 256 --threads 2 --check-n 1200

Draws ``--n`` seeded brain-like images (:func:`medgan.analysis.metrics.controls.structured_images`:
head ellipse with smoothed texture, ventricle, lesions, background -1, float32), then times
``fit_real_pca`` (16 components), ``realism_rho`` and ``diversity_sigma_delta`` on that one set
(Table 3's "Training dataset" row: the set scored against its own PCA). Per step: wall seconds,
CPU seconds (all threads; the machine may be shared, so CPU time is the steadier number) and the
peak of numpy allocations during the step (tracemalloc: the memory beyond the images). Then the
first ``--check-n`` images (still above the in-memory limit, so the streamed subspace path runs)
are scored the same way and by a dense SVD, and the largest relative differences are printed.
The load average is printed before and after the timed steps (the machine may be shared).
Nothing here is timed by a test; run it by hand and read the output.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
import tracemalloc

import numpy as np
from threadpoolctl import threadpool_limits

from medgan.analysis.metrics import delplace
from medgan.analysis.metrics.controls import structured_images
from medgan.analysis.metrics.delplace import (
    diversity_sigma_delta,
    fit_real_pca,
    realism_per_image,
    realism_rho,
)


def timed(label: str, fn, *args, **kwargs):
    """Run fn, print wall s, CPU s and peak traced MB; return its result and the row."""
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    peak = (tracemalloc.get_traced_memory()[1] - base) / 2**20
    print(f"{label:<28} wall {wall:7.1f} s   cpu {cpu:7.1f} s   peak extra {peak:7.0f} MB",
          flush=True)
    return out, {"step": label, "wall_s": wall, "cpu_s": cpu, "peak_mb": peak}


def naive(images: np.ndarray, k: int, threshold: float):
    """Dense float64 SVD of the centred images: eigenvalues, sigma, delta, rho per image."""
    flat = images.reshape(len(images), -1).astype(np.float64)
    mean = flat.mean(axis=0)
    centred = flat - mean
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    eig = s**2
    sigma = float(np.sum(centred**2))
    norms = np.linalg.norm(centred, axis=1)
    rho = np.linalg.norm(centred @ vt[:k].T, axis=1) / norms
    return eig, sigma, int(np.sum(eig > threshold * sigma)), rho


def check_subset(images: np.ndarray, k: int, threshold: float) -> None:
    dense_bytes = delplace._DENSE_BYTES
    delplace._DENSE_BYTES = 0  # the streamed (subspace iteration) path, whatever the size
    try:
        pca = fit_real_pca(images, n_components=k)
        div = diversity_sigma_delta(images, threshold=threshold)
        rho = realism_per_image(images, pca)
    finally:
        delplace._DENSE_BYTES = dense_bytes
    eig, sigma, delta, rho_n = naive(images, k, threshold)
    top = np.asarray(div["eigenvalues_top"])
    print(f"check on {len(images)} images (streamed path vs dense float64 SVD):")
    pca_eig = pca.explained_variance * (len(images) - 1)
    print(f"  PCA eigenvalues   max rel diff {np.max(np.abs(pca_eig - eig[:k]) / eig[:k]):.1e}")
    rel = np.max(np.abs(top - eig[: len(top)]) / eig[: len(top)])
    print(f"  top eigenvalues   max rel diff {rel:.1e} ({len(top)} computed)")
    print(f"  sigma             rel diff {abs(div['sigma'] - sigma) / sigma:.1e}")
    print(f"  delta             {div['delta']} (naive {delta})")
    print(f"  rho per image     max rel diff {np.max(np.abs(rho - rho_n) / rho_n):.1e}")
    print(f"  rho               rel diff {abs(rho.mean() - rho_n.mean()) / rho_n.mean():.1e}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=11328)
    p.add_argument("--resolution", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--components", type=int, default=16)
    p.add_argument("--threshold", type=float, default=0.01)
    p.add_argument("--check-n", type=int, default=1200, help="0: skip the naive check")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="  %(message)s")
    with threadpool_limits(args.threads):
        t0 = time.perf_counter()
        images = structured_images(args.n, resolution=args.resolution, seed=args.seed)
        print(f"{args.n} images of {args.resolution} px ({images.nbytes / 2**30:.2f} GB float32) "
              f"drawn in {time.perf_counter() - t0:.0f} s")
        load = " ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"load average (1, 5, 15 min) before the timed steps: {load}", flush=True)
        tracemalloc.start()
        pca, r1 = timed("fit_real_pca", fit_real_pca, images, n_components=args.components)
        rho, r2 = timed("realism_rho", realism_rho, images, pca)
        div, r3 = timed("diversity_sigma_delta", diversity_sigma_delta, images,
                        threshold=args.threshold)
        tracemalloc.stop()
        print("load average after: " + " ".join(f"{x:.1f}" for x in os.getloadavg()))
        rows = [r1, r2, r3]
        print(f"rho {rho:.4f}  sigma {div['sigma']:.1f} (per image {div['sigma_per_image']:.2f})"
              f"  delta {div['delta']}  PCA variance explained "
              f"{pca.explained_variance_ratio.sum():.3f}")
        print(f"rho + sigma + delta: wall {r2['wall_s'] + r3['wall_s']:.1f} s, "
              f"cpu {r2['cpu_s'] + r3['cpu_s']:.1f} s; with the PCA fit: wall "
              f"{sum(r['wall_s'] for r in rows):.1f} s, cpu {sum(r['cpu_s'] for r in rows):.1f} s;"
              f" peak extra memory {max(r['peak_mb'] for r in rows):.0f} MB")
        if args.check_n:
            check_subset(images[: args.check_n], args.components, args.threshold)


if __name__ == "__main__":
    main()
