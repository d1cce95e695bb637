"""Speed switches for training on CUDA: bf16 autocast, channels-last, TF32, cuDNN autotuning
and ``torch.compile``.

A ``performance`` config is a dict of booleans (defaults in :data:`PERFORMANCE_DEFAULTS`):

* ``bf16_autocast`` (default true): run the forward passes of G and D and the loss computation
  under ``torch.autocast("cuda", dtype=torch.bfloat16)``; backward runs outside autocast. Losses
  with a gradient penalty (:func:`has_gradient_penalty`: ``wgan_gp``, ``dragan``) keep their
  discriminator step in float32, since the penalty differentiates D's gradient norm, which bf16
  would round to ~3 significant digits; their generator step still uses bf16;
* ``channels_last`` (default true): G, D and the real batches in ``torch.channels_last``;
* ``tf32`` (default true): TF32 matrix multiplications and convolutions;
* ``cudnn_benchmark`` (default true): let cuDNN autotune convolution algorithms;
* ``compile`` (default false: compilation time dominates short runs): ``torch.compile`` G and D
  for the training steps (the uncompiled modules are kept for state dicts and sampling).

Every switch acts only on CUDA devices; on CPU each is a no-op, so CPU runs (and their
bit-exact resume) are unchanged whatever the config says.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch

PERFORMANCE_DEFAULTS: dict[str, bool] = {"bf16_autocast": True, "channels_last": True,
                                         "tf32": True, "cudnn_benchmark": True, "compile": False}
GRADIENT_PENALTY_LOSSES = frozenset({"wgan_gp", "dragan"})


def resolve_performance(cfg: dict[str, Any] | None) -> dict[str, bool]:
    """``cfg`` with defaults filled in; unknown keys or non-boolean values -> ``ValueError``."""
    cfg = {} if cfg is None else cfg
    if not isinstance(cfg, dict):
        raise ValueError(f"performance config must be a mapping, got {cfg!r}")
    unknown = [k for k in cfg if k not in PERFORMANCE_DEFAULTS]
    if unknown:
        raise ValueError(f"unknown performance key(s) {unknown}; "
                         f"known: {sorted(PERFORMANCE_DEFAULTS)}")
    for key, value in cfg.items():
        if not isinstance(value, bool):
            raise ValueError(f"performance {key} must be true or false, got {value!r}")
    return {**PERFORMANCE_DEFAULTS, **cfg}


def _on_cuda(device: torch.device | str) -> bool:
    return torch.device(device).type == "cuda"


def configure_backends(cfg: dict[str, Any], device: torch.device | str) -> None:
    """Set the global TF32 and cuDNN-benchmark flags for CUDA ``device``; no-op on CPU."""
    if not _on_cuda(device):
        return
    cfg = resolve_performance(cfg)
    torch.backends.cuda.matmul.allow_tf32 = cfg["tf32"]
    torch.backends.cudnn.allow_tf32 = cfg["tf32"]
    torch.backends.cudnn.benchmark = cfg["cudnn_benchmark"]


def prepare_module(module: torch.nn.Module, cfg: dict[str, Any], device: torch.device | str,
                   wrap: Callable[[torch.nn.Module], torch.nn.Module] | None = None,
                   ) -> torch.nn.Module:
    """Put ``module`` in channels-last memory format (in place) and return the module to call
    in training: ``wrap(module)`` if given (the DDP wrapper of a data-parallel run), then
    ``torch.compile`` of it with ``compile``. Channels-last and compilation are no-ops on CPU."""
    on_cuda = _on_cuda(device)
    cfg = resolve_performance(cfg)
    if on_cuda and cfg["channels_last"]:
        module.to(memory_format=torch.channels_last)
    if wrap is not None:
        module = wrap(module)
    return torch.compile(module) if on_cuda and cfg["compile"] else module


def prepare_batch(images: torch.Tensor, cfg: dict[str, Any]) -> torch.Tensor:
    """A 4-D CUDA batch in channels-last memory format when ``channels_last`` is on."""
    if images.is_cuda and images.dim() == 4 and resolve_performance(cfg)["channels_last"]:
        return images.contiguous(memory_format=torch.channels_last)
    return images


@contextlib.contextmanager
def autocast(cfg: dict[str, Any], device: torch.device | str,
             enabled: bool = True) -> Iterator[None]:
    """bf16 autocast on CUDA ``device`` when ``bf16_autocast`` (and ``enabled``); else a
    context that does nothing (always on CPU)."""
    if enabled and _on_cuda(device) and resolve_performance(cfg)["bf16_autocast"]:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            yield
    else:
        yield


def has_gradient_penalty(loss: Any) -> bool:
    """Whether ``loss`` (a :mod:`medgan.training.losses` object) differentiates D's input
    gradient."""
    name = getattr(loss, "config", {}).get("name", getattr(loss, "name", None))
    return bool(getattr(loss, "has_gradient_penalty", name in GRADIENT_PENALTY_LOSSES))
