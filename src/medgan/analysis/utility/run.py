"""Downstream utility of a trained model, files in and files out (the workflow's ``utility``).

:func:`evaluate_utility` reads a model's checkpoint and its prepared dataset, lists the model's
tasks (:func:`~medgan.analysis.utility.tasks.model_tasks`), runs the grid of
:mod:`medgan.analysis.utility.grid` per task on the training split of ``split.tsv`` (evaluated
on its held-out patients) with the GAN as the synthetic source, and writes

* ``utility.tsv``: :func:`~medgan.analysis.utility.grid.summarise` per task, training set,
  ratio, real fraction and metric (mean over seeds, interval, paired difference to ``real``);
* ``utility_runs.tsv``: one row per trained task network (seed, sizes, every metric);
* ``utility.json``: settings, tasks, class names, seconds, medgan version;
* ``utility.png``: the main metric of each task against the real fraction, one line per
  training set (:func:`~medgan.analysis.utility.figure.plot_utility`).

The GAN was trained on every training patient, while the task network at a real fraction of
10 % sees only 10 % of them: at reduced fractions the synthetic images carry information from
patients the task network does not get (as with a GAN trained on a large unlabelled or
differently labelled pool). ``controls: true`` adds the control sources to the grid: the
training patients are split in two seeded halves, one the real data of the grid and the other
the pool of the oracle; noise and repeat sources are built from the first.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medgan import __version__
from medgan.analysis.metrics.featurenet import pool_images, pooling_factor
from medgan.analysis.utility.grid import GridSettings, run_grid, summarise
from medgan.analysis.utility.sources import GeneratorSource, NoiseSource, PoolSource, RepeatSource
from medgan.analysis.utility.tasks import (
    CLASSIFICATION,
    Task,
    TaskData,
    encode_labels,
    label_column,
    model_tasks,
)
from medgan.atomic import write_json, write_tsv
from medgan.data.classes import class_names
from medgan.data.prepared import load_prepared
from medgan.data.split import load_split
from medgan.errors import InputError

log = logging.getLogger(__name__)
FLOAT_FORMAT = "%.6g"
GRID_KEYS = ("fractions", "ratios", "n_seeds", "seed", "training_sets", "synthetic_only_ratio",
             "augment", "confidence")
FIT_KEYS = ("steps", "batch_size", "lr", "width", "depth")


class GeneratorSampler:
    """``sampler(n, seed=..., labels=...)``: images of a loaded generator (latents seeded by
    ``seed``; ``labels`` the class indices of a class-conditional one)."""

    def __init__(self, G: Any, config: dict[str, Any]):
        self.G, self.config = G, config

    def __call__(self, n: int, *, seed: int, labels: np.ndarray | None = None) -> np.ndarray:
        from medgan.training.generate import generate_from

        if labels is None:
            return generate_from(self.G, self.config, n, seed=seed)
        return generate_from(self.G, self.config, n, seed=seed, labels=labels)


def grid_settings(settings: dict[str, Any]) -> GridSettings:
    """The ``analysis.utility`` config section as :class:`GridSettings`."""
    grid = {k: settings[k] for k in GRID_KEYS if k in settings}
    grid["fit"] = {k: settings[k] for k in FIT_KEYS if k in settings}
    return GridSettings(**grid)


def _task_split(task: Task, images: np.ndarray, channels: list[str], meta: pd.DataFrame,
                idx: np.ndarray, groups: np.ndarray) -> TaskData:
    """Task data of the images ``idx`` (rows without a class label dropped)."""
    labels = None
    if task.kind == CLASSIFICATION and task.column is not None:
        labels = encode_labels(label_column(meta, task.column).iloc[idx].tolist(), task.classes)
        keep = labels >= 0
        idx, labels = idx[keep], labels[keep]
    return task.from_images(images[idx], channels, labels=labels, groups=groups[idx])


def _resolve_classes(task: Task, meta: pd.DataFrame, data_dir: Any) -> Task:
    if task.kind != CLASSIFICATION or task.column is None or task.classes:
        return task
    try:
        classes = class_names(label_column(meta, task.column))
    except KeyError as err:
        raise InputError(Path(data_dir) / "meta.tsv", str(err)) from err
    return Task(**{**task.__dict__, "classes": tuple(classes)})


def control_sources(real: TaskData, *, seed: int, classification: bool
                    ) -> tuple[TaskData, list[Any]]:
    """Halve ``real`` by patient (seeded): the first half stays the real data, the second is
    the oracle's pool; noise and repeat sources from the first half."""
    names = np.unique(real.groups)
    if len(names) < 4:
        raise ValueError(f"the controls need at least 4 training patients, got {len(names)}")
    rng = np.random.default_rng([seed, 13])
    oracle_groups = names[rng.permutation(len(names))[: len(names) // 2]]
    in_pool = np.isin(real.groups, oracle_groups)
    kept, pool = real.take(np.flatnonzero(~in_pool)), real.take(np.flatnonzero(in_pool))
    return kept, [PoolSource(pool, name="oracle", classification=classification),
                  NoiseSource(kept, name="noise"), RepeatSource(kept, name="repeat")]


def utility_of_tasks(G: Any, config: dict[str, Any], data_dir: str | os.PathLike,
                     split: str | os.PathLike, *, settings: dict[str, Any],
                     device: str = "cpu", progress: bool | None = None
                     ) -> tuple[pd.DataFrame, list[Task]]:
    """Per-seed rows of the grid of every task of the model (``utility_runs.tsv``)."""
    channels = list(config["channels"])
    data = load_prepared(data_dir, channels=channels)
    kind = data.info.get("kind")
    tasks = model_tasks(kind=kind, channels=channels, condition=config.get("condition"),
                        min_tumour_px=int(settings.get("min_tumour_px", 1)))
    if settings.get("tasks"):
        tasks = [t for t in tasks if t.name in settings["tasks"]]
    if not tasks:
        raise InputError(data_dir, f"a {kind} model of channels {channels} has no downstream "
                                   "task (among analysis.utility.tasks, if set): it generates "
                                   "no label channel and is not class-conditional")
    table = load_split(split, len(data.images))
    train_idx = np.flatnonzero(table["split"].to_numpy() == "train")
    held_idx = np.flatnonzero(table["split"].to_numpy() == "heldout")
    if len(held_idx) == 0:
        raise InputError(split, "holds no held-out image to evaluate the task networks on")
    groups = table["group"].to_numpy().astype(str).astype(object)
    factor = pooling_factor(data.images.shape[-1], settings.get("max_resolution"))
    images = pool_images(np.asarray(data.images), factor).astype(np.float32)
    grid = grid_settings(settings)
    frames, resolved = [], []
    for task in tasks:
        task = _resolve_classes(task, data.meta, data_dir)
        resolved.append(task)
        real = _task_split(task, images, channels, data.meta, train_idx, groups)
        test = _task_split(task, images, channels, data.meta, held_idx, groups)
        cls = task.kind == CLASSIFICATION
        sources: list[Any] = [GeneratorSource(GeneratorSampler(G, config), channels, task,
                                              name="gan", conditional=task.conditional,
                                              pool=factor)]
        if settings.get("controls", False):
            real, controls = control_sources(real, seed=grid.seed, classification=cls)
            sources += controls
        log.info("task %s: %d real training and %d held-out images", task.name, len(real),
                 len(test))
        frames.append(run_grid(task, real, test, sources, settings=grid,
                               n_classes=max(2, len(task.classes)), device=device,
                               progress=progress))
    return pd.concat(frames, ignore_index=True, sort=False), resolved


def evaluate_utility(checkpoint: str | os.PathLike, data_dir: str | os.PathLike,
                     split: str | os.PathLike, out_dir: str | os.PathLike, *,
                     settings: dict[str, Any] | None = None, model_name: str | None = None,
                     threads: int | None = None, device: str = "cpu",
                     progress: bool | None = None) -> pd.DataFrame:
    """Write ``utility.tsv``, ``utility_runs.tsv``, ``utility.json`` and ``utility.png`` of
    the model in ``checkpoint`` into ``out_dir`` (see the module docstring); returns the
    summary. ``settings``: the ``analysis.utility`` config section; ``threads``: torch's CPU
    threads (None: unchanged); ``device``: ``cpu``, ``cuda`` or ``auto``."""
    import torch

    from medgan.analysis.utility.figure import plot_utility
    from medgan.training.distributed import resolve_device
    from medgan.training.generate import load_generator

    if threads:
        torch.set_num_threads(int(threads))
    settings = dict(settings or {})
    t0 = time.perf_counter()
    model_name = model_name or Path(checkpoint).parent.name
    dev = resolve_device(device)
    G, config = load_generator(checkpoint, device=str(dev))
    runs, tasks = utility_of_tasks(G, config, data_dir, split, settings=settings, device=dev,
                                   progress=progress)
    grid = grid_settings(settings)
    metrics = list(dict.fromkeys(m for t in tasks for m in t.metrics))
    summary = summarise(runs, metrics, confidence=grid.confidence)
    main = {t.name: t.main_metric for t in tasks}
    summary.insert(summary.columns.get_loc("metric") + 1, "main",
                   summary["metric"] == summary["task"].map(main))
    summary.insert(0, "model", model_name)
    runs.insert(0, "model", model_name)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_utility(summary, main, out_dir / "utility.png", title=model_name)
    write_tsv(out_dir / "utility_runs.tsv", runs, float_format=FLOAT_FORMAT)
    write_json(out_dir / "utility.json", {
        "model": model_name, "checkpoint": str(checkpoint), "data_dir": str(data_dir),
        "split": str(split), "settings": settings,
        "tasks": [{"name": t.name, "kind": t.kind, "inputs": list(t.inputs),
                   "targets": list(t.targets), "column": t.column, "classes": list(t.classes),
                   "main_metric": t.main_metric, "metrics": t.metrics} for t in tasks],
        "seconds": time.perf_counter() - t0, "medgan_version": __version__})
    write_tsv(out_dir / "utility.tsv", summary, float_format=FLOAT_FORMAT)  # last: complete
    return summary
