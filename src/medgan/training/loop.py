"""The training loop: :func:`train_gan` trains an unconditional GAN on a prepared dataset.

:func:`train_gan` is the one training loop: any architecture of :mod:`medgan.models`, any loss
object of :mod:`medgan.training.losses`, optimisers from config. Each training step runs
``n_critic``
discriminator steps (each on a fresh real batch and fresh latents, followed by the loss's
``after_d_step`` hook, e.g. WGAN weight clipping), then ``g_steps`` generator steps (each on fresh
latents), then updates the optional EMA copy of the generator (``schedule.ema_decay``).

A run directory holds (each file written atomically; ``run.json`` last):

* ``checkpoint.pt``: a plain dict (see :mod:`medgan.training.checkpoint`) loadable with
  ``torch.load(..., weights_only=True)``: G, D, both optimisers, the EMA generator (or None),
  ``step``, config, every RNG state (python, numpy, torch, data order, latents), the data
  sampler's position and the running log sums. Written every ``schedule.checkpoint_every``
  steps (0: only at the end), on SIGTERM, and at the end;
* ``stats.jsonl``: one JSON object per logged step: ``step``, ``d_loss``, ``g_loss``, the loss's
  own statistics (``d_real``, ``d_fake``, ``wasserstein``), ``images_per_s`` (real images shown
  to D per second), ``s_per_step`` (seconds per generator step), ``elapsed_s``; progressive
  (``pggan``) runs add the stage of the logged step: ``level``, ``alpha``, ``resolution``,
  ``batch_size``;
* ``samples.png``: 16 images generated (in eval mode) from a fixed latent batch;
* ``losses.png``: the loss curves of ``stats.jsonl`` and, beside them, the snapshot metrics
  (written at the end);
* ``snapshots.jsonl``: the snapshot metrics of ``schedule.snapshot_every``
  (:mod:`medgan.training.snapshots`; empty without snapshots), and with ``schedule.keep_best``
  ``checkpoint_best.pt``, the best snapshot's checkpoint;
* TensorBoard event files in the ``tensorboard`` directory if given
  (:mod:`medgan.training.events`);
* ``run.json``: config, provenance, seed, versions, device and timing.

While training, the log is ``stats.jsonl.partial``, renamed to ``stats.jsonl`` at the end.

Progressive growing: with architecture ``pggan`` the schedule takes ``steps_per_phase``,
``batch_sizes``, ``start_resolution`` and ``reset_optimizer_per_level`` instead of ``batch_size``,
and every step trains the stage (level, fade alpha, batch size) that its step number gives; see
:mod:`medgan.training.progressive`. The final stage is the full resolution, so the samples,
checkpoint and
generated images are full size.

Resuming: if ``out_dir`` holds a ``checkpoint.pt`` (and ``resume=True``, the default) whose config
equals the current one (``schedule`` keys ``steps``, ``log_every``, ``sample_every`` and
``checkpoint_every`` may differ; ``steps`` may grow), training continues from its step, with the
log's rows up to that step kept. On CPU with the same thread count the resumed run's weights equal
an uninterrupted run's bit for bit. SIGTERM makes the loop finish the current step, write a
checkpoint and raise :class:`~medgan.training.checkpoint.TrainingInterrupted` (exit status 75).

Faults: each interim checkpoint is on disk (fsync) before it replaces the last one, which is kept
as ``checkpoint.prev.pt`` until the run completes. A checkpoint that cannot be read (truncated,
corrupt) is refused with a warning naming it, and training resumes from the previous one (the
next interim checkpoint replaces the refused file); none readable is an
:class:`~medgan.errors.InputError` naming it. A full disk while writing a checkpoint or the log
raises :class:`~medgan.errors.DiskFullError` naming the file, the last checkpoint as it was.

Latents: ``schedule.latent_distribution`` ``"normal"`` (default, N(0, 1)) or ``"uniform"``
(U(-1, 1), Delplace) is used for every latent the trainer draws (training and sample latents) and,
recorded in the checkpoint's config, by :func:`~medgan.training.generate.generate_images` (see
:func:`~medgan.training.schedule.draw_latents`).

Speed: ``performance`` switches (bf16 autocast, channels-last, TF32, cuDNN benchmark,
``torch.compile``) act on CUDA only; see :mod:`medgan.training.accel`.

Determinism: ``seed`` seeds python, numpy and torch (model initialisation) and, through
:class:`numpy.random.SeedSequence`, three independent ``torch.Generator`` streams: data order,
training latents, and the fixed sample latents. On CPU, the same seed and thread count give
bit-identical weights.

Data-parallel (``processes`` N > 1, or started by torchrun): every process runs this loop on its
rows of each global batch (:mod:`medgan.training.distributed`, :mod:`medgan.training.ddp`); the
log's means, the stop decision and the checkpoint's log sums are gathered over the processes,
and only the main process (rank 0) writes files. The same seed and N give the same run; 1 and N
processes agree up to float32 summation order.

Where things are (read this module first, then :mod:`medgan.training.step`):
:mod:`~medgan.training.run` resolves the arguments into a ``TrainingRun``;
:mod:`~medgan.training.state` builds, saves and loads the ``TrainingState`` (models, optimisers,
EMA, RNG streams, sampler); :mod:`~medgan.training.data` samples real batches;
:mod:`~medgan.training.step` is one training step; :mod:`~medgan.training.stats` writes the
log; :mod:`~medgan.training.schedule` holds the schedule and optimiser configs;
:mod:`~medgan.training.distributed` the device and the processes.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from medgan.atomic import write_json
from medgan.plotting import plot_training_curves, save_image_grid
from medgan.training import accel
from medgan.training.checkpoint import (
    TrainingInterrupted,
    continue_stats,
    save_checkpoint,
    sigterm_requested,
)
from medgan.training.data import RealBatches
from medgan.training.deadline import JobDeadline, keep_finished, reuse_finished
from medgan.training.distributed import launched_by_torchrun, start_processes
from medgan.training.generate import sample_images
from medgan.training.launch import run_processes
from medgan.training.monitor import Monitor
from medgan.training.progressive import Stage, stage_log
from medgan.training.run import RunFiles, TrainingRun, prepare_run, run_record
from medgan.training.schedule import draw_latents
from medgan.training.state import TrainingState, check_resumable
from medgan.training.stats import StatsLog, row_is_finite
from medgan.training.step import train_step

log = logging.getLogger(__name__)


def train_gan(data_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
              channels: list[str] | None, resolution: int, architecture: dict, loss: dict,
              optimizer: dict, schedule: dict, seed: int, device: str = "auto",
              threads: int | None = None, provenance: dict | None = None,
              progress: bool = True, resume: bool = True,
              resume_dir: str | os.PathLike | None = None,
              performance: dict | None = None,
              split: str | os.PathLike | None = None,
              processes: int | None = None, condition: dict | None = None,
              snapshot_scorer: Any = None,
              tensorboard: str | os.PathLike | None = None,
              privacy: dict | None = None) -> dict:
    """Train a GAN on the prepared dataset in ``data_dir``; write a run directory ``out_dir``.

    ``channels`` selects dataset channels by name (``None``: all). ``architecture``, ``loss``,
    ``optimizer`` (one config for G and D; ``lr_g`` / ``lr_d`` override ``lr``) and ``schedule``
    are config dicts (see :mod:`medgan.models`, :mod:`medgan.training.losses`,
    :func:`~medgan.training.schedule.resolve_optimizer`,
    :func:`~medgan.training.schedule.resolve_schedule`). ``resume``: continue from
    ``out_dir/checkpoint.pt`` if present, or from the one before it if that cannot be read
    (its config must match, else :class:`InputError` naming the file and the differing key);
    ``False`` starts afresh and overwrites it. ``resume_dir`` (default ``out_dir``) holds the
    interim checkpoints and the partial log instead, and keeps only the final state at the end
    (``finished/``, hard links; the next run takes it up instead of training again, see
    :mod:`medgan.training.deadline`): a directory that a workflow manager does not delete before
    retrying a job (Snakemake removes a job's declared outputs). In a SLURM job, training stops
    as on SIGTERM a margin before the job's end time. ``performance``: CUDA speed switches of
    :mod:`medgan.training.accel` (no-ops on CPU;
    recorded in the config, but a resumed run may change them). ``split``: a ``split.tsv``
    (:mod:`medgan.data.split`); only its training rows are trained on (None: every image).
    ``condition`` (``{"column": <meta.tsv column>, "embed_dim": 8}``): a class-conditional GAN
    (:mod:`medgan.models.conditional`), each real batch with its classes; rows without a class
    are not trained on. ``privacy`` (``{"dp": {"epsilon": ..., "delta": ...,
    "max_grad_norm": ...}}``): D trained with DP-SGD (:mod:`medgan.training.dp`); the
    accountant's (epsilon, delta) go into ``run.json`` and the checkpoint. Returns the
    ``run.json`` content. On SIGTERM raises
    :class:`~medgan.training.checkpoint.TrainingInterrupted` after writing a checkpoint.

    Data-parallel training: ``processes`` N > 1 runs this function on N processes of this
    machine under ``torchrun`` (:mod:`medgan.training.launch`; one GPU each on CUDA), and a
    process that torchrun started joins its process group and trains its shard of every batch
    (:mod:`medgan.training.distributed`); the schedule's batch sizes are global batches.

    Monitoring: ``snapshot_scorer`` scores the snapshots of ``schedule.snapshot_every``
    (:mod:`medgan.training.snapshots`; a torchrun launch rebuilds it in every process from its
    ``spec`` and ``entry_module``); ``tensorboard``: a directory for TensorBoard event files
    (:mod:`medgan.training.events`; None: none).
    """
    t_start = time.perf_counter()
    args = {"channels": channels, "resolution": resolution, "architecture": architecture,
            "loss": loss, "optimizer": optimizer, "schedule": schedule, "seed": seed,
            "threads": threads, "performance": performance, "split": split,
            "condition": condition, "privacy": privacy}
    if processes is not None and processes > 1 and not launched_by_torchrun():
        scorer = {} if snapshot_scorer is None else {"snapshot_scorer": snapshot_scorer.spec}
        return run_processes(processes, {
            "data_dir": str(data_dir), "out_dir": str(out_dir), **args, "device": device,
            "split": None if split is None else str(split), "provenance": provenance,
            "progress": progress, "resume": resume, **scorer,
            "tensorboard": None if tensorboard is None else str(tensorboard),
            "resume_dir": None if resume_dir is None else str(resume_dir)},
            module=getattr(snapshot_scorer, "entry_module", "medgan.training"))
    ranks, dev = start_processes(device)
    run = prepare_run(data_dir, out_dir, device=dev, ranks=ranks, **args)
    state = TrainingState.create(run.config, device=run.device, n_images=run.n_images,
                                 batch_size=run.first_batch_size, ranks=run.ranks)
    loop = TrainingLoop(run, state, files=RunFiles.of(run.out_dir, resume_dir),
                        resume=resume, progress=progress, snapshot_scorer=snapshot_scorer,
                        tensorboard=tensorboard)
    loop.train()
    return loop.finish(t_start=t_start, provenance=provenance)


class TrainingLoop:
    """Runs the steps of ``run`` on ``state`` from where it stands to ``schedule.steps``;
    writes the log, checkpoints and samples of the run directory ``files``."""

    def __init__(self, run: TrainingRun, state: TrainingState, *, files: RunFiles,
                 resume: bool = True, progress: bool = True, snapshot_scorer: Any = None,
                 tensorboard: str | os.PathLike | None = None):
        self.run, self.state, self.files = run, state, files
        self.ranks = run.ranks
        self.main = self.ranks.is_main  # only the main process writes files
        self.progress = progress and self.main
        self.batches = RealBatches(run.images, run.rows, state.sampler, run.device,
                                   run.performance, self.ranks, labels=run.labels)
        self.batch_size = state.sampler.batch_size
        self.stage: Stage | None = None  # progressive runs: the stage of the current step
        # a gradient penalty differentiates D's input gradient: keep that D step in float32
        self.autocast_d = functools.partial(accel.autocast, run.performance, run.device,
                                            enabled=not accel.has_gradient_penalty(run.loss))
        # likewise the generator steps of a path-length regularised run (stylegan2 pl_weight)
        self.autocast_g = functools.partial(accel.autocast, run.performance, run.device,
                                            enabled=not getattr(run.loss, "pl_weight", 0))
        state.loss = run.loss  # a loss's own state (stylegan2, ADA) joins the checkpoint
        self.start_step, rows = 0, []
        if resume and files.state_dir != files.out:  # a finished run whose outputs were deleted
            if self.main:
                reuse_finished(files.state_dir, checkpoint=files.checkpoint,
                               stats=files.partial_stats, snapshots=files.partial_snapshots,
                               check=lambda path, ckpt: check_resumable(path, ckpt, run.config))
            self.ranks.barrier()
        found = files.resumable()
        self.trusted: Path | None = None  # the interim checkpoint file known to be good
        if resume and found:
            self.start_step = self.resume_last_good(found)
            if self.main:
                rows = continue_stats([files.partial_stats, files.stats], self.start_step)
        if self.main:
            files.out.mkdir(parents=True, exist_ok=True)
            files.state_dir.mkdir(parents=True, exist_ok=True)
        self.log = StatsLog(files.partial_stats if self.main else None, rows,
                            run_name=str(files.out))
        self.train_s = 0.0
        self.diverged_at: int | None = None  # stop_on_divergence: where the losses broke
        self.deadline = JobDeadline.from_environment()  # a SLURM job's end time, else None
        self.monitor = Monitor.open(run, state, files, scorer=snapshot_scorer,
                                    tensorboard=tensorboard, start_step=self.start_step)

    def resume_last_good(self, found: list[Path]) -> int:
        """Resume from the newest readable checkpoint of ``found``; a refused one (truncated,
        corrupt) is named in a warning, and left for the next interim checkpoint to replace."""
        path, step, refused = self.state.resume_last_good(found)
        if refused and self.main:
            log.warning("%s; resuming from the last good checkpoint instead: %s (step %d)",
                        "; ".join(map(str, refused)), path, step)
        if path in (self.files.checkpoint, self.files.previous_checkpoint):
            self.trusted = path
        return step

    # --- what one step draws ------------------------------------------------------------------

    def next_real(self) -> torch.Tensor:
        """The next real batch (the one place training reads real images); a class-conditional
        run's G and D take its classes (the state's label slot)."""
        batch = self.batches.next(self.batch_size, self.stage)
        if self.state.slot is not None:
            self.state.slot.labels = self.batches.labels
        return batch

    def next_z(self) -> torch.Tensor:
        """Fresh training latents for one batch (this process's rows of the global batch's;
        a DP run: one per real image of the last Poisson batch)."""
        n = self.batch_size if self.state.privacy is None else self.state.privacy.latent_batch
        return self.ranks.take(draw_latents(
            n, self.state.G.latent_dim,
            distribution=self.run.schedule["latent_distribution"],
            generator=self.state.generators["noise"], device=self.run.device))

    # --- the loop -----------------------------------------------------------------------------

    def train(self) -> None:
        """Train to ``schedule.steps``; on a stop request, checkpoint and raise
        :class:`TrainingInterrupted`. A ``stop_on_divergence`` run whose logged losses become
        non-finite ends there, recorded as diverged (``run.json`` ``diverged_at_step``)."""
        steps = self.run.schedule["steps"]
        bar = tqdm(total=steps, initial=self.start_step, desc=f"train {self.files.out.name}",
                   unit="step", disable=not self.progress, mininterval=1.0)
        with sigterm_requested() as sigterm, self.log, self.monitor, self.batches:
            for step in range(self.start_step + 1, steps + 1):
                self.train_one(step)
                bar.update(1)
                if step % self.run.schedule["log_every"] == 0 or step == steps:
                    if not self.log_step(step, bar):
                        self.diverged_at = step
                        break
                if self.monitor.snapshot_due(step, steps):
                    self.snapshot(step)
                if step == steps:
                    break
                stop = self.stop_requested(sigterm)
                every = self.run.schedule["checkpoint_every"]
                if stop or (every and step % every == 0):
                    self.save_checkpoint(step)
                if stop:
                    bar.close()
                    interrupted = TrainingInterrupted(self.files.checkpoint, step)
                    log.warning("%s", interrupted)
                    raise interrupted
                sample_every = self.run.schedule["sample_every"]
                if sample_every and step % sample_every == 0:
                    with self.log.paused():
                        self.write_samples(step)
            bar.close()
            self.train_s = self.log.train_s
            self.save_final_state(self.diverged_at or steps)

    def log_step(self, step: int, bar: tqdm) -> bool:
        """Write the log row of ``step``; whether its values are finite (a non-finite row
        raises ``FloatingPointError`` unless the schedule says ``stop_on_divergence``)."""
        tolerate = self.run.schedule.get("stop_on_divergence", False)
        row = self.log.write_row(step, stage_log(self.stage) if self.stage else {},
                                 self.ranks.mean(self.state.stats.means()),
                                 tolerate_divergence=tolerate)
        bar.set_postfix(d=f"{row['d_loss']:.3g}", g=f"{row['g_loss']:.3g}")
        self.monitor.logged(step, row)
        if row_is_finite(row):
            return True
        log.warning("%s: training diverged at step %d, stopping: %s", self.files.out, step, row)
        return False

    def save_final_state(self, step: int) -> None:
        """The final checkpoint (kept in the resume directory until the outputs are accepted:
        a job that ends after its time limit is failed and its outputs deleted) and samples."""
        self.save_checkpoint(step, final=True)
        if self.main and self.files.state_dir != self.files.out:
            keep_finished(self.files.state_dir, checkpoint=self.files.final_checkpoint,
                          stats=self.files.partial_stats, snapshots=self.files.partial_snapshots)
        if self.diverged_at is None:
            self.write_samples(step)
        elif self.main:  # non-finite weights: an empty grid rather than a failed plot
            channels = self.run.config["channels"]
            save_image_grid(np.zeros((1, len(channels), 4, 4), np.float32),
                            self.files.out / "samples.png", channel_names=channels,
                            title=f"diverged at step {self.diverged_at}")

    def train_one(self, step: int) -> None:
        """Training step ``step``: enter its stage (progressive), train, update the EMA."""
        state, progressive = self.state, self.run.progressive
        if progressive:
            stage = progressive.enter(step, state.stage_models, state.optimizers)
            self.stage = stage._replace(
                batch_size=min(stage.batch_size, self.run.n_images))
            self.batch_size = self.stage.batch_size
        train_step(state.G_train, state.D_train, self.run.loss, state.opt_g, state.opt_d,
                   self.next_real, self.next_z, state.stats,
                   autocast_d=self.autocast_d, autocast_g=self.autocast_g, **state.frozen_models)
        if state.ema:
            state.ema.update(state.G, step=step)
        self.log.count_step(self.run.loss.n_critic * self.batch_size)

    def stop_requested(self, sigterm: dict[str, bool]) -> bool:
        """Whether to stop after this step (checkpoint, then :class:`TrainingInterrupted`):
        SIGTERM arrived, or the SLURM job's end time is near (:mod:`medgan.training.deadline`),
        in any process: all stop after the same step. The one place the loop decides to stop
        early."""
        due = self.deadline is not None and self.deadline.due()
        return self.ranks.any(sigterm["stop"] or due)  # every process stops after the same step

    # --- files --------------------------------------------------------------------------------

    def snapshot(self, step: int) -> None:
        """The snapshot metrics of ``step`` (:mod:`medgan.training.snapshots`), and the
        ``keep_best`` checkpoint if it is the best so far; not counted as training time."""
        with self.log.paused():
            if self.monitor.snapshot(step, self.state.sample_generator):
                self.save_checkpoint(step, path=self.files.best_checkpoint)

    def save_checkpoint(self, step: int, *, final: bool = False, path: Path | None = None
                        ) -> None:
        """The checkpoint after ``step``: the interim one, (``final``) the run's output, or the
        one at ``path``. Every process takes part (the log sums are gathered); the main one
        writes it."""
        with self.log.paused():
            self.log.flush()
            path = path or (self.files.final_checkpoint if final else self.files.checkpoint)
            checkpoint = self.state.checkpoint(step)
            if self.main and path == self.files.checkpoint:
                self.save_interim(checkpoint)
            elif self.main:
                save_checkpoint(path, checkpoint)
            self.ranks.barrier()

    def save_interim(self, checkpoint: dict[str, Any]) -> None:
        """Write the interim checkpoint, keeping the one it replaces as the previous one if
        that is known to be good (written or resumed from by this run); else keep a previous
        one that is (resumed from), or drop it (another run's, or unreadable)."""
        files = self.files
        if self.trusted == files.checkpoint:
            save_checkpoint(files.checkpoint, checkpoint, previous=files.previous_checkpoint)
        else:
            if self.trusted != files.previous_checkpoint:
                files.previous_checkpoint.unlink(missing_ok=True)
            save_checkpoint(files.checkpoint, checkpoint)
        self.trusted = files.checkpoint

    def write_samples(self, step: int) -> None:
        if not self.main:
            return
        save_image_grid(sample_images(self.state.sample_generator, self.state.fixed_z,
                                      labels=self.state.fixed_labels),
                        self.files.out / "samples.png", channel_names=self.run.config["channels"],
                        value_ranges=self.run.sample_ranges,
                        ncols=8 if len(self.run.config["channels"]) == 1 else 4)
        self.monitor.samples(step, self.files.out / "samples.png")

    def finish(self, *, t_start: float, provenance: dict | None) -> dict[str, Any]:
        """Put the log in place, plot it, empty the resume directory (but for the final state
        that :func:`~medgan.training.deadline.keep_finished` kept) and write ``run.json``
        (last: it marks the run complete; the main process only); returns its content."""
        if self.main:
            self._write_outputs()
        record = run_record(self.run, provenance=provenance, start_step=self.start_step,
                            t_start=t_start, train_s=self.train_s,
                            images_trained=self.log.images_trained, final=self.log.last_row,
                            diverged_at=self.diverged_at)
        if self.state.privacy is not None:
            record["privacy"] = self.state.privacy.report()
        if self.main:
            write_json(self.files.out / "run.json", record)
        self.ranks.barrier()
        return record

    def _write_outputs(self) -> None:
        files, config = self.files, self.run.config
        self.log.close_into(files.stats)
        self.monitor.close_into()
        plot_training_curves(files.stats, files.snapshots, files.out / "losses.png",
                             title=f"{files.out.name}: {config['architecture']['name']}, "
                                   f"{config['loss']['name']}")
        files.previous_checkpoint.unlink(missing_ok=True)
        if files.state_dir != files.out:
            files.checkpoint.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                files.state_dir.rmdir()  # if empty
