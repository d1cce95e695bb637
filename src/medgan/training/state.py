"""The training state: one object holding everything a training run changes, which saves
itself as a checkpoint dict and loads itself back.

:class:`TrainingState` holds G and D (and the modules the steps call: compiled or distributed
wrappers of the same parameters), both optimisers, the EMA generator (:class:`GeneratorEMA`,
or None), the seeded RNG streams (data order, training latents), the data sampler, the running
log sums and the fixed latents of the sample grid. :meth:`TrainingState.create` builds it from a
resolved config and its seed in a fixed order (so the same seed gives the same weights);
:meth:`~TrainingState.checkpoint` gives the plain dict that :mod:`medgan.training.checkpoint`
writes; :meth:`~TrainingState.resume` loads one back after checking it belongs to this run.
"""

from __future__ import annotations

import copy
import functools
import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medgan import __version__
from medgan.errors import InputError
from medgan.models import build_discriminator, build_generator
from medgan.models.conditional import LabelSlot
from medgan.training import accel, ddp
from medgan.training.checkpoint import (
    capture_rng_state,
    config_differences,
    load_checkpoint,
    restore_rng_state,
)
from medgan.training.data import EpochSampler
from medgan.training.distributed import Ranks
from medgan.training.schedule import (
    LATENT_DISTRIBUTIONS,
    RESUMABLE_CHANGES,
    build_optimizer,
    draw_latents,
)
from medgan.training.stats import StatsAccumulator

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "medgan.gan/1"
N_SAMPLES = 16  # images in samples.png


EMA_RAMPUP = 0.05  # stylegan2-ada's ema_rampup: the average's half-life <= 5 % of the steps


def ema_decay_at(decay: float, step: int | None) -> float:
    """The decay of the EMA update after 1-based ``step``: ``decay``, but at most
    ``0.5 ** (1 / (EMA_RAMPUP * step))`` (the ramp-up of Karras et al.'s stylegan2-ada: the
    average's half-life is at most 5 % of the steps trained), so that a short run's average is
    not mostly its initial weights (issue 16: with 0.999 and no ramp-up, 200 steps left 82 %
    of the random init in the average, and its samples were noise). ``None``: ``decay``."""
    if step is None:
        return decay
    return min(decay, 0.5 ** (1.0 / (EMA_RAMPUP * max(int(step), 1))))


class GeneratorEMA:
    """An exponential moving average of a generator's parameters (Karras et al.), with
    stylegan2-ada's ramp-up (:func:`ema_decay_at`); buffers (BatchNorm statistics) are copied.
    ``model`` is the averaged generator, in eval mode."""

    def __init__(self, G: torch.nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(G).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, G: torch.nn.Module, step: int | None = None) -> None:
        """Move the average towards ``G`` after 1-based training ``step`` (None: no ramp-up)."""
        decay = ema_decay_at(self.decay, step)
        for p_ema, p in zip(self.model.parameters(), G.parameters(), strict=True):
            p_ema.lerp_(p, 1.0 - decay)
        for b_ema, b in zip(self.model.buffers(), G.buffers(), strict=True):
            b_ema.copy_(b)


def seeds(seed: int, n: int) -> list[int]:
    """``n`` independent 63-bit seeds derived from ``seed``."""
    return [int(s) for s in np.random.SeedSequence(seed).generate_state(n, dtype=np.uint64) >> 1]


class TrainingState:
    """Models, optimisers, EMA, RNG streams, sampler and log sums of one training run."""

    def __init__(self, *, config: dict[str, Any], G: torch.nn.Module, D: torch.nn.Module,
                 ema: GeneratorEMA | None, opt_g: torch.optim.Optimizer,
                 opt_d: torch.optim.Optimizer, generators: dict[str, torch.Generator],
                 sampler: EpochSampler, fixed_z: torch.Tensor):
        self.config, self.G, self.D, self.ema = config, G, D, ema
        self.opt_g, self.opt_d = opt_g, opt_d
        self.generators, self.sampler, self.fixed_z = generators, sampler, fixed_z
        self.stats = StatsAccumulator()
        self.ranks = Ranks()
        # the modules the training steps call (torch.compile'd or distributed wrappers of G, D)
        self.G_train: torch.nn.Module = G
        self.D_train: torch.nn.Module = D
        # class-conditional runs: the labels G and D read, and those of the sample grid
        self.slot: LabelSlot | None = None
        self.fixed_labels: torch.Tensor | None = None
        # differentially private runs: the DP-SGD accountant and sampler (medgan.training.dp)
        self.privacy: Any = None
        # a loss with its own training state (stylegan2: R1 counter, ADA's p): checkpointed
        self.loss: Any = None

    @property
    def frozen_models(self) -> dict[str, torch.nn.Module]:
        """:func:`~medgan.training.step.train_step`'s ``G_sampler`` and ``D_frozen``: in a
        data-parallel run the plain G and D (only the model being trained goes through its DDP
        wrapper), else the training modules themselves."""
        if self.ranks.distributed:
            return {"G_sampler": self.G, "D_frozen": self.D}
        return {"G_sampler": self.G_train, "D_frozen": self.D_train}

    @classmethod
    def create(cls, config: dict[str, Any], *, device: torch.device, n_images: int,
               batch_size: int, ranks: Ranks | None = None) -> TrainingState:
        """A fresh state for resolved ``config``: seeds python, numpy and torch with
        ``config["seed"]``, then builds G, D, the EMA copy, the optimisers and three seeded
        streams (data order, latents, fixed sample latents), in that order. Every process of a
        data-parallel run (``ranks``) builds the same state; G and D then get synchronised
        BatchNorm and train through DDP wrappers (:mod:`medgan.training.ddp`)."""
        ranks = ranks or Ranks()
        seed, arch, schedule = config["seed"], config["architecture"], config["schedule"]
        random.seed(seed)
        np.random.seed(seed % 2**32)  # noqa: NPY002 - seed legacy global state too
        torch.manual_seed(seed)
        data_seed, noise_seed, fixed_seed = seeds(seed, 3)
        condition = config.get("condition")
        slot = LabelSlot() if condition else None
        shape = {"channels": len(config["channels"]), "resolution": config["resolution"],
                 "condition": condition, "slot": slot}
        G = build_generator(arch, **shape).to(device)
        D = build_discriminator(arch, **shape).to(device)
        if ranks.distributed:
            G, D = ddp.for_processes(G, ranks), ddp.for_processes(D, ranks)
        ema = GeneratorEMA(G, schedule["ema_decay"]) if schedule["ema_decay"] else None
        opt_g = build_optimizer(G.parameters(), config["optimizer"], model="g")
        opt_d = build_optimizer(D.parameters(), config["optimizer"], model="d")
        data_gen = torch.Generator().manual_seed(data_seed)
        noise_gen = torch.Generator(device=device).manual_seed(noise_seed)
        fixed_z = draw_latents(N_SAMPLES, G.latent_dim,
                               distribution=schedule["latent_distribution"],
                               generator=torch.Generator().manual_seed(fixed_seed)).to(device)
        state = cls(config=config, G=G, D=D, ema=ema, opt_g=opt_g, opt_d=opt_d,
                    generators={"data": data_gen, "noise": noise_gen},
                    sampler=EpochSampler(n_images, batch_size, data_gen), fixed_z=fixed_z)
        state.ranks = ranks
        wrap = None
        if ranks.distributed:
            wrap = functools.partial(ddp.wrap, device=device,
                                     find_unused_parameters=arch["name"] == "pggan")
        state.G_train = accel.prepare_module(G, config["performance"], device, wrap=wrap)
        state.D_train = accel.prepare_module(D, config["performance"], device, wrap=wrap)
        if slot is not None:  # class-conditional: the loop fills the slot with batch labels
            state.slot = slot
            state.fixed_labels = (torch.arange(N_SAMPLES) % len(condition["classes"])).to(device)
        if config.get("privacy"):  # DP-SGD for D: wraps D_train, opt_d; Poisson sampler
            from medgan.training.dp import make_private

            state.privacy = make_private(state, config["privacy"]["dp"], n_images=n_images)
        return state

    @property
    def sample_generator(self) -> torch.nn.Module:
        """The generator that samples and outputs use: the EMA one if kept."""
        return self.ema.model if self.ema else self.G

    @property
    def stage_models(self) -> list[torch.nn.Module]:
        """The models a progressive stage change applies to."""
        return [self.G, self.D, *([self.ema.model] if self.ema else [])]

    @property
    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.opt_g, self.opt_d]

    def checkpoint(self, step: int) -> dict[str, Any]:
        """The checkpoint dict of this state after ``step`` (tensors and plain containers)."""
        return {
            "format": CHECKPOINT_FORMAT,
            "generator": self.G.state_dict(), "discriminator": self.D.state_dict(),
            "generator_ema": self.ema.model.state_dict() if self.ema else None,
            "g_optimizer": self.opt_g.state_dict(), "d_optimizer": self.opt_d.state_dict(),
            "step": step, "config": self.config, "rng": capture_rng_state(self.generators),
            "sampler": self.sampler.state_dict(), **self._log_sums(),
            "fixed_z": self.fixed_z.cpu(),
            **({"loss_state": self.loss.state_dict()} if hasattr(self.loss, "state_dict") else {}),
            "medgan_version": __version__, "torch_version": str(torch.__version__),
            **({"privacy": self.privacy.state_dict()} if self.privacy else {}),
        }

    def _log_sums(self) -> dict[str, Any]:
        """``log_sums``: the running log sums (data-parallel: their mean over the processes, and
        every process's own in ``log_sums_per_rank``, for a resume on as many processes)."""
        own = self.stats.state_dict()
        if not self.ranks.distributed:
            return {"log_sums": own}
        per_rank = self.ranks.gather_sums(own["sums"])
        mean = {k: sum(r[k] for r in per_rank) / len(per_rank) for k in own["sums"]}
        return {"log_sums": {"sums": mean, "counts": own["counts"]},
                "log_sums_per_rank": [{"sums": r, "counts": own["counts"]} for r in per_rank]}

    def load_checkpoint_dict(self, ckpt: dict[str, Any]) -> None:
        """Inverse of :meth:`checkpoint`; the RNG states last (building drew numbers)."""
        self.G.load_state_dict(ckpt["generator"])
        self.D.load_state_dict(ckpt["discriminator"])
        if self.ema:
            self.ema.model.load_state_dict(ckpt["generator_ema"])
        self.opt_g.load_state_dict(ckpt["g_optimizer"])
        self.opt_d.load_state_dict(ckpt["d_optimizer"])
        self.sampler.load_state_dict(ckpt["sampler"])
        per_rank = ckpt.get("log_sums_per_rank") or []
        same_ranks = len(per_rank) == self.ranks.world_size
        self.stats.load_state_dict(per_rank[self.ranks.rank] if same_ranks else ckpt["log_sums"])
        if self.privacy:
            self.privacy.load_state_dict(ckpt["privacy"])
        if hasattr(self.loss, "load_state_dict"):
            self.loss.load_state_dict(ckpt["loss_state"])
        restore_rng_state(ckpt["rng"], self.generators)

    def resume_last_good(self, paths: list[Path]) -> tuple[Path, int, list[InputError]]:
        """Resume from the first of ``paths`` (newest first) that can be read; return it, its
        step, and the refusals (:class:`InputError`) of the unreadable ones before it, e.g. a
        truncated file. A readable checkpoint of another run is refused as by :meth:`resume`;
        none readable -> :class:`InputError` naming the newest."""
        refused: list[InputError] = []
        for path in paths:
            try:
                ckpt = load_checkpoint(path)
            except InputError as err:
                refused.append(err)
                continue
            return path, self.resume(path, ckpt), refused
        others = "".join(f"; nor can the earlier {err}" for err in refused[1:])
        raise InputError(refused[0].path, f"{refused[0].problem}{others}; delete it or pass "
                                          "resume=False to start afresh")

    def resume(self, path: Path, ckpt: dict[str, Any] | None = None) -> int:
        """Load the checkpoint at ``path`` (read already: ``ckpt``) into this state and return
        its step; a checkpoint of another run or an unreadable one -> :class:`InputError`
        naming ``path``."""
        ckpt = load_checkpoint(path) if ckpt is None else ckpt
        check_resumable(path, ckpt, self.config)
        try:
            self.load_checkpoint_dict(ckpt)
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise InputError(path, f"cannot resume from this checkpoint ({err}); pass "
                                   "resume=False or delete it to start afresh") from err
        log.info("%s: resuming from step %d", path, int(ckpt["step"]))
        return int(ckpt["step"])


def check_resumable(path: Path, ckpt: dict[str, Any], config: dict[str, Any]) -> None:
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
