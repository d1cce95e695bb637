"""Train an unconditional GAN on a prepared dataset; read its generator back.

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
* ``losses.png``: the loss curves of ``stats.jsonl`` (written at the end);
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

Latents: ``schedule.latent_distribution`` ``"normal"`` (default, N(0, 1)) or ``"uniform"``
(U(-1, 1), Delplace) is used for every latent the trainer draws (training and sample latents) and,
recorded in the checkpoint's config, by :func:`generate_images` (see :func:`draw_latents`).

Speed: ``performance`` switches (bf16 autocast, channels-last, TF32, cuDNN benchmark,
``torch.compile``) act on CUDA only; see :mod:`medgan.training.accel`.

Determinism: ``seed`` seeds python, numpy and torch (model initialisation) and, through
:class:`numpy.random.SeedSequence`, three independent ``torch.Generator`` streams: data order,
training latents, and the fixed sample latents. On CPU, the same seed and thread count give
bit-identical weights.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
import platform
import random
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from medgan import __version__
from medgan.atomic import write_json, write_text
from medgan.data.prepared import load_prepared
from medgan.data.split import split_indices
from medgan.errors import InputError
from medgan.models import build_discriminator, build_generator, resolved_config
from medgan.plotting import display_range, plot_loss_curves, save_image_grid
from medgan.training import accel
from medgan.training.checkpoint import (
    TrainingInterrupted,
    capture_rng_state,
    config_differences,
    continue_stats,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
    sigterm_requested,
)
from medgan.training.losses import build_loss
from medgan.training.progressive import ARCHITECTURE as ARCHITECTURE_PROGRESSIVE
from medgan.training.progressive import (
    PROGRESSIVE_DEFAULTS,
    ProgressiveSchedule,
    real_batch,
    resolve_progressive_schedule,
    stage_log,
)

log = logging.getLogger(__name__)

SCHEDULE_DEFAULTS: dict[str, Any] = {"steps": 1000, "batch_size": 64, "log_every": 10,
                                     "sample_every": 100, "checkpoint_every": 0,
                                     "ema_decay": None, "latent_distribution": "normal"}
# schedule keys recorded only when given (older checkpoints stay resumable)
SCHEDULE_OPTIONAL = {"stop_on_divergence": False}
OPTIMIZER_DEFAULTS: dict[str, dict[str, Any]] = {
    "adam": {"lr": 2e-4, "betas": [0.5, 0.999], "eps": 1e-8},  # Radford / Han DCGAN
    "rmsprop": {"lr": 5e-5, "alpha": 0.99, "eps": 1e-8},  # Arjovsky / Han WGAN
}
# per-model learning rates overriding ``lr``; recorded only when given
OPTIMIZER_OPTIONAL = ("lr_g", "lr_d")
# schedule keys a resumed run may change: they do not change the weights
# (and ``performance``: speed switches, no-ops on CPU)
RESUMABLE_CHANGES = frozenset([*(f"schedule.{k}" for k in ("steps", "log_every", "sample_every",
                                                            "checkpoint_every")),
                               "performance"])
LATENT_DISTRIBUTIONS = ("normal", "uniform")  # N(0, 1); U(-1, 1) (Delplace)
N_SAMPLES = 16  # images in samples.png
PRELOAD_BYTES = 1 << 30  # datasets up to this size are copied to the device once
CHECKPOINT_FORMAT = "medgan.gan/1"


# --- config ------------------------------------------------------------------------------------

def _positive_int(value: Any, what: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return value


def resolve_schedule(schedule: dict[str, Any], *, architecture: str | None = None,
                     resolution: int | None = None) -> dict[str, Any]:
    """``schedule`` with defaults filled in; unknown keys or bad values -> ``ValueError``.

    For ``architecture="pggan"`` (which needs ``resolution``) the progressive keys of
    :mod:`medgan.training.progressive` apply instead of ``batch_size``; other architectures refuse
    them.
    """
    progressive = architecture == ARCHITECTURE_PROGRESSIVE
    misplaced = [k for k in schedule if k in PROGRESSIVE_DEFAULTS]
    if misplaced and not progressive:
        raise ValueError(f"schedule key(s) {misplaced} apply only to architecture pggan, "
                         f"not {architecture!r}")
    known = {**SCHEDULE_DEFAULTS, **SCHEDULE_OPTIONAL,
             **(PROGRESSIVE_DEFAULTS if progressive else {})}
    unknown = [k for k in schedule if k not in known]
    if unknown:
        raise ValueError(f"unknown schedule key(s) {unknown}; known: {sorted(known)}")
    cfg = {**SCHEDULE_DEFAULTS, **schedule}
    if progressive:
        if resolution is None:
            raise ValueError("a pggan schedule needs the target resolution")
        _positive_int(schedule.get("steps_per_phase", 1), "schedule steps_per_phase")
        _positive_int(schedule.get("start_resolution", 4), "schedule start_resolution", minimum=4)
        cfg = resolve_progressive_schedule(cfg, schedule, resolution)
    else:
        _positive_int(cfg["batch_size"], "schedule batch_size")
    _positive_int(cfg["steps"], "schedule steps")
    if cfg["latent_distribution"] not in LATENT_DISTRIBUTIONS:
        raise ValueError(f"schedule latent_distribution must be one of {list(LATENT_DISTRIBUTIONS)}"
                         f", got {cfg['latent_distribution']!r}")
    if not isinstance(cfg.get("stop_on_divergence", False), bool):
        raise ValueError(f"schedule stop_on_divergence must be true/false, "
                         f"got {cfg['stop_on_divergence']!r}")
    _positive_int(cfg["log_every"], "schedule log_every")
    _positive_int(cfg["sample_every"], "schedule sample_every (0 = only at the end)", minimum=0)
    _positive_int(cfg["checkpoint_every"], "schedule checkpoint_every (0 = only at the end)",
                  minimum=0)
    ema = cfg["ema_decay"]
    if ema is not None:
        try:  # YAML 1.1 reads "9.99e-1"-like values without a dot as strings
            cfg["ema_decay"] = float(ema) if not isinstance(ema, bool) else float("nan")
        except (TypeError, ValueError):
            cfg["ema_decay"] = float("nan")
        if not 0.0 < cfg["ema_decay"] < 1.0:
            raise ValueError(f"schedule ema_decay must be null or a number in (0, 1), got {ema!r}")
    return cfg


def resolve_optimizer(cfg: dict[str, Any]) -> dict[str, Any]:
    """An optimizer config with defaults filled in; unknown names/keys -> ``ValueError``."""
    if not isinstance(cfg, dict) or cfg.get("name") not in OPTIMIZER_DEFAULTS:
        raise ValueError(f"optimizer config must name one of {sorted(OPTIMIZER_DEFAULTS)}, "
                         f"got {cfg!r}")
    defaults = OPTIMIZER_DEFAULTS[cfg["name"]]
    unknown = [k for k in cfg if k != "name" and k not in defaults and k not in OPTIMIZER_OPTIONAL]
    if unknown:
        raise ValueError(f"unknown {cfg['name']} optimizer key(s) {unknown}; "
                         f"known: {sorted(['name', *defaults, *OPTIMIZER_OPTIONAL])}")
    out = {"name": cfg["name"], **defaults, **cfg}
    try:  # YAML 1.1 reads "5e-5" (no dot) as a string: accept numeric strings
        for key in out:
            if key == "betas":
                out[key] = [float(b) for b in out[key]]
            elif key != "name":
                out[key] = float(out[key])
    except (TypeError, ValueError):
        raise ValueError(f"optimizer {key} must be a number, got {out[key]!r}") from None
    for key in ("lr", *OPTIMIZER_OPTIONAL):
        if key in out and not out[key] > 0:
            raise ValueError(f"optimizer {key} must be > 0, got {out[key]!r}")
    if "betas" in out and len(out["betas"]) != 2:
        raise ValueError(f"adam betas must be two numbers, got {cfg['betas']!r}")
    return out


def build_optimizer(params: Iterable[torch.nn.Parameter], cfg: dict[str, Any], *,
                    model: str | None = None) -> torch.optim.Optimizer:
    """``{"name": "adam", "lr": 2e-4, "betas": [0.5, 0.999]}`` or ``{"name": "rmsprop", ...}``.

    ``model`` ``"g"`` or ``"d"`` picks ``lr_g`` / ``lr_d`` over ``lr`` when the config has it.
    """
    cfg = resolve_optimizer(cfg)
    lr = cfg.get(f"lr_{model}", cfg["lr"]) if model else cfg["lr"]
    if cfg["name"] == "adam":
        return torch.optim.Adam(params, lr=lr, betas=tuple(cfg["betas"]), eps=cfg["eps"])
    return torch.optim.RMSprop(params, lr=lr, alpha=cfg["alpha"], eps=cfg["eps"])


def draw_latents(n: int, latent_dim: int, *, distribution: str = "normal",
                 generator: torch.Generator | None = None,
                 device: torch.device | str | None = None) -> torch.Tensor:
    """``n`` latents: ``"normal"`` N(0, 1) or ``"uniform"`` U(-1, 1) (Delplace), drawn from
    ``generator`` (on ``device``, which must match the generator's)."""
    if distribution == "normal":
        return torch.randn(n, latent_dim, generator=generator, device=device)
    if distribution == "uniform":
        return torch.rand(n, latent_dim, generator=generator, device=device) * 2.0 - 1.0
    raise ValueError(f"latent distribution must be one of {list(LATENT_DISTRIBUTIONS)}, "
                     f"got {distribution!r}")


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> cuda if available, else cpu."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


# --- data --------------------------------------------------------------------------------------

class EpochSampler:
    """Batch indices from shuffled epochs of ``n`` items, drawn from a seeded generator.

    Incomplete last batches are dropped when ``n >= batch_size``; a dataset smaller than a
    batch is used whole as every batch.
    """

    def __init__(self, n: int, batch_size: int, generator: torch.Generator):
        self.n, self.batch_size, self.generator = n, min(batch_size, n), generator
        self.perm: torch.Tensor | None = None
        self.pos = 0

    def next(self, batch_size: int | None = None) -> torch.Tensor:
        """The next batch of indices; ``batch_size`` (capped at ``n``) overrides the default."""
        size = self.batch_size if batch_size is None else min(batch_size, self.n)
        if self.perm is None or self.pos + size > self.n:
            self.perm = torch.randperm(self.n, generator=self.generator)
            self.pos = 0
        idx = self.perm[self.pos:self.pos + size]
        self.pos += size
        return idx

    def state_dict(self) -> dict[str, Any]:
        return {"perm": self.perm, "pos": self.pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.perm, self.pos = state["perm"], int(state["pos"])


def _batch_reader(images: np.ndarray, device: torch.device, rows: np.ndarray | None = None
                  ) -> Callable[[torch.Tensor], torch.Tensor]:
    """Index -> batch on ``device``: from a device copy of small datasets, else from the memmap.

    ``rows``: the dataset rows that index ``i`` refers to (the training split); None: all.
    """
    n_rows = images.shape[0] if rows is None else len(rows)
    if images[:1].nbytes * n_rows <= PRELOAD_BYTES:
        subset = images if rows is None else images[rows]
        data = torch.from_numpy(np.array(subset, dtype=np.float32)).to(device)
        return lambda idx: data[idx.to(device)]
    if rows is None:
        return lambda idx: torch.from_numpy(images[idx.numpy()]).to(device, non_blocking=True)
    return lambda idx: torch.from_numpy(images[rows[idx.numpy()]]).to(device, non_blocking=True)


def _load_training_data(data_dir: Path, channels: list[str] | None, resolution: int):
    data = load_prepared(data_dir, channels=channels)
    n, _, h, w = data.images.shape
    if n < 1:
        raise InputError(data_dir, "the prepared dataset holds no images")
    if (h, w) != (resolution, resolution):
        raise InputError(data_dir, f"images are {h}x{w} px but training expects resolution "
                                   f"{resolution} (dataset.json resolution: "
                                   f"{data.info.get('resolution')!r})")
    return data


def _dataset_summary(data_dir: Path, info: dict[str, Any], n: int,
                     split: str | os.PathLike | None = None,
                     rows: np.ndarray | None = None) -> dict[str, Any]:
    stats = info.get("channel_stats") or {}
    held_out = None
    if rows is not None:
        # a digest of the training rows: a resumed run must train on the same images
        held_out = {"path": str(split), "n_train": int(len(rows)),
                    "rows_sha256": hashlib.sha256(np.asarray(rows, np.int64).tobytes()).hexdigest()}
    return {"path": str(data_dir), "n_images": n, "split": held_out,
            "channels": list(info["channels"]),
            "resolution": info.get("resolution"), "value_range": info.get("value_range"),
            "channel_stats": {c: stats[c] for c in info["channels"] if c in stats}}


def _seeds(seed: int, n: int) -> list[int]:
    """``n`` independent 63-bit seeds derived from ``seed``."""
    return [int(s) for s in np.random.SeedSequence(seed).generate_state(n, dtype=np.uint64) >> 1]


# --- training ----------------------------------------------------------------------------------

class StatsAccumulator:
    """Running sums of scalar tensors, kept on the device; :meth:`means` syncs once."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, values: dict[str, torch.Tensor]) -> None:
        for k, v in values.items():
            v = v.detach()
            self.sums[k] = self.sums[k] + v if k in self.sums else v.clone()
            self.counts[k] = self.counts.get(k, 0) + 1

    def means(self) -> dict[str, float]:
        """Mean of each key since the last call (one device-to-host copy), then reset."""
        keys = list(self.sums)
        values = torch.stack([self.sums[k].float() for k in keys]).cpu().tolist() if keys else []
        out = {k: v / self.counts[k] for k, v in zip(keys, values, strict=True)}
        self.sums.clear()
        self.counts.clear()
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"sums": dict(self.sums), "counts": dict(self.counts)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sums, self.counts = dict(state["sums"]), {k: int(v) for k, v in
                                                       state["counts"].items()}


class GeneratorEMA:
    """An exponential moving average of a generator's parameters (Karras et al.); buffers
    (BatchNorm statistics) are copied. ``model`` is the averaged generator, in eval mode."""

    def __init__(self, G: torch.nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(G).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, G: torch.nn.Module) -> None:
        for p_ema, p in zip(self.model.parameters(), G.parameters(), strict=True):
            p_ema.lerp_(p, 1.0 - self.decay)
        for b_ema, b in zip(self.model.buffers(), G.buffers(), strict=True):
            b_ema.copy_(b)


def _grad_norm(module: torch.nn.Module) -> torch.Tensor:
    """L2 norm of all parameter gradients of ``module``: a device tensor, no host sync."""
    norms = [p.grad.detach().norm() for p in module.parameters() if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(norms)) if norms else torch.zeros(())


def train_step(G: torch.nn.Module, D: torch.nn.Module, loss, opt_g: torch.optim.Optimizer,
               opt_d: torch.optim.Optimizer, next_real: Callable[[], torch.Tensor],
               next_z: Callable[[], torch.Tensor], stats: StatsAccumulator, *,
               autocast_d: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
               autocast_g: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
               ) -> None:
    """One training step: ``loss.n_critic`` discriminator steps, then ``loss.g_steps``
    generator steps.

    Each discriminator step uses a fresh real batch and fresh latents, and is followed by the
    loss's ``after_d_step`` hook; each generator step uses fresh latents. Losses, the norms of
    the parameter gradients (``d_grad_norm``, ``g_grad_norm``) and loss statistics are added to
    ``stats`` (no host sync). ``autocast_d`` / ``autocast_g`` give the
    context (e.g. :func:`medgan.training.accel.autocast`) around the forward passes and loss of the
    discriminator / generator steps; backward runs outside it.
    """
    G.train()
    D.train()
    for _ in range(loss.n_critic):
        real = next_real()
        with autocast_d():
            with torch.no_grad():
                fake = G(next_z())
            d_loss, d_stats = loss.d_loss(D, real, fake)
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        d_grad_norm = _grad_norm(D)
        opt_d.step()
        loss.after_d_step(D)
        stats.add({"d_loss": d_loss, "d_grad_norm": d_grad_norm, **d_stats})

    D.requires_grad_(False)  # no parameter gradients for D in the generator step
    try:
        for _ in range(getattr(loss, "g_steps", 1)):
            with autocast_g():
                g_loss, g_stats = loss.g_loss(D, G(next_z()))
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            g_grad_norm = _grad_norm(G)
            opt_g.step()
            stats.add({"g_loss": g_loss, "g_grad_norm": g_grad_norm, **g_stats})
    finally:
        D.requires_grad_(True)


def train_gan(data_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
              channels: list[str] | None, resolution: int, architecture: dict, loss: dict,
              optimizer: dict, schedule: dict, seed: int, device: str = "auto",
              threads: int | None = None, provenance: dict | None = None,
              progress: bool = True, resume: bool = True,
              resume_dir: str | os.PathLike | None = None,
              performance: dict | None = None,
              split: str | os.PathLike | None = None) -> dict:
    """Train a GAN on the prepared dataset in ``data_dir``; write a run directory ``out_dir``.

    ``channels`` selects dataset channels by name (``None``: all). ``architecture``, ``loss``,
    ``optimizer`` (one config for G and D; ``lr_g`` / ``lr_d`` override ``lr``) and ``schedule``
    are config dicts (see :mod:`medgan.models`, :mod:`medgan.training.losses`,
    :func:`resolve_optimizer`,
    :func:`resolve_schedule`). ``resume``: continue from ``out_dir/checkpoint.pt`` if present
    (its config must match, else :class:`InputError` naming the file and the differing key);
    ``False`` starts afresh and overwrites it. ``resume_dir`` (default ``out_dir``) holds the
    interim checkpoints and the partial log instead, and is emptied at the end: a directory that
    a workflow manager does not delete before retrying a job (Snakemake removes a job's declared
    outputs). ``performance``: CUDA speed switches of :mod:`medgan.training.accel` (no-ops on CPU;
    recorded in the config, but a resumed run may change them). ``split``: a ``split.tsv``
    (:mod:`medgan.data.split`); only its training rows are trained on (None: every image). Returns
    the ``run.json`` content. On SIGTERM raises
    :class:`~medgan.training.checkpoint.TrainingInterrupted` after writing a checkpoint.
    """
    t_start = time.perf_counter()
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    _positive_int(seed, "seed", minimum=0)
    if threads is not None:
        torch.set_num_threads(_positive_int(threads, "threads"))
    dev = resolve_device(device)

    arch_cfg = resolved_config(architecture)
    schedule = resolve_schedule(schedule, architecture=arch_cfg["name"], resolution=resolution)
    progressive = (ProgressiveSchedule(schedule, resolution)
                   if arch_cfg["name"] == ARCHITECTURE_PROGRESSIVE else None)
    loss_obj = build_loss(loss)
    opt_cfg = resolve_optimizer(optimizer)
    perf = accel.resolve_performance(performance)
    accel.configure_backends(perf, dev)

    data = _load_training_data(data_dir, channels, resolution)
    names = list(data.info["channels"])
    rows = None if split is None else split_indices(split, data.images.shape[0])[0]
    n_images = data.images.shape[0] if rows is None else len(rows)
    if arch_cfg.get("output_activation") == "tanh":
        lo, hi = data.info.get("value_range", [-1.0, 1.0])
        if lo < -1.0 or hi > 1.0:
            warnings.warn(f"{data_dir}: values span [{lo:.3g}, {hi:.3g}] but the generator's "
                          "tanh output is limited to [-1, 1]", stacklevel=2)

    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - seed legacy global state too
    torch.manual_seed(seed)
    data_seed, noise_seed, fixed_seed = _seeds(seed, 3)
    G = build_generator(arch_cfg, channels=len(names), resolution=resolution).to(dev)
    D = build_discriminator(arch_cfg, channels=len(names), resolution=resolution).to(dev)
    G_train, D_train = accel.prepare_module(G, perf, dev), accel.prepare_module(D, perf, dev)
    ema = GeneratorEMA(G, schedule["ema_decay"]) if schedule["ema_decay"] else None
    opt_g = build_optimizer(G.parameters(), opt_cfg, model="g")
    opt_d = build_optimizer(D.parameters(), opt_cfg, model="d")
    data_gen = torch.Generator().manual_seed(data_seed)
    noise_gen = torch.Generator(device=dev).manual_seed(noise_seed)
    latent_distribution = schedule["latent_distribution"]
    fixed_z = draw_latents(N_SAMPLES, G.latent_dim, distribution=latent_distribution,
                           generator=torch.Generator().manual_seed(fixed_seed)).to(dev)
    sampler = EpochSampler(n_images, progressive.max_batch_size() if progressive
                           else schedule["batch_size"], data_gen)
    read_batch = _batch_reader(data.images, dev, rows)
    batch, stage = sampler.batch_size, None  # progressive runs: per step
    stats = StatsAccumulator()
    generators = {"data": data_gen, "noise": noise_gen}

    config = {"architecture": arch_cfg, "loss": loss_obj.config, "optimizer": opt_cfg,
              "schedule": schedule, "channels": names, "resolution": resolution, "seed": seed,
              "dataset": _dataset_summary(data_dir, data.info, n_images, split, rows),
              "performance": perf}
    sample_ranges = _display_ranges(data.images)

    def write_samples() -> None:
        save_image_grid(sample_images(ema.model if ema else G, fixed_z), out_dir / "samples.png",
                        channel_names=names, value_ranges=sample_ranges,
                        ncols=8 if len(names) == 1 else 4)

    def noise() -> torch.Tensor:
        return draw_latents(batch, G.latent_dim, distribution=latent_distribution,
                            generator=noise_gen, device=dev)

    def next_real() -> torch.Tensor:
        images = read_batch(sampler.next(batch))
        return accel.prepare_batch(images if stage is None else real_batch(images, stage), perf)

    # a gradient penalty differentiates D's input gradient: keep that D step in float32
    d_precision = not accel.has_gradient_penalty(loss_obj)

    def autocast_d() -> contextlib.AbstractContextManager:
        return accel.autocast(perf, dev, enabled=d_precision)

    def autocast_g() -> contextlib.AbstractContextManager:
        return accel.autocast(perf, dev)

    def training_state(step: int) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "generator": G.state_dict(), "discriminator": D.state_dict(),
            "generator_ema": ema.model.state_dict() if ema else None,
            "g_optimizer": opt_g.state_dict(), "d_optimizer": opt_d.state_dict(),
            "step": step, "config": config, "rng": capture_rng_state(generators),
            "sampler": sampler.state_dict(), "log_sums": stats.state_dict(),
            "fixed_z": fixed_z.cpu(),
            "medgan_version": __version__, "torch_version": str(torch.__version__),
        }

    steps, n_critic = schedule["steps"], loss_obj.n_critic
    state_dir = out_dir if resume_dir is None else Path(resume_dir)
    ckpt_path, final_ckpt_path = state_dir / "checkpoint.pt", out_dir / "checkpoint.pt"
    stats_path, partial_path = out_dir / "stats.jsonl", state_dir / "stats.jsonl.partial"
    start_step, rows = 0, []
    found = [p for p in (ckpt_path, final_ckpt_path) if p.is_file()]
    if resume and found:
        ckpt = load_checkpoint(found[0])
        _check_resumable(found[0], ckpt, config)
        start_step = int(ckpt["step"])
        try:
            G.load_state_dict(ckpt["generator"])
            D.load_state_dict(ckpt["discriminator"])
            if ema:
                ema.model.load_state_dict(ckpt["generator_ema"])
            opt_g.load_state_dict(ckpt["g_optimizer"])
            opt_d.load_state_dict(ckpt["d_optimizer"])
            sampler.load_state_dict(ckpt["sampler"])
            stats.load_state_dict(ckpt["log_sums"])
            restore_rng_state(ckpt["rng"], generators)  # last: building the models drew numbers
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise InputError(found[0], f"cannot resume from this checkpoint ({err}); pass "
                                        "resume=False or delete it to start afresh") from err
        rows = continue_stats([partial_path, stats_path], start_step)
        log.info("%s: resuming from step %d", found[0], start_step)
    out_dir.mkdir(parents=True, exist_ok=True)
    state_dir.mkdir(parents=True, exist_ok=True)
    write_text(partial_path, "".join(f"{r}\n" for r in rows))
    last_row: dict[str, Any] = json.loads(rows[-1]) if rows else {}
    t_train = time.perf_counter()
    diverged_at = None
    t_interval, overhead, steps_in_interval = t_train, 0.0, 0
    images_in_interval = images_trained = 0

    bar = tqdm(total=steps, initial=start_step, desc=f"train {out_dir.name}", unit="step",
               disable=not progress, mininterval=1.0)
    with sigterm_requested() as sigterm, open(partial_path, "a") as stats_fh:
        for step in range(start_step + 1, steps + 1):
            if progressive:
                stage = progressive.enter(step, [G, D, *([ema.model] if ema else [])],
                                          [opt_g, opt_d])
                stage = stage._replace(batch_size=min(stage.batch_size, n_images))
                batch = stage.batch_size
            train_step(G_train, D_train, loss_obj, opt_g, opt_d, next_real, noise, stats,
                       autocast_d=autocast_d, autocast_g=autocast_g)
            if ema:
                ema.update(G)
            steps_in_interval += 1
            images_in_interval += n_critic * batch
            images_trained += n_critic * batch
            bar.update(1)

            if step % schedule["log_every"] == 0 or step == steps:
                means = stats.means()  # the only host sync of the loop
                now = time.perf_counter()
                dt = max(now - t_interval - overhead, 1e-9)
                last_row = {"step": step, **(stage_log(stage) if stage is not None else {}),
                            **means,
                            "images_per_s": images_in_interval / dt,
                            "s_per_step": dt / steps_in_interval,
                            "elapsed_s": now - t_train}
                if not all(np.isfinite(v) for v in last_row.values()):
                    if not schedule.get("stop_on_divergence", False):
                        raise FloatingPointError(f"{out_dir}: training diverged at step "
                                                 f"{step}: {last_row}")
                    diverged_at = step  # a loss comparison records it and stops here
                    stats_fh.write(json.dumps(last_row) + "\n")  # NaN / Infinity as JSON allows
                    log.warning("%s: training diverged at step %d, stopping: %s", out_dir,
                                step, last_row)
                    break
                stats_fh.write(json.dumps(last_row) + "\n")
                stats_fh.flush()
                log.info("%s", last_row)
                bar.set_postfix(d=f"{last_row['d_loss']:.3g}", g=f"{last_row['g_loss']:.3g}")
                t_interval, overhead, steps_in_interval = time.perf_counter(), 0.0, 0
                images_in_interval = 0

            every = schedule["checkpoint_every"]
            if step != steps and (sigterm["stop"] or (every and step % every == 0)):
                t0 = time.perf_counter()
                stats_fh.flush()
                save_checkpoint(ckpt_path, training_state(step))
                overhead += time.perf_counter() - t0
                if sigterm["stop"]:
                    bar.close()
                    interrupted = TrainingInterrupted(ckpt_path, step)
                    log.warning("%s", interrupted)
                    raise interrupted

            if (schedule["sample_every"] and step % schedule["sample_every"] == 0
                    and step != steps):
                t0 = time.perf_counter()
                write_samples()
                overhead += time.perf_counter() - t0
        bar.close()
        train_s = time.perf_counter() - t_train
        save_checkpoint(final_ckpt_path, training_state(diverged_at or steps))
        if diverged_at is None:
            write_samples()
        else:  # non-finite weights: an empty grid rather than a failed plot
            save_image_grid(np.zeros((1, len(names), 4, 4), np.float32), out_dir / "samples.png",
                            channel_names=names, title=f"diverged at step {diverged_at}")
    os.replace(partial_path, stats_path)
    plot_loss_curves(stats_path, out_dir / "losses.png",
                     title=f"{out_dir.name}: {arch_cfg['name']}, {loss_obj.config['name']}")
    if state_dir != out_dir:
        ckpt_path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            state_dir.rmdir()  # if empty
    # stats.jsonl is in place now; run.json, written last, marks the run complete
    trained = (diverged_at or steps) - start_step
    run = {
        "config": config, "seed": seed, "provenance": provenance or {},
        "medgan_version": __version__, "torch_version": str(torch.__version__),
        "python_version": platform.python_version(), "device": str(dev),
        "threads": torch.get_num_threads(),
        "timing": {"total_s": time.perf_counter() - t_start, "train_s": train_s,
                   "s_per_step": train_s / max(trained, 1),
                   "images_per_s": images_trained / max(train_s, 1e-9)},
        "resumed_from_step": start_step,
        "diverged_at_step": diverged_at,
        "final": last_row,
        "files": ["checkpoint.pt", "stats.jsonl", "samples.png", "losses.png", "run.json"],
    }
    write_json(out_dir / "run.json", run)
    return run


def _check_resumable(path: Path, ckpt: dict[str, Any], config: dict[str, Any]) -> None:
    """Refuse (``InputError`` naming ``path`` and the key) a checkpoint of another run."""
    saved = ckpt["config"]
    if isinstance(saved, dict) and isinstance(saved.get("schedule"), dict):
        # checkpoints from before latent_distribution existed drew normal latents
        saved = {**saved, "schedule": {"latent_distribution": LATENT_DISTRIBUTIONS[0],
                                       **saved["schedule"]}}
    differ = config_differences(saved, config, ignore=RESUMABLE_CHANGES)
    if differ:
        key = differ[0]
        old, new = _lookup(saved, key), _lookup(config, key)
        raise InputError(path, f"holds a run with a different config: {key} is {old!r} there "
                               f"but {new!r} now ({len(differ)} key(s) differ: {differ[:5]}); "
                               "delete it or pass resume=False to start afresh")
    if int(ckpt["step"]) > config["schedule"]["steps"]:
        raise InputError(path, f"checkpoint is at step {ckpt['step']}, beyond schedule steps "
                               f"{config['schedule']['steps']}")


def _lookup(config: Any, dotted: str) -> Any:
    """The value at a dotted key of :func:`config_differences` (``"<missing>"`` if absent)."""
    value = config
    for part in dotted.replace("[", ".[").split("."):
        try:
            value = value[int(part[1:-1])] if part.startswith("[") else value[part]
        except (KeyError, IndexError, TypeError, ValueError):
            return "<missing>"
    return value


def _display_ranges(images: np.ndarray, max_images: int = 256) -> list[tuple[float, float]]:
    """Per-channel display windows from up to ``max_images`` evenly spaced real images."""
    idx = np.unique(np.linspace(0, images.shape[0] - 1, min(max_images, images.shape[0]))
                    .astype(int))
    sample = np.asarray(images[idx])
    return [display_range(sample[:, c]) for c in range(sample.shape[1])]


@torch.no_grad()
def sample_images(G: torch.nn.Module, z: torch.Tensor) -> np.ndarray:
    """``G(z)`` in eval mode as a float32 array; restores G's train/eval mode afterwards."""
    was_training = G.training
    G.eval()
    try:
        return G(z).float().cpu().numpy()
    finally:
        G.train(was_training)


# --- using a trained generator -----------------------------------------------------------------

def load_generator(checkpoint_path: str | os.PathLike, *, device: str = "cpu",
                   ema: bool = True) -> tuple[torch.nn.Module, dict]:
    """The generator of a :func:`train_gan` checkpoint, in eval mode, and the run's config.

    With ``ema`` (default) the EMA generator is returned when the run kept one
    (``schedule.ema_decay``), else the trained generator.
    """
    ckpt = load_checkpoint(checkpoint_path)
    config = ckpt["config"]
    try:
        G = build_generator(config["architecture"], channels=len(config["channels"]),
                            resolution=config["resolution"])
        weights = ckpt.get("generator_ema") if ema else None
        G.load_state_dict(weights if weights is not None else ckpt["generator"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise InputError(checkpoint_path, f"not a medgan GAN checkpoint ({err})") from err
    return G.to(resolve_device(device)).eval(), config


def latent_distribution(config: dict[str, Any]) -> str:
    """The latent distribution a checkpoint's run trained with (``"normal"`` if unrecorded)."""
    return (config.get("schedule") or {}).get("latent_distribution", "normal")


@torch.no_grad()
def generate_images(checkpoint_path: str | os.PathLike, n: int, *, seed: int = 0,
                    batch_size: int = 256, device: str = "cpu") -> np.ndarray:
    """``n`` images (n, C, H, W) float32 from a checkpoint's generator in eval mode.

    The latents are drawn at once from a generator seeded with ``seed``, from the run's
    ``schedule.latent_distribution`` (:func:`latent_distribution`), so the result depends on
    ``seed`` only, not on ``batch_size``. Eval mode uses BatchNorm's running statistics
    (momentum 0.1, updated on every G forward in training, i.e. ``n_critic + 1`` times per
    step); on synthetic data, eval-mode samples matched train-mode (batch-statistics) samples of
    the same latents closely from the first few hundred steps on.
    """
    G, config = load_generator(checkpoint_path, device=device)
    return generate_from(G, config, n, seed=seed, batch_size=batch_size)


@torch.no_grad()
def generate_from(G: torch.nn.Module, config: dict[str, Any], n: int, *, seed: int = 0,
                  batch_size: int = 256) -> np.ndarray:
    """:func:`generate_images` for a generator already loaded by :func:`load_generator`
    (``config``: the run's config it returned)."""
    _positive_int(n, "n", minimum=0)
    _positive_int(batch_size, "batch_size")
    z = draw_latents(n, G.latent_dim, distribution=latent_distribution(config),
                     generator=torch.Generator().manual_seed(seed))
    res = getattr(G, "current_resolution", config["resolution"])  # pggan: its saved stage
    out = np.empty((n, len(config["channels"]), res, res), dtype=np.float32)
    dev = next(G.parameters()).device
    for i in range(0, n, batch_size):
        out[i:i + batch_size] = G(z[i:i + batch_size].to(dev)).float().cpu().numpy()
    return out
