"""The ``auto`` settings of StyleGAN2 + ADA (Karras et al. 2020, ADA paper appendix D), from
the resolution and the batch size; resolved before a run starts, so that the numbers used are
recorded in its config (checkpoint, ``run.json``).

* ``loss.r1_gamma: auto`` -> ``0.0002 * resolution^2 / batch_size`` (the paper's
  ``gamma = 0.0002 N / M``, N pixels, M images per batch);
* ``schedule.ema_decay: auto`` -> ``0.5 ** (batch_size / ema_nimg)``, the EMA's half-life
  ``ema_nimg = min(batch_size * 10 / 32 * 1000, 0.05 * steps * batch_size)`` images: the
  paper's 10k images per 32 in a batch, capped by its ramp-up (0.05 of the images seen) taken
  at the end of the run, since medgan's EMA has a constant decay (a short run would otherwise
  average in much of its start);
* ``architecture.mbstd_group_size: auto`` -> ``min(batch_size, 4)``;
* ``architecture.mapping_layers: auto`` -> 2 (the paper's mapping network for limited data).
"""

from __future__ import annotations

from typing import Any

AUTO = "auto"


EMA_RAMPUP = 0.05


def stylegan2_auto(resolution: int, batch_size: int, steps: int | None = None) -> dict[str, Any]:
    """The values that ``auto`` stands for at ``resolution`` px, ``batch_size`` and ``steps``
    (None: no ramp-up cap)."""
    ema_nimg = batch_size * 10 / 32 * 1000.0
    if steps is not None:
        ema_nimg = min(ema_nimg, EMA_RAMPUP * steps * batch_size)
    return {"r1_gamma": 0.0002 * resolution ** 2 / batch_size,
            "ema_decay": 0.5 ** (batch_size / max(ema_nimg, 2.0 * batch_size)),
            "mbstd_group_size": min(batch_size, 4), "mapping_layers": 2}


def resolve_auto(architecture: dict[str, Any], loss: dict[str, Any], schedule: dict[str, Any],
                 *, resolution: int) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """``architecture``, ``loss`` and ``schedule`` with every ``auto`` value replaced (copies;
    the inputs are unchanged). ``ValueError`` for ``auto`` without a ``batch_size``."""
    places = [(architecture, "mbstd_group_size"), (architecture, "mapping_layers"),
              (loss, "r1_gamma"), (schedule, "ema_decay")]
    if not any(cfg.get(key) == AUTO for cfg, key in places):
        return architecture, loss, schedule
    batch = schedule.get("batch_size")
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise ValueError(f"'auto' settings need a schedule batch_size, got {batch!r}")
    steps = schedule.get("steps")
    values = stylegan2_auto(resolution, batch, steps if isinstance(steps, int) else None)
    out = [dict(architecture), dict(loss), dict(schedule)]
    for cfg, new in zip((architecture, loss, schedule), out, strict=True):
        for key, value in cfg.items():
            if value == AUTO and key in values:
                new[key] = values[key]
    return out[0], out[1], out[2]
