"""The training schedule and optimisers as config: defaults, checks, and what they build.

:func:`resolve_schedule` fills in and checks a ``schedule`` config (``steps``, ``batch_size``,
``log_every``, ``sample_every``, ``checkpoint_every``, ``ema_decay``, ``latent_distribution``,
``snapshot_every`` and ``keep_best`` (:mod:`medgan.training.snapshots`); the
progressive keys of :mod:`medgan.training.progressive` for ``pggan``); :func:`resolve_optimizer`
and :func:`build_optimizer` do the same for the ``optimizer`` config (Adam or RMSprop, one config
for G and D, ``lr_g`` / ``lr_d`` overriding ``lr``). :func:`draw_latents` draws the latents of the
schedule's ``latent_distribution``: ``"normal"`` (default, N(0, 1)) or ``"uniform"`` (U(-1, 1),
Delplace), for training, the sample grid and generation alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from medgan.training.progressive import ARCHITECTURE as ARCHITECTURE_PROGRESSIVE
from medgan.training.progressive import PROGRESSIVE_DEFAULTS, resolve_progressive_schedule

SCHEDULE_DEFAULTS: dict[str, Any] = {"steps": 1000, "batch_size": 64, "log_every": 10,
                                     "sample_every": 100, "checkpoint_every": 0,
                                     "ema_decay": None, "latent_distribution": "normal"}
# schedule keys recorded only when given (older checkpoints stay resumable): a run whose loss
# becomes non-finite stops and is recorded as diverged instead of failing (a loss comparison)
SCHEDULE_OPTIONAL: dict[str, Any] = {"stop_on_divergence": False,
                                     # snapshot metrics every n steps (0: none; see
                                     # medgan.training.snapshots) and the metric whose best
                                     # snapshot's weights are kept (checkpoint_best.pt)
                                     "snapshot_every": 0, "keep_best": None}
# keep_best metrics and whether lower or higher is better
KEEP_BEST: dict[str, str] = {"domain_fid": "min", "domain_kid_mean": "min", "rho": "max",
                             "domain_precision": "max", "domain_recall": "max",
                             "domain_coverage": "max"}
OPTIMIZER_DEFAULTS: dict[str, dict[str, Any]] = {
    "adam": {"lr": 2e-4, "betas": [0.5, 0.999], "eps": 1e-8},  # Radford / Han DCGAN
    "rmsprop": {"lr": 5e-5, "alpha": 0.99, "eps": 1e-8},  # Arjovsky / Han WGAN
}
# per-model learning rates overriding ``lr``; recorded only when given
OPTIMIZER_OPTIONAL = ("lr_g", "lr_d")
# schedule keys a resumed run may change: they do not change the weights
# (and ``performance``: speed switches, no-ops on CPU)
RESUMABLE_CHANGES = frozenset([*(f"schedule.{k}" for k in ("steps", "log_every", "sample_every",
                                                            "checkpoint_every", "snapshot_every",
                                                            "keep_best")),
                               "performance"])
LATENT_DISTRIBUTIONS = ("normal", "uniform")  # N(0, 1); U(-1, 1) (Delplace)


def positive_int(value: Any, what: str, *, minimum: int = 1) -> int:
    """``value`` if an integer >= ``minimum`` (not a bool), else ``ValueError`` naming ``what``."""
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
        positive_int(schedule.get("steps_per_phase", 1), "schedule steps_per_phase")
        positive_int(schedule.get("start_resolution", 4), "schedule start_resolution", minimum=4)
        cfg = resolve_progressive_schedule(cfg, schedule, resolution)
    else:
        positive_int(cfg["batch_size"], "schedule batch_size")
    positive_int(cfg["steps"], "schedule steps")
    if cfg["latent_distribution"] not in LATENT_DISTRIBUTIONS:
        raise ValueError(f"schedule latent_distribution must be one of {list(LATENT_DISTRIBUTIONS)}"
                         f", got {cfg['latent_distribution']!r}")
    if not isinstance(cfg.get("stop_on_divergence", False), bool):
        raise ValueError(f"schedule stop_on_divergence must be true/false, "
                         f"got {cfg['stop_on_divergence']!r}")
    positive_int(cfg["log_every"], "schedule log_every")
    positive_int(cfg["sample_every"], "schedule sample_every (0 = only at the end)", minimum=0)
    positive_int(cfg["checkpoint_every"], "schedule checkpoint_every (0 = only at the end)",
                  minimum=0)
    if cfg.get("snapshot_every") is None and "snapshot_every" in cfg:
        cfg["snapshot_every"] = 0  # null: no snapshots
    positive_int(cfg.get("snapshot_every", 0), "schedule snapshot_every (0 = none)", minimum=0)
    if cfg.get("keep_best") not in (None, *KEEP_BEST):
        raise ValueError(f"schedule keep_best must be null or one of {sorted(KEEP_BEST)}, "
                         f"got {cfg['keep_best']!r}")
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


def latent_distribution(config: dict[str, Any]) -> str:
    """The latent distribution a checkpoint's run trained with (``"normal"`` if unrecorded)."""
    return (config.get("schedule") or {}).get("latent_distribution", "normal")
