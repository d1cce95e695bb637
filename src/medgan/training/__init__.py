"""Stage 3: prepared dataset -> trained GAN (loop, state, losses, checkpoints, generation).

Read :mod:`medgan.training.loop` first (:func:`train_gan` and the loop), then
:mod:`medgan.training.step` (one training step). The names below are importable from
``medgan.training`` directly; they load their module on first use, so importing one submodule
(e.g. :mod:`medgan.training.losses`) does not import the whole trainer.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "train_gan": "loop", "TrainingLoop": "loop",
    "load_generator": "generate", "generate_images": "generate", "generate_from": "generate",
    "sample_images": "generate", "write_synthetic": "generate",
    "draw_latents": "schedule", "latent_distribution": "schedule",
    "resolve_schedule": "schedule", "resolve_optimizer": "schedule",
    "build_optimizer": "schedule",
    "resolve_device": "distributed",
    "EpochSampler": "data", "TrainingState": "state", "GeneratorEMA": "state",
    "train_step": "step", "StatsAccumulator": "stats",
    "TrainingInterrupted": "checkpoint", "load_checkpoint": "checkpoint",
    "build_loss": "losses",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
