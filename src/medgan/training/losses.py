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
:data:`LOSSES` maps names to classes.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from medgan.training.augment import ADA_DEFAULTS, AdaptiveAugment

Stats = dict[str, torch.Tensor]
GENERATOR_LOSSES = ("non_saturating", "minimax")


def _number(cfg: dict[str, Any], key: str, loss: str, *, low: float, high: float | None = None,
            low_open: bool = False) -> float:
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
            self.label_smoothing = _number(self.config, "label_smoothing", self.name,
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
        self.clip = _number(self.config, "clip", self.name, low=0.0, low_open=True)

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
        self.gp_lambda = _number(self.config, "gp_lambda", self.name, low=0.0)
        self.drift = _number(self.config, "drift", self.name, low=0.0)

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
        self.gp_lambda = _number(self.config, "gp_lambda", self.name, low=0.0)
        self.perturb_scale = _number(self.config, "perturb_scale", self.name, low=0.0)
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
        self.r1_gamma = _number(self.config, "r1_gamma", self.name, low=0.0)
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
                _number(ada, key, "stylegan2 ada", low=low, high=high + 1e-12)
            _number(ada, "speed_kimg", "stylegan2 ada", low=0.0, low_open=True)
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
            self.pl_weight = _number(self.config, "pl_weight", self.name, low=0.0)
        for key in ("pl_interval", "pl_batch_shrink"):
            value = self.config.get(key, self.optional[key])
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"stylegan2 loss {key} must be a positive integer, "
                                 f"got {value!r}")
        if "pl_decay" in self.config:
            _number(self.config, "pl_decay", self.name, low=0.0, high=1.0 + 1e-12,
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
