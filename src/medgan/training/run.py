"""What a training run is: its resolved config, device, data and files, and ``run.json``.

:func:`prepare_run` checks every argument of :func:`~medgan.training.loop.train_gan`, fills in
the defaults (architecture, loss, optimizer, schedule, performance), opens the training data and
returns a :class:`TrainingRun`: the config recorded in the checkpoint and ``run.json``, the
device, the loss object, the progressive schedule (``pggan``) and the training images.
:class:`RunFiles` names the run directory's files; :func:`run_record` is the ``run.json``
content.
"""

from __future__ import annotations

import os
import platform
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medgan import __version__
from medgan.data.split import split_indices
from medgan.models import resolved_config
from medgan.training import accel
from medgan.training.data import (
    condition_labels,
    dataset_summary,
    display_ranges,
    load_training_data,
)
from medgan.training.distributed import Ranks, resolve_device
from medgan.training.losses import GANLoss, build_loss
from medgan.training.presets import resolve_auto
from medgan.training.progressive import ARCHITECTURE as ARCHITECTURE_PROGRESSIVE
from medgan.training.progressive import ProgressiveSchedule
from medgan.training.schedule import positive_int, resolve_optimizer, resolve_schedule

OUTPUT_FILES = ["checkpoint.pt", "stats.jsonl", "snapshots.jsonl", "samples.png", "losses.png",
                "run.json"]


@dataclass
class TrainingRun:
    """A resolved training run (see :func:`prepare_run`)."""

    data_dir: Path
    out_dir: Path
    device: torch.device
    config: dict[str, Any]
    loss: GANLoss
    progressive: ProgressiveSchedule | None
    images: np.ndarray
    rows: np.ndarray | None  # the training rows of ``images`` (None: all)
    n_images: int
    sample_ranges: list[tuple[float, float]]
    ranks: Ranks = field(default_factory=Ranks)  # the processes of a data-parallel run
    labels: np.ndarray | None = None  # class-conditional runs: the class of each row of rows

    @property
    def schedule(self) -> dict[str, Any]:
        return self.config["schedule"]

    @property
    def performance(self) -> dict[str, Any]:
        return self.config["performance"]

    @property
    def first_batch_size(self) -> int:
        """The batch size the data sampler is built with (progressive: the largest)."""
        if self.progressive:
            return self.progressive.max_batch_size()
        return self.schedule["batch_size"]


def prepare_run(data_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
                channels: list[str] | None, resolution: int, architecture: dict, loss: dict,
                optimizer: dict, schedule: dict, seed: int,
                device: str | torch.device = "auto",
                threads: int | None = None, performance: dict | None = None,
                split: str | os.PathLike | None = None,
                ranks: Ranks | None = None, condition: dict | None = None,
                privacy: dict | None = None) -> TrainingRun:
    """Check and resolve the arguments of :func:`~medgan.training.loop.train_gan`; ``device``
    a name or (data-parallel: this process's) device, ``ranks`` the processes; ``privacy``
    the DP-SGD settings of :mod:`medgan.training.dp` (recorded resolved as ``privacy``)."""
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    positive_int(seed, "seed", minimum=0)
    if threads is not None:
        torch.set_num_threads(positive_int(threads, "threads"))
    dev = resolve_device(device) if isinstance(device, str) else device

    architecture, loss, schedule = resolve_auto(architecture, loss, schedule,
                                                resolution=resolution)
    arch_cfg = resolved_config(architecture)
    schedule = resolve_schedule(schedule, architecture=arch_cfg["name"], resolution=resolution)
    progressive = (ProgressiveSchedule(schedule, resolution)
                   if arch_cfg["name"] == ARCHITECTURE_PROGRESSIVE else None)
    loss_obj = build_loss(loss)
    opt_cfg = resolve_optimizer(optimizer)
    perf = accel.resolve_performance(performance)
    accel.configure_backends(perf, dev)

    data = load_training_data(data_dir, channels, resolution)
    if hasattr(loss_obj, "bind"):  # a loss that augments needs the channel names (ADA)
        loss_obj.bind(list(data.info["channels"]))
    rows = None if split is None else split_indices(split, data.images.shape[0])[0]
    labels = None
    if condition:
        condition, labels, rows = condition_labels(condition, data.meta, rows, data_dir)
    n_images = data.images.shape[0] if rows is None else len(rows)
    if arch_cfg.get("output_activation") == "tanh":
        lo, hi = data.info.get("value_range", [-1.0, 1.0])
        if lo < -1.0 or hi > 1.0:
            warnings.warn(f"{data_dir}: values span [{lo:.3g}, {hi:.3g}] but the generator's "
                          "tanh output is limited to [-1, 1]", stacklevel=3)
    config = {"architecture": arch_cfg, "loss": loss_obj.config, "optimizer": opt_cfg,
              "schedule": schedule, "channels": list(data.info["channels"]),
              "resolution": resolution, "seed": seed,
              "dataset": dataset_summary(data_dir, data.info, n_images, split, rows),
              "performance": perf, **({"condition": condition} if condition else {})}
    ranks = replace(ranks or Ranks(), group_size=mbstd_group_size(arch_cfg))
    if privacy and privacy.get("dp"):
        from medgan.training import dp

        dp.check_private_run(config, distributed=ranks.distributed)
        config["privacy"] = dp.resolve_dp(privacy, n_images=n_images,
                                          batch_size=schedule["batch_size"],
                                          steps=schedule["steps"] * loss_obj.n_critic)
    batch_sizes = ([p.batch_size for p in progressive.phases] if progressive
                   else [schedule["batch_size"]])
    for batch in sorted(set(batch_sizes)):
        ranks.check_batch(min(batch, n_images), "schedule batch size")
    loss_obj.ranks = ranks if ranks.distributed else None
    return TrainingRun(data_dir=data_dir, out_dir=out_dir, device=dev, config=config,
                       loss=loss_obj, progressive=progressive, images=data.images, rows=rows,
                       n_images=n_images, sample_ranges=display_ranges(data.images),
                       ranks=ranks, labels=labels)


def mbstd_group_size(architecture: dict[str, Any]) -> int:
    """The minibatch-stddev group size of a resolved architecture config's D (1: none)."""
    if architecture["name"] == ARCHITECTURE_PROGRESSIVE or architecture.get("minibatch_stddev"):
        return int(architecture.get("mbstd_group_size", 4))
    return 1


@dataclass(frozen=True)
class RunFiles:
    """The files of a run directory ``out`` whose interim state (checkpoint, partial log) lives
    in ``state_dir`` (``out`` unless a ``resume_dir`` is given)."""

    out: Path
    state_dir: Path

    @classmethod
    def of(cls, out_dir: Path, resume_dir: str | os.PathLike | None) -> RunFiles:
        return cls(out_dir, out_dir if resume_dir is None else Path(resume_dir))

    @property
    def checkpoint(self) -> Path:
        """The interim checkpoint (written every ``checkpoint_every`` steps and on SIGTERM)."""
        return self.state_dir / "checkpoint.pt"

    @property
    def previous_checkpoint(self) -> Path:
        """The interim checkpoint before the last one, kept until the run completes: what a
        run resumes from when the last one cannot be read (e.g. truncated)."""
        return self.state_dir / "checkpoint.prev.pt"

    @property
    def final_checkpoint(self) -> Path:
        return self.out / "checkpoint.pt"

    @property
    def stats(self) -> Path:
        return self.out / "stats.jsonl"

    @property
    def partial_stats(self) -> Path:
        return self.state_dir / "stats.jsonl.partial"

    @property
    def snapshots(self) -> Path:
        return self.out / "snapshots.jsonl"

    @property
    def partial_snapshots(self) -> Path:
        return self.state_dir / "snapshots.jsonl.partial"

    @property
    def best_checkpoint(self) -> Path:
        """The ``schedule.keep_best`` snapshot's checkpoint."""
        return self.out / "checkpoint_best.pt"

    def resumable(self) -> list[Path]:
        """The checkpoints a run may continue from, newest first: the interim one, the one
        before it, a finished one (those that exist)."""
        paths = dict.fromkeys((self.checkpoint, self.previous_checkpoint, self.final_checkpoint))
        return [p for p in paths if p.is_file()]


def run_record(run: TrainingRun, *, provenance: dict | None, start_step: int, t_start: float,
               train_s: float, images_trained: int, final: dict[str, Any],
               diverged_at: int | None = None) -> dict[str, Any]:
    """The content of ``run.json``: config, provenance, versions, device and timing
    (``diverged_at``: the step where a ``stop_on_divergence`` run stopped, else None)."""
    trained = (diverged_at or run.schedule["steps"]) - start_step
    return {
        "config": run.config, "seed": run.config["seed"], "provenance": provenance or {},
        "medgan_version": __version__, "torch_version": str(torch.__version__),
        "python_version": platform.python_version(), "device": str(run.device),
        "threads": torch.get_num_threads(),
        "timing": {"total_s": time.perf_counter() - t_start, "train_s": train_s,
                   "s_per_step": train_s / max(trained, 1),
                   "images_per_s": images_trained / max(train_s, 1e-9)},
        "resumed_from_step": start_step,
        "diverged_at_step": diverged_at,
        "final": final,
        "files": list(OUTPUT_FILES),
    }
