"""Convergence of each paper's architectures on the phantoms: train for ``--factor`` x the
default's steps with the paper's loss and score the generator every ``--every`` steps.

    nice python benchmarks/convergence.py --factor 10 --jobs 2 --out results/benchmarks/convergence

Models (``--models``; default :data:`MODELS`: one per architecture of the four papers, each with
the loss its paper uses) are read from ``--config`` (config/config.yaml) and must have been
prepared there (``results/data/<dataset>/`` with its ``split.tsv``; ``snakemake --cores 2
results/data/<dataset>/split.tsv``). Each is trained with :func:`medgan.training.train_gan` in
``--out/<model>/``. Non-progressive models train in chunks of ``--every`` steps (``steps`` may
grow on resume, so the chunks make one run); a progressive (``pggan``) model's phases are
``factor`` x as long and it is scored when its phases end and then every ``--every`` steps of
the final stage. At every score the generator (its EMA when kept) makes ``--n`` images and
they are compared with the real training images, pooled to at most 16 px, as flattened pixels:

* ``precision``, ``recall`` (k = 3) and ``density``, ``coverage`` (k = 5),
  :mod:`medgan.analysis.metrics.distribution`;
* ``rho_ratio``: Delplace's realism rho of the images against the real images' 16-component
  PCA, over the real held-out images' rho;
* ``pairwise_ratio``: the mean pairwise distance of the images over that of the real ones
  (diversity; a collapsed generator is near 0).

The same numbers for the held-out real images are the baseline. A score is ``learned`` when
precision and recall are both at least half of the baseline's and ``rho_ratio >= 0.8``
(Delplace's bar in issue 16). Each score also gets the workflow's own verdict (``health``: the
snapshot scorer of :mod:`medgan.analysis.snapshot_scorer`, with the domain precision and recall
where ``results/featurenets/<dataset>/featurenet.pt`` exists). Writes ``curves.tsv`` (one row
per score), ``table.tsv`` (per model: steps until learned, the final numbers, train seconds),
``curves.png``; prints the table.
Nothing here is timed by a test; the test runs it on a tiny setting.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml

from medgan.analysis.metrics.delplace import fit_real_pca, realism_rho
from medgan.analysis.metrics.distribution import density_coverage, precision_recall
from medgan.data.prepared import load_prepared
from medgan.data.split import split_indices
from medgan.training import train_gan
from medgan.training.generate import generate_images

# One model per architecture of the four papers, with its paper's loss.
MODELS = ["han_dcgan_t1", "han_wgan_t1", "kitchen_prostatex", "beers_fundus",
          "delplace_dcgan_dragan", "delplace_srresnet_dragan", "delplace_progan_wgan_gp"]
POOL_TO = 16


def pooled(images: np.ndarray) -> np.ndarray:
    """(N, C, H, W) -> flattened features, average-pooled to at most POOL_TO px."""
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    if x.shape[-1] > POOL_TO:
        x = torch.nn.functional.avg_pool2d(x, x.shape[-1] // POOL_TO)
    return x.flatten(1).numpy().astype(np.float64)


def mean_pairwise(x: np.ndarray, n: int = 200) -> float:
    x = x[:n]
    sq = (x * x).sum(1)
    d = np.sqrt(np.maximum(sq[:, None] + sq[None] - 2 * x @ x.T, 0))
    return float(d[np.triu_indices(len(x), 1)].mean())


def scores(images: np.ndarray, train: np.ndarray, heldout_rho: float, pca,
           real_pairwise: float) -> dict[str, float]:
    """The convergence numbers of ``images`` against the real training images."""
    if not np.isfinite(images).all():
        return {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0,
                "rho_ratio": 0.0, "pairwise_ratio": float("nan")}
    f_real, f_fake = pooled(train), pooled(images)
    out = {**precision_recall(f_real, f_fake, k=3), **density_coverage(f_real, f_fake, k=5)}
    out["rho_ratio"] = realism_rho(images, pca) / heldout_rho
    out["pairwise_ratio"] = mean_pairwise(f_fake) / real_pairwise
    return {k: float(v) for k, v in out.items()}


def learned(row: dict[str, float], base: dict[str, float]) -> bool:
    return (row["precision"] >= 0.5 * base["precision"] and row["recall"] >= 0.5 * base["recall"]
            and row["rho_ratio"] >= 0.8)


def chunks(model: dict[str, Any], factor: float, every: int) -> tuple[dict[str, Any], list[int]]:
    """The model's schedule for ``factor`` x its steps, and the steps to score at."""
    schedule = dict(model["schedule"])
    if model["architecture"]["name"] == "pggan":
        from medgan.training.progressive import phases_of
        from medgan.training.schedule import resolve_schedule

        base = resolve_schedule(dict(schedule), architecture="pggan",
                                resolution=model["resolution"])
        schedule["steps_per_phase"] = max(1, round(base["steps_per_phase"] * factor))
        phases = sum(p.steps for p in phases_of(
            {**base, "steps_per_phase": schedule["steps_per_phase"]}, model["resolution"]))
        total = max(phases, round(base["steps"] * factor))
        stops = [phases] + list(range(phases + every, total, every))
    else:
        total = max(1, round(schedule["steps"] * factor))
        stops = list(range(every, total, every))
    stops = sorted(set(stops + [total]))
    schedule.pop("steps", None)
    return schedule, stops


def health_scorer(root: Path, model: dict[str, Any], data_dir: Path, split: Path):
    """The workflow's snapshot scorer of ``model`` (its health rule and, where the workflow made
    the dataset's feature network, the domain metrics), as ``train_gan`` uses it."""
    from medgan.analysis.snapshot_scorer import SnapshotScorer

    net = root / "results" / "featurenets" / model["dataset"] / "featurenet.pt"
    return SnapshotScorer.from_files(data_dir, split, channels=model["channels"],
                                     featurenet=net if net.is_file() else None)


def health_of(scorer, images: np.ndarray) -> dict[str, Any]:
    """``health`` (the workflow's verdict, on ``scorer.n_images`` of ``images``) and the domain
    precision and recall it used (NaN without a feature network)."""
    got = scorer(images[:scorer.n_images])
    return {"health": got.get("health"),
            **{k: float(got.get(k, float("nan"))) for k in ("domain_precision", "domain_recall")}}


def run_model(name: str, model: dict[str, Any], *, factor: float, every: int, n: int,
              out: Path, root: Path) -> list[dict[str, Any]]:
    data_dir = root / "results" / "data" / model["dataset"]
    split = data_dir / "split.tsv"
    data = load_prepared(data_dir, channels=model["channels"])
    train_rows, held_rows = split_indices(split, len(data.images))
    train = np.asarray(data.images[train_rows], np.float32)
    held = np.asarray(data.images[held_rows], np.float32)
    pca = fit_real_pca(train, n_components=min(16, len(train) - 2))
    heldout_rho = realism_rho(held, pca)
    real_pairwise = mean_pairwise(pooled(train))
    base = scores(held, train, heldout_rho, pca, real_pairwise)
    scorer = health_scorer(root, model, data_dir, split)
    schedule, stops = chunks(model, factor, every)
    rows, seconds = [], 0.0
    for step in stops:
        t0 = time.process_time()
        train_gan(data_dir, out / name, channels=model["channels"],
                  resolution=model["resolution"], architecture=model["architecture"],
                  loss=model["loss"], optimizer=model["optimizer"],
                  schedule={**schedule, "steps": step}, seed=model.get("seed", 0), threads=1,
                  split=split, condition=model.get("condition"), progress=False)
        seconds += time.process_time() - t0
        run = json.loads((out / name / "run.json").read_text())
        images = (np.full((n, *train.shape[1:]), np.nan, np.float32)
                  if run.get("diverged_at_step") else
                  generate_images(out / name / "checkpoint.pt", n, seed=0))
        row = {"model": name, "step": step, "train_cpu_s": round(seconds, 1),
               **scores(images, train, heldout_rho, pca, real_pairwise)}
        row["learned"] = learned(row, base)
        row.update(health_of(scorer, images))
        rows.append(row)
        print(json.dumps(row), flush=True)
        if run.get("diverged_at_step"):
            break
    real = scorer.baseline or {}
    rows.append({"model": name, "step": "heldout", **base, "learned": True, "health": "baseline",
                 **{k: float(real.get(k, float("nan")))
                    for k in ("domain_precision", "domain_recall")}})
    return rows


def summarise(curves: pd.DataFrame) -> pd.DataFrame:
    table = []
    for name, c in curves.groupby("model", sort=False):
        runs = c[c["step"] != "heldout"]
        base = c[c["step"] == "heldout"].iloc[0]
        hit = runs[runs["learned"]]
        healthy = runs[runs["health"] == "learned"]
        last = runs.iloc[-1]
        table.append({"model": name, "steps_until_learned": int(hit["step"].iloc[0])
                      if len(hit) else None, "final_step": int(last["step"]),
                      "final_learned": bool(last["learned"]),
                      "steps_until_health_learned": int(healthy["step"].iloc[0])
                      if len(healthy) else None, "final_health": last["health"],
                      **{k: round(float(last[k]), 3) for k in (
                          "precision", "recall", "coverage", "rho_ratio", "pairwise_ratio",
                          "domain_precision", "domain_recall")},
                      "heldout_precision": round(float(base["precision"]), 3),
                      "heldout_recall": round(float(base["recall"]), 3),
                      "heldout_domain_precision": round(float(base["domain_precision"]), 3),
                      "train_cpu_s": float(last["train_cpu_s"])})
    return pd.DataFrame(table)


def plot(curves: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ["precision", "recall", "rho_ratio", "pairwise_ratio"]
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2))
    for name, c in curves.groupby("model", sort=False):
        runs = c[c["step"] != "heldout"]
        for ax, key in zip(axes, keys, strict=True):
            ax.plot(runs["step"].astype(int), runs[key], marker=".", label=name)
    for ax, key in zip(axes, keys, strict=True):
        ax.set_title(key)
        ax.set_xlabel("step")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--root", default=".", help="the workflow's directory (results/data)")
    parser.add_argument("--models", nargs="*", default=MODELS)
    parser.add_argument("--factor", type=float, default=10.0)
    parser.add_argument("--every", type=int, default=500, help="steps between scores")
    parser.add_argument("--n", type=int, default=256, help="generated images per score")
    parser.add_argument("--out", default="results/benchmarks/convergence")
    parser.add_argument("--jobs", type=int, default=1,
                        help="models trained at once, one process and one thread each")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    models = yaml.safe_load(Path(args.config).read_text())["models"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    kwargs = dict(factor=args.factor, every=args.every, n=args.n, out=out, root=Path(args.root))
    runs = [(name, copy.deepcopy(models[name])) for name in args.models]
    if args.jobs <= 1:
        per_model = [run_model(name, model, **kwargs) for name, model in runs]
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=torch.set_num_threads, initargs=(1,)) as pool:
            futures = [pool.submit(run_model, name, model, **kwargs) for name, model in runs]
            per_model = [f.result() for f in futures]  # in the order of --models
    curves = pd.DataFrame([row for rows in per_model for row in rows])
    curves.to_csv(out / "curves.tsv", sep="\t", index=False)
    table = summarise(curves)
    table.to_csv(out / "table.tsv", sep="\t", index=False)
    plot(curves, out / "curves.png")
    print(table.to_string(index=False))
    return table


if __name__ == "__main__":
    main()
