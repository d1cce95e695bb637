"""One training step of a GAN: ``n_critic`` discriminator steps, then ``g_steps`` generator
steps (:func:`train_step`); the same on one process or many (the models passed in are then the
distributed ones, see :mod:`medgan.training.distributed`)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

from medgan.training.stats import StatsAccumulator


def _grad_norm(module: torch.nn.Module) -> torch.Tensor:
    """L2 norm of all parameter gradients of ``module``: a device tensor, no host sync."""
    norms = [p.grad.detach().norm() for p in module.parameters() if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(norms)) if norms else torch.zeros(())


def train_step(G: torch.nn.Module, D: torch.nn.Module, loss, opt_g: torch.optim.Optimizer,
               opt_d: torch.optim.Optimizer, next_real: Callable[[], torch.Tensor],
               next_z: Callable[[], torch.Tensor], stats: StatsAccumulator, *,
               autocast_d: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
               autocast_g: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
               G_sampler: torch.nn.Module | None = None, D_frozen: torch.nn.Module | None = None,
               ) -> None:
    """One training step: ``loss.n_critic`` discriminator steps, then ``loss.g_steps``
    generator steps.

    Each discriminator step uses a fresh real batch and fresh latents, and is followed by the
    loss's ``after_d_step`` hook; each generator step uses fresh latents. Losses, the norms of
    the parameter gradients (``d_grad_norm``, ``g_grad_norm``) and loss statistics are added to
    ``stats`` (no host sync). ``autocast_d`` / ``autocast_g`` give the
    context (e.g. :func:`medgan.training.accel.autocast`) around the forward passes and loss of the
    discriminator / generator steps; backward runs outside it. ``G_sampler``: the G that makes
    the discriminator steps' fakes under ``no_grad``; ``D_frozen``: the D that the generator steps
    differentiate through, its parameters frozen (default: ``G`` and ``D``; in data-parallel runs
    the plain models, while ``G`` and ``D`` are their DDP wrappers). A loss with a
    ``g_regulariser(G_sampler, next_z)`` (stylegan2's path-length term) adds its term to the
    generator loss.
    """
    G_sampler = G if G_sampler is None else G_sampler
    D_frozen = D if D_frozen is None else D_frozen
    G.train()
    D.train()
    for _ in range(loss.n_critic):
        real = next_real()
        with autocast_d():
            with torch.no_grad():
                fake = G_sampler(next_z())
            d_loss, d_stats = loss.d_loss(D, real, fake)
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        d_grad_norm = _grad_norm(D)
        opt_d.step()
        loss.after_d_step(D)
        stats.add({"d_loss": d_loss, "d_grad_norm": d_grad_norm, **d_stats})

    D.requires_grad_(False)  # no parameter gradients for D in the generator step
    regulariser = getattr(loss, "g_regulariser", None)  # stylegan2's lazy path-length term
    try:
        for _ in range(getattr(loss, "g_steps", 1)):
            with autocast_g():
                g_loss, g_stats = loss.g_loss(D_frozen, G(next_z()))
                if regulariser is not None:
                    term, reg_stats = regulariser(G_sampler, next_z)
                    g_loss = g_loss if term is None else g_loss + term
                    g_stats = {**g_stats, **reg_stats}
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            g_grad_norm = _grad_norm(G)
            opt_g.step()
            stats.add({"g_loss": g_loss, "g_grad_norm": g_grad_norm, **g_stats})
    finally:
        D.requires_grad_(True)
