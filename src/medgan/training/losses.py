"""GAN objectives: one object per objective, in the style of stylegan2-ada's loss classes.

A loss object has

* ``n_critic``: discriminator (critic) steps per training iteration;
* ``g_steps``: generator steps per training iteration (Delplace's G/D rate r, e.g. 3 for DCGAN);
* ``d_loss(D, real, fake) -> (loss, stats)``: the discriminator's loss to minimise on a batch of
  real and (detached) generated images, and a dict of detached scalar tensors to log;
* ``g_loss(D, fake) -> (loss, stats)``: the generator's loss to minimise;
* ``after_d_step(D)``: a hook run after every discriminator optimiser step (WGAN's weight clipping);
* ``config``: the config, defaults filled in, to record beside results. Optional keys
  (:attr:`GANLoss.optional`) appear there only when given, so that older configs record the same.

Every D maps images to logits (N,); every loss works with every architecture. Real and fake
batches go through D in separate forward passes, so a BatchNorm discriminator sees batches of one
kind, as in Radford's and Arjovsky's reference code. Random draws of a loss (interpolation
weights, perturbations) use torch's global RNG on the batch's device, which checkpoints save.
In a data-parallel run the trainer sets ``loss.ranks`` (:class:`medgan.training.distributed.Ranks`):
each process then takes its rows of the draws for the global batch, and DRAGAN's batch standard
deviation is that of the global batch, as in one process.

Build one from a config dict with :func:`build_loss` (``{"name": "wgan", "clip": 0.01}``);
:data:`LOSSES` maps names to classes. The base objective, :class:`GANLoss`, is in
:mod:`medgan.training.gan_loss`; StyleGAN2's in :mod:`medgan.training.stylegan2_loss`.
"""


from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from medgan.training.gan_loss import GANLoss, Stats, config_number, gradient_penalty
from medgan.training.stylegan2_loss import StyleGAN2Loss

__all__ = ["LOSSES", "DRAGANLoss", "GANLoss", "LSGANLoss", "StyleGAN2Loss", "WGANGPLoss",
           "WGANLoss", "build_loss", "gradient_penalty"]


class LSGANLoss(GANLoss):
    """Mao et al.'s least-squares GAN (a-b-c = 0-1-1): D minimises
    ``(D(x) - 1)^2 / 2 + D(G(z))^2 / 2``, G minimises ``(D(G(z)) - 1)^2 / 2``."""

    name: ClassVar[str] = "lsgan"
    optional: ClassVar[dict[str, Any]] = {"g_steps": 1}

    def d_loss(self, D: nn.Module, real: torch.Tensor,
               fake: torch.Tensor) -> tuple[torch.Tensor, Stats]:
        real_out, fake_out = D(real), D(fake)
        loss = 0.5 * ((real_out - 1.0) ** 2).mean() + 0.5 * (fake_out ** 2).mean()
        return loss, {"d_real": real_out.detach().mean(), "d_fake": fake_out.detach().mean()}

    def g_loss(self, D: nn.Module, fake: torch.Tensor) -> tuple[torch.Tensor, Stats]:
        return 0.5 * ((D(fake) - 1.0) ** 2).mean(), {}


class WGANLoss(GANLoss):
    """Arjovsky et al.'s Wasserstein GAN with weight clipping.

    The critic maximises ``D(x) - D(G(z))`` (logged as ``wasserstein``, the estimate of the
    Wasserstein-1 distance up to a constant), the generator maximises ``D(G(z))``. After every
    critic step all critic parameters are clipped to ``[-clip, clip]``, as in Arjovsky's code
    (BatchNorm scales and shifts included; running statistics are buffers, not clipped).
    """

    name: ClassVar[str] = "wgan"
    defaults: ClassVar[dict[str, Any]] = {"n_critic": 5, "clip": 0.01}
    optional: ClassVar[dict[str, Any]] = {"g_steps": 1}

    def __init__(self, **cfg: Any):
        super().__init__(**cfg)
        self.clip = config_number(self.config, "clip", self.name, low=0.0, low_open=True)

    def _critic_scores(self, D: nn.Module, real: torch.Tensor,
                       fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, Stats]:
        real_out = D(real)
        real_score, fake_score = real_out.mean(), D(fake).mean()
        return real_out, fake_score - real_score, {
            "wasserstein": (real_score - fake_score).detach(), "d_real": real_score.detach(),
            "d_fake": fake_score.detach()}

    def d_loss(self, D: nn.Module, real: torch.Tensor,
               fake: torch.Tensor) -> tuple[torch.Tensor, Stats]:
        _, loss, stats = self._critic_scores(D, real, fake)
        return loss, stats

    def g_loss(self, D: nn.Module, fake: torch.Tensor) -> tuple[torch.Tensor, Stats]:
        return -D(fake).mean(), {}

    @torch.no_grad()
    def after_d_step(self, D: nn.Module) -> None:
        for p in D.parameters():
            p.clamp_(-self.clip, self.clip)


class WGANGPLoss(WGANLoss):
    """Gulrajani et al.'s WGAN-GP with Karras et al.'s drift term (Beers' PGGAN).

    Critic loss ``D(G(z)) - D(x) + gp_lambda * E[(||grad D(x_hat)||_2 - 1)^2]
    + drift * E[D(x)^2]``, with ``x_hat = a x + (1 - a) G(z)``, ``a ~ U[0, 1)`` per image.
    No weight clipping. Logs ``gradient_penalty`` (unweighted), ``grad_norm``, ``drift``.
    """

    name: ClassVar[str] = "wgan_gp"
    defaults: ClassVar[dict[str, Any]] = {"n_critic": 5, "gp_lambda": 10.0, "drift": 0.001}

    def __init__(self, **cfg: Any):
        GANLoss.__init__(self, **cfg)
        self.gp_lambda = config_number(self.config, "gp_lambda", self.name, low=0.0)
        self.drift = config_number(self.config, "drift", self.name, low=0.0)

    def d_loss(self, D: nn.Module, real: torch.Tensor,
               fake: torch.Tensor) -> tuple[torch.Tensor, Stats]:
        real_out, loss, stats = self._critic_scores(D, real, fake)
        alpha = self.rand(real.shape[0], *[1] * (real.dim() - 1), like=real)
        penalty, norm = gradient_penalty(D, alpha * real + (1.0 - alpha) * fake)
        drift = (real_out ** 2).mean()
        loss = loss + self.gp_lambda * penalty + self.drift * drift
        return loss, {**stats, "gradient_penalty": penalty.detach(), "grad_norm": norm,
                      "drift": drift.detach()}

    def after_d_step(self, D: nn.Module) -> None:
        """No clipping: the gradient penalty keeps the critic Lipschitz."""


PERTURBATIONS = ("kodali", "delplace", "delplace_code")


class DRAGANLoss(GANLoss):
    """DRAGAN: the GAN loss plus a gradient penalty ``gp_lambda * E[(||grad D(x_hat)||_2 - 1)^2]``
    at points ``x_hat`` around the real images, chosen by ``perturbation`` (optional):

    * ``kodali`` (default): Kodali et al.'s reference code, ``x_p = x + c std(x) u`` and
      ``x_hat = x + a (x_p - x)``, ``u ~ U[0, 1)`` per pixel, ``a ~ U[0, 1)`` per image;
    * ``delplace``: Delplace 2019 eq. 5, the real image mixed with noise alone,
      ``x_hat = a x + (1 - a) x_p`` with ``x_p = c std(x) u`` (``x_p ~ U(0, c sigma_x)``), ``a``
      per image;
    * ``delplace_code``: the same with ``a`` drawn per pixel, as Delplace's dcgan3.py (his
      srresgan1.py draws it per image, as ``delplace``).

    ``c`` = ``perturb_scale`` (0.5), ``std`` over the batch. ``label_smoothing`` and
    ``smooth_generator`` work as in :class:`GANLoss`.
    """

    name: ClassVar[str] = "dragan"
    defaults: ClassVar[dict[str, Any]] = {"n_critic": 1, "gp_lambda": 10.0, "perturb_scale": 0.5}
    optional: ClassVar[dict[str, Any]] = {"g_steps": 1, "label_smoothing": 0.0,
                                          "smooth_generator": False, "perturbation": "kodali"}

    def __init__(self, **cfg: Any):
        super().__init__(**cfg)
        self.gp_lambda = config_number(self.config, "gp_lambda", self.name, low=0.0)
        self.perturb_scale = config_number(self.config, "perturb_scale", self.name, low=0.0)
        self.perturbation = self.config.get("perturbation", "kodali")
        if self.perturbation not in PERTURBATIONS:
            raise ValueError(f"dragan perturbation must be one of {PERTURBATIONS}, got "
                             f"{self.perturbation!r}")

    def perturbed(self, real: torch.Tensor) -> torch.Tensor:
        """Points around ``real`` where the penalty is taken."""
        noise = self.perturb_scale * self.batch_std(real) * self.rand(*real.shape, like=real)
        if self.perturbation == "delplace_code":
            alpha = self.rand(*real.shape, like=real)
        else:
            alpha = self.rand(real.shape[0], *[1] * (real.dim() - 1), like=real)
        if self.perturbation == "kodali":
            return real + alpha * noise  # x + a (x_p - x), x_p = x + noise
        return alpha * real + (1.0 - alpha) * noise

    def d_loss(self, D: nn.Module, real: torch.Tensor,
               fake: torch.Tensor) -> tuple[torch.Tensor, Stats]:
        loss, stats = super().d_loss(D, real, fake)
        penalty, norm = gradient_penalty(D, self.perturbed(real))
        return loss + self.gp_lambda * penalty, {**stats, "gradient_penalty": penalty.detach(),
                                                 "grad_norm": norm}


LOSSES: dict[str, type[GANLoss]] = {
    cls.name: cls for cls in (GANLoss, LSGANLoss, WGANLoss, WGANGPLoss, DRAGANLoss,
                              StyleGAN2Loss)}


def build_loss(cfg: dict[str, Any]) -> GANLoss:
    """A loss object from a config dict ``{"name": <one of LOSSES>, <options>}``."""
    if not isinstance(cfg, dict) or "name" not in cfg:
        raise ValueError(f"loss config must be a dict with a 'name' key, got {cfg!r}")
    if cfg["name"] not in LOSSES:
        raise ValueError(f"unknown loss {cfg['name']!r}; known: {sorted(LOSSES)}")
    return LOSSES[cfg["name"]](**cfg)
