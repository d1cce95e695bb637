"""GAN objectives: one object per objective, in the style of stylegan2-ada's loss classes.

A loss object has

* ``n_critic``: discriminator (critic) steps per generator step;
* ``d_loss(D, real, fake) -> (loss, stats)``: the discriminator's loss to minimise on a batch of
  real and (detached) generated images, and a dict of detached scalar tensors to log;
* ``g_loss(D, fake) -> (loss, stats)``: the generator's loss to minimise;
* ``after_d_step(D)``: a hook run after every discriminator optimiser step (WGAN's weight clipping);
* ``config``: the full config, defaults filled in, to record beside results.

Real and fake batches go through D in separate forward passes, so a BatchNorm discriminator sees
batches of one kind, as in Radford's and Arjovsky's reference code.

Build one from a config dict with :func:`build_loss` (``{"name": "wgan", "clip": 0.01}``);
:data:`LOSSES` maps names to classes.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

Stats = dict[str, torch.Tensor]


class GANLoss:
    """Goodfellow's GAN with the non-saturating generator loss (Radford's and Han's DCGAN).

    D maximises ``log D(x) + log(1 - D(G(z)))``; G maximises ``log D(G(z))``; both as
    binary cross-entropy on logits.
    """

    name: ClassVar[str] = "gan"
    defaults: ClassVar[dict[str, Any]] = {"n_critic": 1}

    def __init__(self, **cfg: Any):
        cfg.pop("name", None)
        unknown = [k for k in cfg if k not in self.defaults]
        if unknown:
            raise ValueError(f"unknown {self.name} loss key(s) {unknown}; "
                             f"known: {sorted(['name', *self.defaults])}")
        self.config: dict[str, Any] = {"name": self.name, **self.defaults, **cfg}
        n_critic = self.config["n_critic"]
        if not isinstance(n_critic, int) or isinstance(n_critic, bool) or n_critic < 1:
            raise ValueError(f"loss n_critic must be a positive integer, got {n_critic!r}")
        self.n_critic: int = n_critic

    def d_loss(self, D: nn.Module, real: torch.Tensor,
               fake: torch.Tensor) -> tuple[torch.Tensor, Stats]:
        real_logits, fake_logits = D(real), D(fake)
        loss = F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
        return loss, {"d_real": real_logits.detach().mean(), "d_fake": fake_logits.detach().mean()}

    def g_loss(self, D: nn.Module, fake: torch.Tensor) -> tuple[torch.Tensor, Stats]:
        return F.softplus(-D(fake)).mean(), {}

    def after_d_step(self, D: nn.Module) -> None:
        """Nothing to do after a discriminator step."""


class WGANLoss(GANLoss):
    """Arjovsky et al.'s Wasserstein GAN with weight clipping.

    The critic maximises ``D(x) - D(G(z))`` (logged as ``wasserstein``, the estimate of the
    Wasserstein-1 distance up to a constant), the generator maximises ``D(G(z))``. After every
    critic step all critic parameters are clipped to ``[-clip, clip]``, as in Arjovsky's code
    (BatchNorm scales and shifts included; running statistics are buffers, not clipped).
    """

    name: ClassVar[str] = "wgan"
    defaults: ClassVar[dict[str, Any]] = {"n_critic": 5, "clip": 0.01}

    def __init__(self, **cfg: Any):
        super().__init__(**cfg)
        clip = self.config["clip"]
        try:  # YAML 1.1 reads "1e-2" (no dot) as a string: accept numeric strings
            self.clip = float(clip)
        except (TypeError, ValueError):
            self.clip = float("nan")
        if isinstance(clip, bool) or not self.clip > 0:
            raise ValueError(f"wgan loss clip must be a positive number, got {clip!r}")
        self.config["clip"] = self.clip

    def d_loss(self, D: nn.Module, real: torch.Tensor,
               fake: torch.Tensor) -> tuple[torch.Tensor, Stats]:
        real_score, fake_score = D(real).mean(), D(fake).mean()
        return fake_score - real_score, {"wasserstein": (real_score - fake_score).detach(),
                                         "d_real": real_score.detach(),
                                         "d_fake": fake_score.detach()}

    def g_loss(self, D: nn.Module, fake: torch.Tensor) -> tuple[torch.Tensor, Stats]:
        return -D(fake).mean(), {}

    @torch.no_grad()
    def after_d_step(self, D: nn.Module) -> None:
        for p in D.parameters():
            p.clamp_(-self.clip, self.clip)


LOSSES: dict[str, type[GANLoss]] = {cls.name: cls for cls in (GANLoss, WGANLoss)}


def build_loss(cfg: dict[str, Any]) -> GANLoss:
    """A loss object from a config dict ``{"name": <one of LOSSES>, <options>}``."""
    if not isinstance(cfg, dict) or "name" not in cfg:
        raise ValueError(f"loss config must be a dict with a 'name' key, got {cfg!r}")
    if cfg["name"] not in LOSSES:
        raise ValueError(f"unknown loss {cfg['name']!r}; known: {sorted(LOSSES)}")
    return LOSSES[cfg["name"]](**cfg)
