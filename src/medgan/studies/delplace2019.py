"""Delplace 2019's tables: Table 3 (rho, sigma, delta), training times, the loss comparison.

The paper's own numbers are constants here (they are facts of the paper, not settings); the
workflow's tables put them beside the ones measured. Figures (Fig. 1, interpolations, the
verdict grid) are in :mod:`medgan.studies.delplace2019_figures`.

The loss comparison (sec. 3.3: "DRAGAN and WGAN_GP are the only loss functions that allow
stabilized training") is judged by recorded criteria, :func:`convergence_verdict`:

* **diverged**: a non-finite loss anywhere in ``stats.jsonl`` (the run stopped there), or a
  loss whose magnitude in the last ``tail_fraction`` of the log exceeds ``loss_limit``
  (exploding), or non-finite samples, or samples whose realism rho is below
  ``rho_ratio_min`` x the real images' rho (images off the real data's PCA subspace: noise,
  saturation);
* **collapsed**: otherwise, samples whose diversity sigma per image is below
  ``sigma_ratio_min`` x the real images', or whose delta is below ``delta_ratio_min`` x the real
  images' delta (too few modes: Delplace's "delta tracks mode collapsing");
* **converged**: neither.

The real images' rho that the samples' is compared with is that of the **held-out** images
where the split has any (at least 2), against the PCA of the training images, as a generated
image is: the training images' own rho is an in-sample fit. With OASIS-1's 11,328 slices the two
agree (16 components of 65,536 pixels fitted to thousands of images); with the default's 96
phantom slices they do not (0.975 in-sample, 0.835 held out), and the in-sample value would ask
a generator to lie closer to the training PCA than unseen real images do. Table 3 shows both
rows for the same reason.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medgan.analysis.metrics.delplace import diversity_sigma_delta, fit_real_pca, realism_rho
from medgan.atomic import write_tsv
from medgan.plotting import read_stats

PAPER_N = 11328
# Table 3: model -> (loss, rho, sigma, delta)
PAPER_TABLE3: dict[str, tuple[str, float, float, int]] = {
    "Training dataset": ("-", 0.739, 409.0, 15),
    "DCGAN": ("DRAGAN", 0.718, 352.0, 15),
    "SRResNet": ("DRAGAN", 0.678, 329.0, 16),
    "ProGAN": ("WGAN_GP", 0.601, 331.0, 13),
}
PAPER_HOURS = {"DCGAN": 45, "SRResNet": 30, "ProGAN": 58}  # sec. 3.3, one Tesla K80
PAPER_ITERATIONS = {"DCGAN": 10620, "SRResNet": 10620, "ProGAN": 46020}  # 60 / 260 epochs of 177
# sec. 3.3: which losses gave a stable run (DCGAN "performs better with DRAGAN", so WGAN_GP
# is read as stable too; SRResNet and ProGAN "converge only with" DRAGAN and WGAN_GP)
PAPER_STABLE = {"DCGAN": {"dragan", "wgan_gp"}, "SRResNet": {"dragan"}, "ProGAN": {"wgan_gp"}}
LOSS_LABELS = {"gan": "GAN", "lsgan": "LSGAN", "wgan": "WGAN", "wgan_gp": "WGAN_GP",
               "dragan": "DRAGAN", "stylegan2": "logistic + R1 + ADA"}
CRITERIA_DEFAULTS: dict[str, float] = {
    "loss_limit": 100.0, "tail_fraction": 0.25, "rho_ratio_min": 0.5,
    "sigma_ratio_min": 0.1, "delta_ratio_min": 0.25,
}
VERDICTS = ("diverged", "collapsed", "converged")
HELDOUT_ROW = "Held-out images"


def image_statistics(images: np.ndarray, pca, *, threshold: float = 0.01) -> dict[str, Any]:
    """rho (against ``pca``), sigma, sigma per image and delta of an image set; NaN if any
    image is not finite."""
    if not np.isfinite(images).all():
        return {"finite": False, "n": len(images), "rho": math.nan, "sigma": math.nan,
                "sigma_per_image": math.nan, "delta": 0}
    div = diversity_sigma_delta(images, threshold=threshold)
    return {"finite": True, "n": len(images), "rho": realism_rho(images, pca),
            "sigma": div["sigma"], "sigma_per_image": div["sigma_per_image"],
            "delta": div["delta"]}


def _losses(rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
    return np.array([[float(r.get("d_loss", math.nan)), float(r.get("g_loss", math.nan))]
                     for r in rows]).reshape(-1, 2)


def convergence_verdict(
    stats_rows: Sequence[Mapping[str, Any]],
    samples: Mapping[str, Any],
    real: Mapping[str, Any],
    criteria: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Judge one run (see the module docstring). ``stats_rows``: its ``stats.jsonl`` rows;
    ``samples`` / ``real``: :func:`image_statistics` of its samples and of the real images.
    Returns the verdict, its reason and every number it was judged by."""
    c = {**CRITERIA_DEFAULTS, **(criteria or {})}
    unknown = set(c) - set(CRITERIA_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown convergence criteria {sorted(unknown)}")
    losses = _losses(stats_rows)
    if len(losses) == 0:
        raise ValueError("no logged steps: cannot judge convergence")
    tail = losses[-max(1, math.ceil(c["tail_fraction"] * len(losses))):]
    finite_losses = bool(np.isfinite(losses).all())
    max_tail = float(np.max(np.abs(tail))) if finite_losses else math.inf
    rho_ratio = _ratio(samples.get("rho"), real.get("rho"))
    sigma_ratio = _ratio(samples.get("sigma_per_image"), real.get("sigma_per_image"))
    delta_ratio = _ratio(samples.get("delta"), real.get("delta"))
    out = {"finite_losses": finite_losses, "max_abs_loss_tail": max_tail,
           "rho_ratio": rho_ratio, "sigma_ratio": sigma_ratio, "delta_ratio": delta_ratio}
    if not finite_losses:
        step = next(int(r.get("step", -1)) for r, ok in zip(stats_rows, np.isfinite(losses).all(1),
                                                          strict=True) if not ok)
        return {**out, "verdict": "diverged", "reason": f"non-finite loss at step {step}"}
    if max_tail > c["loss_limit"]:
        return {**out, "verdict": "diverged",
                "reason": f"|loss| {max_tail:.3g} > {c['loss_limit']:g} in the last "
                          f"{c['tail_fraction']:.0%} of the log"}
    if not samples.get("finite", True):
        return {**out, "verdict": "diverged", "reason": "non-finite samples"}
    if rho_ratio < c["rho_ratio_min"]:
        return {**out, "verdict": "diverged",
                "reason": f"rho {rho_ratio:.2f} x real < {c['rho_ratio_min']:g}"}
    if sigma_ratio < c["sigma_ratio_min"]:
        return {**out, "verdict": "collapsed",
                "reason": f"sigma {sigma_ratio:.3f} x real < {c['sigma_ratio_min']:g}"}
    if delta_ratio < c["delta_ratio_min"]:
        return {**out, "verdict": "collapsed",
                "reason": f"delta {delta_ratio:.2f} x real < {c['delta_ratio_min']:g}"}
    return {**out, "verdict": "converged", "reason": "no criterion met"}


def _ratio(a: Any, b: Any) -> float:
    try:
        a, b = float(a), float(b)
    except (TypeError, ValueError):
        return math.nan
    return a / b if b > 0 and math.isfinite(a) else math.nan


REAL_PARTS = ("train", "all", "heldout")


def training_images(data_dir: str | os.PathLike, split: str | os.PathLike,
                    channels: Sequence[str] | None, *, part: str = "train") -> np.ndarray:
    """The images of a prepared dataset, float32 in memory: the training split (``part``
    "train"), every image, training and held-out ("all"; the paper had no held-out set and
    scored all 11,328 OASIS slices as its "Training dataset"), or the held-out images only
    ("heldout"; possibly none)."""
    from medgan.data.prepared import load_prepared
    from medgan.data.split import split_indices

    if part not in REAL_PARTS:
        raise ValueError(f"part must be one of {REAL_PARTS}, got {part!r}")
    data = load_prepared(data_dir, channels=list(channels) if channels else None)
    train, held = split_indices(split, len(data.images))
    rows = {"train": train, "heldout": held}.get(part, np.union1d(train, held))
    return np.asarray(data.images[rows], dtype=np.float32)


def _generate(checkpoint: str | os.PathLike, n: int, seed: int) -> np.ndarray:
    """``n`` images of a checkpoint's generator, on a GPU where there is one (the latents are
    drawn on the CPU from ``seed``, so the set does not depend on the device but for rounding),
    clipped to the images' range [-1, 1], as Delplace's code scores them (it writes 8-bit PNGs
    and reads them back; the rounding to 8 bits is left out). Only generators without a tanh
    (ProGAN, StyleGAN2) reach outside it."""
    from medgan.training.generate import generate_images

    return np.clip(generate_images(checkpoint, n, seed=seed, device="auto"), -1.0, 1.0)


def loss_comparison_table(
    runs: Mapping[str, Mapping[str, str]],
    model_dirs: Mapping[str, str | os.PathLike],
    real: np.ndarray,
    path: str | os.PathLike,
    *,
    n_samples: int = 256,
    seed: int = 0,
    n_components: int = 16,
    threshold: float = 0.01,
    criteria: Mapping[str, float] | None = None,
    heldout: np.ndarray | None = None,
) -> pd.DataFrame:
    """Sec. 3.3: one row per architecture x loss run (``runs``: architecture -> loss -> model;
    ``model_dirs``: model -> results/models/<model>) with its verdict and the numbers behind it,
    and what the paper found; written as TSV to ``path``. ``real``: the training images (the
    PCA, and sigma's and delta's reference); ``heldout``: the held-out images, whose rho is
    rho's reference (the module docstring says why; the training images' where None or fewer
    than 2). Columns ``rho_real`` and ``rho_real_set`` name the reference."""
    pca = fit_real_pca(real, n_components=min(n_components, len(real) - 2))
    real_stats = image_statistics(real, pca, threshold=threshold)
    rho_set = "training"
    if heldout is not None and len(heldout) >= 2:
        real_stats["rho"], rho_set = realism_rho(heldout, pca), "held-out"
    rows = []
    for arch, by_loss in runs.items():
        for loss, model in by_loss.items():
            run_dir = Path(model_dirs[model])
            run = json.loads((run_dir / "run.json").read_text())
            stats = read_stats(run_dir / "stats.jsonl")
            diverged_at = run.get("diverged_at_step")
            if diverged_at is None:
                images = _generate(run_dir / "checkpoint.pt", n_samples, seed)
                sample_stats = image_statistics(images, pca, threshold=threshold)
            else:
                sample_stats = {"finite": False, "rho": math.nan, "sigma_per_image": math.nan,
                                "delta": 0}
            verdict = convergence_verdict(stats, sample_stats, real_stats, criteria)
            rows.append({
                "architecture": arch, "loss": LOSS_LABELS.get(loss, loss), "model": model,
                "verdict": verdict["verdict"], "reason": verdict["reason"],
                "steps_logged": int(stats[-1].get("step", 0)) if stats else 0,
                "diverged_at_step": diverged_at,
                "final_d_loss": stats[-1].get("d_loss") if stats else math.nan,
                "final_g_loss": stats[-1].get("g_loss") if stats else math.nan,
                "max_abs_loss_tail": verdict["max_abs_loss_tail"],
                "rho": sample_stats["rho"], "rho_ratio": verdict["rho_ratio"],
                "rho_real": real_stats["rho"], "rho_real_set": rho_set,
                "sigma_ratio": verdict["sigma_ratio"], "delta": sample_stats["delta"],
                "delta_real": real_stats["delta"],
                "paper": ("stable" if loss in PAPER_STABLE.get(arch, set())
                          else "not stable"),
            })
    table = pd.DataFrame(rows)
    write_tsv(path, table, float_format="%.4g")
    return table


def table3(
    models: Mapping[str, str | os.PathLike],
    losses: Mapping[str, str],
    real: np.ndarray,
    path: str | os.PathLike,
    *,
    n: int = PAPER_N,
    seed: int = 0,
    n_components: int = 16,
    threshold: float = 0.01,
    heldout: np.ndarray | None = None,
) -> pd.DataFrame:
    """Table 3: rho, sigma, delta of the real images and of generated images of each model
    (``models``: row label -> checkpoint; ``losses``: row label -> loss name), every row at the
    same N (sigma, the trace of the N x N covariance of the images, grows with N):
    N = min(``n``, number of real images); the real row is a seeded subsample of N real images
    when there are more (the PCA of rho is fitted on all of them). Each row states its N beside
    the paper's values (paper: N = 11,328 in every row); written as TSV. ``heldout`` (at least
    2 images) adds a "Held-out images" row after the real one: images the PCA was not fitted
    to, the fair reference for a generated image's rho when the real images are few (the
    module docstring); at its own N, so its sigma compares with no other row's."""
    if len(real) < 2:
        raise ValueError(f"Table 3 needs at least 2 real images, got {len(real)}")
    n_rows = min(int(n), len(real))
    pca = fit_real_pca(real, n_components=min(n_components, len(real) - 2))
    rows_real = real
    if len(real) > n_rows:
        pick = np.sort(np.random.default_rng(seed).choice(len(real), n_rows, replace=False))
        rows_real = real[pick]
    sets = {"Training dataset": ("-", rows_real)}
    if heldout is not None and len(heldout) >= 2:
        sets[HELDOUT_ROW] = ("-", np.asarray(heldout, dtype=np.float32))
    for label, ckpt in models.items():
        sets[label] = (LOSS_LABELS.get(losses[label], losses[label]),
                       _generate(ckpt, n_rows, seed))
    rows = []
    for label, (loss, images) in sets.items():
        s = image_statistics(images, pca, threshold=threshold)
        paper = PAPER_TABLE3.get(label, ("", math.nan, math.nan, math.nan))
        rows.append({"model": label, "loss": loss, "N": s["n"], "rho": s["rho"],
                     "sigma": s["sigma"], "delta": s["delta"], "paper_loss": paper[0],
                     "paper_N": PAPER_N, "paper_rho": paper[1], "paper_sigma": paper[2],
                     "paper_delta": paper[3]})
    table = pd.DataFrame(rows)
    write_tsv(path, table, float_format="%.4g")
    return table


def training_time_table(
    runs: Mapping[str, str | os.PathLike], path: str | os.PathLike
) -> pd.DataFrame:
    """Training time of each model (``runs``: row label -> its run.json) beside the paper's
    hours on a Tesla K80 (sec. 3.3) and iterations; written as TSV."""
    rows = []
    for label, run_path in runs.items():
        run = json.loads(Path(run_path).read_text())
        timing, cfg = run.get("timing", {}), run.get("config", {})
        sched = cfg.get("schedule", {})
        rows.append({
            "model": label, "run": Path(run_path).parent.name,
            "resolution": cfg.get("resolution"), "steps": sched.get("steps"),
            "train_s": timing.get("train_s"), "total_s": timing.get("total_s"),
            "s_per_step": timing.get("s_per_step"), "device": run.get("device"),
            "threads": run.get("threads"), "paper_hours": PAPER_HOURS.get(label),
            "paper_iterations": PAPER_ITERATIONS.get(label), "paper_device": "Tesla K80",
            "paper_resolution": 256,
        })
    table = pd.DataFrame(rows)
    write_tsv(path, table, float_format="%.4g")
    return table
