"""The base of medgan's GAN objectives: :class:`GANLoss` (Goodfellow's GAN, the class every
objective of :mod:`medgan.training.losses` builds on), its config checks and the gradient
penalty that WGAN-GP, DRAGAN and StyleGAN2's R1 share. :mod:`medgan.training.losses` says what
a loss object has and holds the registry.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

Stats = dict[str, torch.Tensor]
GENERATOR_LOSSES = ("non_saturating", "minimax")


def config_number(cfg: dict[str, Any], key: str, loss: str, *, low: float,
                  high: float | None = None, low_open: bool = False) -> float:
    """``cfg[key]`` as a float in the given range (YAML 1.1 reads "1e-3" as a string: accepted)."""
    value = cfg[key]
    try:
        out = float(value) if not isinstance(value, bool) else float("nan")
    except (TypeError, ValueError):
        out = float("nan")
    ok = (out > low if low_open else out >= low) and (high is None or out < high)
    if not ok:
        bound = f"{'>' if low_open else '>='} {low}" + ("" if high is None else f" and < {high}")
        raise ValueError(f"{loss} loss {key} must be a number {bound}, got {value!r}")
    cfg[key] = out
    return out


def gradient_penalty(D: nn.Module, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``mean((||dD/dx||_2 - 1)^2)`` at ``points`` (differentiable w.r.t. D's parameters) and
    the mean gradient norm (detached)."""
    points = points.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(D(points).sum(), points, create_graph=True)
    norm = grad.flatten(1).norm(2, dim=1)
    return ((norm - 1.0) ** 2).mean(), norm.detach().mean()


class GANLoss:
    """Goodfellow's GAN with the non-saturating generator loss (Radford's and Han's DCGAN).

    D maximises ``log D(x) + log(1 - D(G(z)))``; G maximises ``log D(G(z))``; both as
    binary cross-entropy on logits. ``label_smoothing`` s (optional, default 0) is Salimans'
    one-sided smoothing: D's target for real images is ``1 - s`` (Delplace: s = 0.1, target 0.9),
    fake targets stay 0 and the generator's target stays 1 unless ``smooth_generator`` (optional,
    default False) is set: then G's target is ``1 - s`` too (Delplace sec. 2.3, "training both
    networks with D(y) = 0.9", and his code's generator loss).
    ``generator_loss`` (optional, gan only) ``"minimax"`` makes G minimise
    ``log(1 - D(G(z)))`` instead, Goodfellow's saturating form: Kitchen & Seah 2017's eq. 2 and
    their code (``gloss = -dloss_fake``).
    """

    name: ClassVar[str] = "gan"
    defaults: ClassVar[dict[str, Any]] = {"n_critic": 1}
    optional: ClassVar[dict[str, Any]] = {"g_steps": 1, "label_smoothing": 0.0,
                                          "smooth_generator": False,
                                          "generator_loss": "non_saturating"}

    def __init__(self, **cfg: Any):
        cfg.pop("name", None)
        known = {**self.defaults, **self.optional}
        unknown = [k for k in cfg if k not in known]
        if unknown:
            raise ValueError(f"unknown {self.name} loss key(s) {unknown}; "
                             f"known: {sorted(['name', *known])}")
        self.config: dict[str, Any] = {"name": self.name, **self.defaults, **cfg}
        for key in ("n_critic", "g_steps"):
            value = self.config.get(key, self.optional.get(key))
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"loss {key} must be a positive integer, got {value!r}")
        self.n_critic: int = self.config["n_critic"]
        self.g_steps: int = self.config.get("g_steps", 1)
        self.label_smoothing = 0.0
        self.ranks: Any = None  # the processes of a data-parallel run; None: one process
        if "label_smoothing" in self.config:
            self.label_smoothing = config_number(self.config, "label_smoothing", self.name,
                                           low=0.0, high=1.0)
        self.minimax = self.config.get("generator_loss", "non_saturating") == "minimax"
        if self.config.get("generator_loss", "non_saturating") not in GENERATOR_LOSSES:
            raise ValueError(f"loss generator_loss must be one of {GENERATOR_LOSSES}, "
                             f"got {self.config['generator_loss']!r}")
        self.smooth_generator = self.config.get("smooth_generator", False)
        if not isinstance(self.smooth_generator, bool):
            raise ValueError(f"loss smooth_generator must be true or false, got "
                             f"{self.smooth_generator!r}")

    def rand(self, *shape: int, like: torch.Tensor) -> torch.Tensor:
        """``U[0, 1)`` numbers of ``shape`` (first dimension: the batch) on ``like``'s device and
        dtype; in a data-parallel run this process's rows of the global batch's draw."""
        if self.ranks is None:
            return torch.rand(*shape, device=like.device, dtype=like.dtype)
        return self.ranks.rand(*shape, device=like.device, dtype=like.dtype)

    def batch_std(self, x: torch.Tensor) -> torch.Tensor:
        """``x.std()``, over the global batch in a data-parallel run."""
        return x.std() if self.ranks is None else self.ranks.std(x)

    def d_loss(self, D: nn.Module, real: torch.Tensor,
               fake: torch.Tensor) -> tuple[torch.Tensor, Stats]:
        real_logits, fake_logits = D(real), D(fake)
        return self._bce_d_loss(real_logits, fake_logits), {
            "d_real": real_logits.detach().mean(), "d_fake": fake_logits.detach().mean()}

    def _bce_d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        # BCE(l, t) = t * softplus(-l) + (1 - t) * softplus(l)
        real_term = F.softplus(-real_logits)
        if self.label_smoothing:
            s = self.label_smoothing
            real_term = (1.0 - s) * real_term + s * F.softplus(real_logits)
        return real_term.mean() + F.softplus(fake_logits).mean()

    def g_loss(self, D: nn.Module, fake: torch.Tensor) -> tuple[torch.Tensor, Stats]:
        logits = D(fake)
        if self.minimax:  # log(1 - sigmoid(l)) = -softplus(l)
            return -F.softplus(logits).mean(), {}
        if self.smooth_generator and self.label_smoothing:
            s = self.label_smoothing  # BCE with target 1 - s
            return ((1.0 - s) * F.softplus(-logits) + s * F.softplus(logits)).mean(), {}
        return F.softplus(-logits).mean(), {}

    def after_d_step(self, D: nn.Module) -> None:
        """Nothing to do after a discriminator step."""
