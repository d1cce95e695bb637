"""Delplace 2019's realism rho and diversity sigma, delta at the paper's size (Table 3: N = 11,328
images of 256 x 256), timed on four spectra, with the memory they need beyond the images, and
checked against the naive computation (np.cov of the images as Delplace's evaluate_gan.py, and
a dense float64 SVD for the PCA) on a subset, through the streamed path whatever its size.

    nice python benchmarks/delplace_bench.py --n 11328 --resolution 256 --threads 2 --check-n 1200

``--spectra`` (default all four, one set at a time, each drawn seeded, float32):

* ``brain``: :func:`medgan.analysis.metrics.controls.structured_images` (head ellipse with
  smoothed texture, ventricle, lesions, background -1): a decaying spectrum, delta ~ 15;
* ``lowrank``: 40 random components of comparable weight (80 % of the variance) plus white
  noise (20 %): delta ~ 40 above a flat floor of ~P small eigenvalues;
* ``noise``: white noise, a flat spectrum: delta 0, every eigenvalue ~ sigma / N;
* ``collapsed``: 8 brain-like images repeated (N / 8 copies each) plus noise of 1e-3: delta <= 7.

For each: ``fit_real_pca`` (16 components), ``realism_rho`` and ``diversity_sigma_delta`` on the
set (Table 3's "Training dataset" row: the set scored against its own PCA), wall seconds, CPU
seconds (all threads; the machine may be shared, so CPU time is the steadier number) and the
peak of numpy allocations during the step (tracemalloc: the memory beyond the images). Then the
first ``--check-n`` images (above the in-memory limit, so the streamed path runs) are scored the
same way and naively, and the differences are printed. The load average is printed around each
set's timed steps. Nothing here is timed by a test; run it by hand and read the output.
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

SPECTRA = ("brain", "lowrank", "noise", "collapsed")


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
    """Delplace's evaluate_gan.py: sigma, delta from np.cov of the mean-subtracted images (rows);
    and the PCA (dense float64 SVD of the centred images) with rho per image."""
    flat = images.reshape(len(images), -1).astype(np.float64)
    centred = flat - flat.mean(axis=0)
    cov = np.cov(centred)
    w = np.linalg.eigvalsh(cov)[::-1]
    sigma = float(np.trace(cov))
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    norms = np.linalg.norm(centred, axis=1)
    rho = np.linalg.norm(centred @ vt[:k].T, axis=1) / np.maximum(norms, 1e-300)
    return s**2, w, sigma, int(np.sum(w > threshold * sigma)), rho


def check_subset(images: np.ndarray, k: int, threshold: float) -> None:
    dense_bytes = delplace._DENSE_BYTES
    delplace._DENSE_BYTES = 0  # the streamed (block Krylov) path, whatever the size
    try:
        pca = fit_real_pca(images, n_components=k)
        div = diversity_sigma_delta(images, threshold=threshold)
        rho = realism_per_image(images, pca)
    finally:
        delplace._DENSE_BYTES = dense_bytes
    scatter, w, sigma, delta, rho_n = naive(images, k, threshold)
    top = np.asarray(div["eigenvalues_top"])
    print(f"check on {len(images)} images (streamed path vs np.cov / dense float64 SVD):")
    pca_eig = pca.explained_variance * (len(images) - 1)
    pca_rel = np.max(np.abs(pca_eig - scatter[:k]) / scatter[:k])
    print(f"  PCA eigenvalues   max rel diff {pca_rel:.1e}")
    rel = np.max(np.abs(top - w[: len(top)]) / w[0])
    print(f"  top eigenvalues   max diff / largest {rel:.1e} ({len(top)} returned)")
    print(f"  sigma             rel diff {abs(div['sigma'] - sigma) / sigma:.1e}")
    print(f"  delta             {div['delta']} (np.cov {delta}; {div['certificate']})")
    ok = rho_n > 0
    print(f"  rho per image     max rel diff {np.max(np.abs(rho - rho_n)[ok] / rho_n[ok]):.1e}")
    print(f"  rho               rel diff {abs(rho.mean() - rho_n.mean()) / rho_n.mean():.1e}")


def draw(kind: str, n: int, resolution: int, seed: int) -> np.ndarray:
    """One of the four test sets (see the module docstring), float32 (n, 1, r, r)."""
    rng = np.random.default_rng(seed)
    d = resolution * resolution
    if kind == "brain":
        return structured_images(n, resolution=resolution, seed=seed)
    if kind == "collapsed":
        modes = structured_images(8, resolution=resolution, seed=seed)
        out = np.repeat(modes, -(-n // 8), axis=0)[:n]
        out += (1e-3 * rng.standard_normal(out.shape, dtype=np.float32))
        return out
    out = rng.standard_normal((n, 1, resolution, resolution), dtype=np.float32)
    if kind == "noise":
        return out
    if kind == "lowrank":  # 40 components of 2 % each, white noise 20 % of the variance
        weights = np.linspace(1.2, 0.8, 40) * np.sqrt(0.8 / 0.2 * d / 40 / np.mean(
            np.linspace(1.2, 0.8, 40) ** 2))
        basis = rng.standard_normal((40, d), dtype=np.float32) / np.sqrt(d)
        coef = (rng.standard_normal((n, 40)) * weights).astype(np.float32)
        flat = out.reshape(n, d)
        for start in range(0, n, 1024):
            flat[start:start + 1024] += coef[start:start + 1024] @ basis
        return out
    raise ValueError(f"unknown spectrum {kind!r}")


def bench_one(kind: str, args) -> dict:
    t0 = time.perf_counter()
    images = draw(kind, args.n, args.resolution, args.seed)
    print(f"\n== {kind}: {args.n} images of {args.resolution} px "
          f"({images.nbytes / 2**30:.2f} GB float32) drawn in {time.perf_counter() - t0:.0f} s")
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
    print(f"rho {rho:.4f}  sigma {div['sigma']:.2f} (per image {div['sigma_per_image']:.4f})"
          f"  delta {div['delta']} ({div['certificate']})  PCA variance explained "
          f"{pca.explained_variance_ratio.sum():.3f}")
    print(f"rho + sigma + delta: wall {r2['wall_s'] + r3['wall_s']:.1f} s, "
          f"cpu {r2['cpu_s'] + r3['cpu_s']:.1f} s; PCA fit: wall {r1['wall_s']:.1f} s, cpu "
          f"{r1['cpu_s']:.1f} s; peak extra memory {max(r['peak_mb'] for r in rows):.0f} MB",
          flush=True)
    if args.check_n:
        check_subset(images[: args.check_n], args.components, args.threshold)
    return {"spectrum": kind, "delta": div["delta"], "metrics_wall_s": r2["wall_s"] + r3["wall_s"],
            "pca_wall_s": r1["wall_s"]}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=11328)
    p.add_argument("--resolution", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--components", type=int, default=16)
    p.add_argument("--threshold", type=float, default=0.01)
    p.add_argument("--check-n", type=int, default=1200, help="0: skip the naive check")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--spectra", nargs="+", default=list(SPECTRA), choices=SPECTRA)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="  %(message)s")
    with threadpool_limits(args.threads):
        results = [bench_one(kind, args) for kind in args.spectra]
    print("\nsummary (wall s): " + "; ".join(
        f"{r['spectrum']} delta {r['delta']}: metrics {r['metrics_wall_s']:.1f}, PCA "
        f"{r['pca_wall_s']:.1f}" for r in results))


if __name__ == "__main__":
    main()
