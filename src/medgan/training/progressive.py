"""Progressive growing (Karras et al. 2018; Beers et al. 2018) in
:func:`medgan.training.loop.train_gan`.

When the architecture is ``pggan`` the training schedule gains these keys (refused for every
other architecture):

* ``steps_per_phase`` (int, default 20000): steps of every fade-in phase and every stable phase
  (Beers: 20,000 + 20,000 batches per resolution);
* ``batch_sizes`` (int or ``{"default": n, "<resolution>": n, ...}``, default
  ``{"default": 16, "512": 8}``): the batch size at each resolution (a key applies at that
  resolution and above, as the architecture's ``filters``); replaces ``batch_size``, which is
  refused for pggan;
* ``start_resolution`` (int, power of two >= 4, default 4): the resolution training starts at
  (stable only); every later level fades in and then trains stable;
* ``reset_optimizer_per_level`` (bool, default false): clear both optimisers' state (Adam's
  moments and step counts) at the first step of every new level, as Karras et al. do.

``steps`` defaults to the total of the phases (:func:`medgan.models.pggan.pggan_schedule`). A
larger ``steps`` keeps training the final stage (full resolution, stable) after the last phase;
a smaller one is refused, as it would not reach the target resolution. ``ema_decay`` defaults to
Karras's 0.999 for pggan (``null`` turns the average off); the average follows the stage and is
used for the samples and the outputs.

At 1-based step ``s`` the stage is ``stage_at(s - 1, phases)``: G, D (and the EMA generator) are
set to it, real batches of its size are average-pooled to its resolution and, while fading in,
blended with their half-resolution version (:func:`~medgan.models.pggan.blend_reals`). The stage
depends on the step only, and travels in the models' state dicts, so resuming is exact across
phase boundaries.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from medgan.models.pggan import (
    EMA_DECAY,
    SCHEDULE_DEFAULTS,
    Phase,
    blend_reals,
    downsample_to,
    max_level,
    pggan_schedule,
    stage_at,
)

ARCHITECTURE = "pggan"
PROGRESSIVE_DEFAULTS: dict[str, Any] = {
    **SCHEDULE_DEFAULTS,  # steps_per_phase 20000, batch_sizes {"default": 16, "512": 8}
    "start_resolution": 4,
    "reset_optimizer_per_level": False,
}


class Stage(NamedTuple):
    """What one training step trains: ``level`` (output ``resolution = 4 * 2**level``), the fade
    weight ``alpha`` and the ``batch_size``."""

    level: int
    alpha: float
    batch_size: int
    resolution: int


def is_progressive(architecture: dict[str, Any]) -> bool:
    return architecture.get("name") == ARCHITECTURE


def _normalise_batch_sizes(spec: Any) -> Any:
    """Resolution keys as strings (what JSON and YAML round trips give back)."""
    if isinstance(spec, dict):
        return {str(k): v for k, v in spec.items()}
    return spec


def resolve_progressive_schedule(schedule: dict[str, Any], given: dict[str, Any],
                                 resolution: int) -> dict[str, Any]:
    """Fill in and check the progressive keys of ``schedule`` (defaults merged already, except
    these); ``given`` is the schedule as the caller wrote it (to tell a given ``steps``)."""
    if "batch_size" in given:
        raise ValueError("schedule batch_size does not apply to architecture pggan; "
                         "use batch_sizes (an int or a per-resolution mapping)")
    cfg = {k: v for k, v in schedule.items() if k != "batch_size"}
    cfg = {**PROGRESSIVE_DEFAULTS, **cfg}
    if "ema_decay" not in given:
        cfg["ema_decay"] = EMA_DECAY
    if not isinstance(cfg["reset_optimizer_per_level"], bool):
        raise ValueError("schedule reset_optimizer_per_level must be true or false, got "
                         f"{cfg['reset_optimizer_per_level']!r}")
    cfg["batch_sizes"] = _normalise_batch_sizes(cfg["batch_sizes"])
    try:
        max_level(cfg["start_resolution"])
    except ValueError as err:
        raise ValueError(f"schedule start_resolution: {err}") from None
    try:
        phases = phases_of(cfg, resolution)
    except ValueError as err:
        raise ValueError(f"schedule: {err}") from None
    total = sum(p.steps for p in phases)
    if "steps" not in given:
        cfg["steps"] = total
    elif (isinstance(cfg["steps"], int) and not isinstance(cfg["steps"], bool)
          and cfg["steps"] < total):
        raise ValueError(f"schedule steps {cfg['steps']} < {total}, the steps of the progressive "
                         f"phases ({len(phases)} phases of steps_per_phase "
                         f"{cfg['steps_per_phase']}); omit steps to train exactly the phases")
    return cfg


def phases_of(schedule: dict[str, Any], resolution: int) -> list[Phase]:
    """The phases of a resolved progressive ``schedule`` for target ``resolution``."""
    return pggan_schedule(resolution, start_resolution=schedule["start_resolution"],
                          steps_per_phase=schedule["steps_per_phase"],
                          batch_sizes=schedule["batch_sizes"])


class ProgressiveSchedule:
    """The stage of every step of a progressive run and the per-step bookkeeping."""

    def __init__(self, schedule: dict[str, Any], resolution: int):
        self.phases = phases_of(schedule, resolution)
        self.reset_optimizer = bool(schedule["reset_optimizer_per_level"])

    def stage(self, step: int) -> Stage:
        """The stage of 1-based training ``step``."""
        level, alpha, batch = stage_at(step - 1, self.phases)
        return Stage(level, alpha, batch, 4 * 2**level)

    def starts_level(self, step: int) -> bool:
        """Whether 1-based ``step`` is the first step of a level after the first one."""
        return step > 1 and self.stage(step).level != self.stage(step - 1).level

    def enter(self, step: int, models: list[torch.nn.Module],
              optimizers: list[torch.optim.Optimizer]) -> Stage:
        """Set ``models`` to the stage of ``step``; reset ``optimizers`` if it starts a level
        (and ``reset_optimizer_per_level``). Returns the stage."""
        stage = self.stage(step)
        for model in models:
            model.set_stage(stage.level, stage.alpha)
        if self.reset_optimizer and self.starts_level(step):
            for opt in optimizers:
                opt.state.clear()
        return stage

    def max_batch_size(self) -> int:
        return max(p.batch_size for p in self.phases)


def real_batch(images: torch.Tensor, stage: Stage) -> torch.Tensor:
    """Full-resolution real ``images`` as the networks see them at ``stage``."""
    return blend_reals(downsample_to(images, stage.resolution), stage.alpha)


def stage_log(stage: Stage) -> dict[str, Any]:
    """The stage columns of a ``stats.jsonl`` row."""
    return {"level": stage.level, "alpha": stage.alpha, "resolution": stage.resolution,
            "batch_size": stage.batch_size}


__all__ = ["PROGRESSIVE_DEFAULTS", "ProgressiveSchedule", "Stage", "is_progressive",
           "phases_of", "real_batch", "resolve_progressive_schedule",
           "stage_log"]
