"""Karras et al. 2020's StyleGAN2 objective (:class:`StyleGAN2Loss`: the non-saturating
logistic loss with lazy R1, optional path-length regularisation and ADA) and the helpers of its
path-length term, which the generator's tests use too.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from medgan.training.augment import ADA_DEFAULTS, AdaptiveAugment
from medgan.training.gan_loss import GANLoss, Stats, config_number


class StyleGAN2Loss(GANLoss):
    """Karras et al. 2020's StyleGAN2 objective: the non-saturating logistic loss
    (:class:`GANLoss` without smoothing) with lazy R1 regularisation, and optionally ADA.

    R1 (Mescheder et al. 2018): ``r1_gamma / 2 * E[||grad_x D(x)||^2]`` on real images, lazily
    (StyleGAN2 sec. 3.1): every ``r1_interval`` discriminator steps, multiplied by
    ``r1_interval``, in the same forward pass as that step's loss (logged as ``r1``, the last
    unweighted penalty). ``r1_gamma`` ``"auto"`` is resolved from the resolution and batch size
    before the loss is built (:mod:`medgan.training.presets`).

    Path-length regularisation (StyleGAN2 sec. 3.2 and appendix B; optional, off unless
    ``pl_weight`` > 0): ``pl_weight * E[(||J_w^T y||_2 - a)^2]`` with ``J_w`` the Jacobian of
    the synthesis network at ``w = mapping(z)`` (one ``w`` per image, broadcast to every layer,
    no style mixing), ``y ~ N(0, I) / sqrt(H W)`` random images and ``a`` the exponential
    moving average of the lengths (``a <- a + pl_decay * (mean length - a)``, taken before the
    penalty; starts at 0). Lazily: every ``pl_interval`` generator steps, multiplied by
    ``pl_interval``, on ``batch / pl_batch_shrink`` fresh latents, added to that step's loss
    (:meth:`g_regulariser`; logs ``pl_penalty`` and ``pl_mean``). ``a`` and the step counter
    are part of :meth:`state_dict`.

    ``ada`` (``{target, interval, speed_kimg, initial_p}``, :data:`~medgan.training.augment.
    ADA_DEFAULTS`; ``null``: none): every image D sees, real and generated, in D's and G's steps,
    goes through the adaptive augmentation of :mod:`medgan.training.augment` (the R1 gradient is
    taken with respect to the un-augmented reals, through the augmentation); logs ``ada_p`` and
    ``ada_rt``. Needs the channel names: the trainer calls :meth:`bind`. The loss's own state
    (the R1 counter, ADA's ``p`` and heuristic) is :meth:`state_dict`, part of the checkpoint.
    """

    name: ClassVar[str] = "stylegan2"
    defaults: ClassVar[dict[str, Any]] = {"n_critic": 1, "r1_gamma": 10.0, "r1_interval": 16,
                                          "ada": None}
    optional: ClassVar[dict[str, Any]] = {"g_steps": 1, "pl_weight": 0.0, "pl_interval": 4,
                                          "pl_batch_shrink": 2, "pl_decay": 0.01}
    has_gradient_penalty: ClassVar[bool] = True

    def __init__(self, **cfg: Any):
        super().__init__(**cfg)
        self.r1_gamma = config_number(self.config, "r1_gamma", self.name, low=0.0)
        interval = self.config["r1_interval"]
        if not isinstance(interval, int) or isinstance(interval, bool) or interval < 1:
            raise ValueError(f"stylegan2 loss r1_interval must be a positive integer, "
                             f"got {interval!r}")
        ada = self.config["ada"]
        if ada not in (None, False):
            if ada is True:
                ada = {}
            if not isinstance(ada, dict) or set(ada) - set(ADA_DEFAULTS):
                raise ValueError(f"stylegan2 loss ada must be null or a dict of "
                                 f"{sorted(ADA_DEFAULTS)}, got {ada!r}")
            ada = {**ADA_DEFAULTS, **ada}
            for key, low, high in (("target", 0.0, 1.0), ("initial_p", 0.0, 1.0)):
                config_number(ada, key, "stylegan2 ada", low=low, high=high + 1e-12)
            config_number(ada, "speed_kimg", "stylegan2 ada", low=0.0, low_open=True)
            if not isinstance(ada["interval"], int) or ada["interval"] < 1:
                raise ValueError(f"stylegan2 ada interval must be a positive integer, "
                                 f"got {ada['interval']!r}")
            self.config["ada"] = ada
        else:
            self.config["ada"] = None
        self.ada: Any = None  # the AdaptiveAugment, once bound to the channels
        self.d_steps = 0
        self.last_r1 = torch.zeros(())
        self._check_path_length()
        self.g_calls = 0  # generator steps so far (path-length regularisation's lazy counter)
        self.pl_mean = torch.zeros(())  # a: the moving average of the path lengths
        self.last_pl = torch.zeros(())

    def _check_path_length(self) -> None:
        """Check the optional path-length keys; ``self.pl_weight`` (0: off)."""
        self.pl_weight = 0.0
        if "pl_weight" in self.config:
            self.pl_weight = config_number(self.config, "pl_weight", self.name, low=0.0)
        for key in ("pl_interval", "pl_batch_shrink"):
            value = self.config.get(key, self.optional[key])
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"stylegan2 loss {key} must be a positive integer, "
                                 f"got {value!r}")
        if "pl_decay" in self.config:
            config_number(self.config, "pl_decay", self.name, low=0.0, high=1.0 + 1e-12,
                    low_open=True)

    def _pl(self, key: str) -> Any:
        return self.config.get(key, self.optional[key])

    def bind(self, channels: list[str]) -> None:
        """Build the augmentation for images with these channel names (if ``ada`` is set)."""
        if self.config["ada"] is not None:
            self.ada = AdaptiveAugment(channels, self.config["ada"])

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.ada is None else self.ada.augment(x, self.rand)

    def d_loss(self, D: nn.Module, real: torch.Tensor,
               fake: torch.Tensor) -> tuple[torch.Tensor, Stats]:
        self.d_steps += 1
        due = self.r1_gamma > 0 and self.d_steps % self.config["r1_interval"] == 0
        real_in = real.detach().requires_grad_(True) if due else real
        real_logits = D(self.augment(real_in))
        fake_logits = D(self.augment(fake))
        loss = self._bce_d_loss(real_logits, fake_logits)
        if due:
            (grad,) = torch.autograd.grad(real_logits.sum(), real_in, create_graph=True)
            penalty = grad.square().flatten(1).sum(1).mean()
            loss = loss + penalty * (0.5 * self.r1_gamma * self.config["r1_interval"])
            self.last_r1 = penalty.detach()
        stats = {"d_real": real_logits.detach().mean(), "d_fake": fake_logits.detach().mean(),
                 "r1": self.last_r1.to(real.device)}
        if self.ada is not None:
            self.ada.observe(real_logits, self.ranks)
            stats["ada_p"] = torch.tensor(self.ada.p, device=real.device)
            stats["ada_rt"] = torch.tensor(self.ada.r_t, device=real.device)
        return loss, stats

    def g_loss(self, D: nn.Module, fake: torch.Tensor) -> tuple[torch.Tensor, Stats]:
        return F.softplus(-D(self.augment(fake))).mean(), {}

    def g_regulariser(self, G: nn.Module, next_z: Any) -> tuple[torch.Tensor | None, Stats]:
        """The lazy path-length term to add to this generator step's loss (None when off or
        not due) and its statistics. ``G``: the plain generator (a :class:`~medgan.models.
        conditional.ConditionalGenerator` takes the current labels' first rows); ``next_z``:
        draws a batch of training latents, of which the first ``batch / pl_batch_shrink`` are
        used. Draws nothing when not due, so that a run without it is unchanged."""
        if self.pl_weight <= 0:
            return None, {}
        self.g_calls += 1
        interval = self._pl("pl_interval")
        penalty = None
        if self.g_calls % interval == 0:
            z = next_z()
            z = z[: max(1, z.shape[0] // self._pl("pl_batch_shrink"))]
            base, latent = generator_input(G, z)
            w = base.mapping(latent)
            lengths = path_lengths(base, w, path_noise(base, w, self.randn))
            mean = lengths.detach().mean()
            if self.ranks is not None:
                mean = self.ranks.average(mean)
            self.pl_mean = self.pl_mean.to(mean) + self._pl("pl_decay") * (
                mean - self.pl_mean.to(mean))
            raw = (lengths - self.pl_mean).square().mean()
            self.last_pl = raw.detach()
            penalty = raw * (self.pl_weight * interval)
        device = self.pl_mean.device if penalty is None else penalty.device
        return penalty, {"pl_penalty": self.last_pl.to(device),
                         "pl_mean": self.pl_mean.to(device)}

    def randn(self, *shape: int, like: torch.Tensor) -> torch.Tensor:
        """``N(0, 1)`` numbers of ``shape`` on ``like``'s device and dtype (torch's global RNG,
        which checkpoints save; in a data-parallel run each process draws its own)."""
        return torch.randn(*shape, device=like.device, dtype=like.dtype)

    def state_dict(self) -> dict[str, Any]:
        """The loss's own training state (plain numbers) for the checkpoint; the path-length
        state only when it is on (older checkpoints stay the same)."""
        state = {"d_steps": self.d_steps, "last_r1": float(self.last_r1),
                 "ada": None if self.ada is None else self.ada.state_dict()}
        if self.pl_weight > 0:
            state.update(g_calls=self.g_calls, pl_mean=float(self.pl_mean),
                         last_pl=float(self.last_pl))
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.d_steps = int(state["d_steps"])
        self.last_r1 = torch.tensor(state["last_r1"], dtype=torch.float32)
        if self.ada is not None:
            self.ada.load_state_dict(state["ada"])
        if self.pl_weight > 0:
            self.g_calls = int(state["g_calls"])
            self.pl_mean = torch.tensor(state["pl_mean"], dtype=torch.float32)
            self.last_pl = torch.tensor(state["last_pl"], dtype=torch.float32)


def generator_input(G: nn.Module, z: torch.Tensor) -> tuple[nn.Module, torch.Tensor]:
    """The StyleGAN2 generator inside ``G`` and the latent its mapping network takes for ``z``:
    ``z`` itself, or for a class-conditional ``G`` ``[z, embedding(labels)]`` with the first
    rows of the current labels (class 0 where there are none)."""
    if not hasattr(G, "embedding"):
        return G, z
    labels = G.slot.labels
    labels = None if labels is None else labels[: z.shape[0]]
    return G.base, G.latent_input(z, labels)


def path_noise(G: nn.Module, w: torch.Tensor, randn: Any) -> torch.Tensor:
    """``y ~ N(0, I) / sqrt(H W)``: random images of ``G``'s output shape for ``w``'s batch."""
    shape = (w.shape[0], G.channels, G.resolution, G.resolution)
    return randn(*shape, like=w) / math.sqrt(G.resolution * G.resolution)


def path_lengths(G: nn.Module, w: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``||J_w^T y||_2`` per image (N,), differentiable w.r.t. G's parameters: ``J_w`` the
    Jacobian of ``G.synthesis`` at ``w`` (N, w_dim), broadcast to all of G's layers."""
    w = w if w.requires_grad else w.detach().requires_grad_(True)
    img = G.synthesis(w[:, None].expand(-1, G.num_ws, -1))
    (grad,) = torch.autograd.grad((img * y).sum(), w, create_graph=True)
    return grad.square().sum(dim=1).sqrt()
