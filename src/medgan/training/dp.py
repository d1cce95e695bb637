"""Differentially private training of the discriminator with DP-SGD (Opacus).

D is the only network that reads real images; G learns only through D's outputs on its own
fakes. So a run whose D is trained with DP-SGD (Abadi et al. 2016) releases a G and a D (and
every image G makes) that are differentially private with respect to the training images, by
post-processing. A model's ``privacy: {dp: {epsilon, delta, max_grad_norm}}`` turns it on:

* **Poisson sampling.** Every D step draws its real batch by including each training image
  independently with probability ``q = batch_size / n_train`` (:class:`PoissonSampler`, drawn
  with the run's data stream), the sampling that the accountant's amplification bound assumes.
  An empty draw (probability ``(1 - q) ** n_train``, ~``exp(-batch_size)``) is drawn again.
* **Per-sample clipping and noise.** D is wrapped in Opacus's ``GradSampleModule`` and its
  optimiser in ``DPOptimizer``: every row's gradient is clipped to ``max_grad_norm``, their sum
  gets Gaussian noise of standard deviation ``noise_multiplier * max_grad_norm`` and is divided
  by the expected batch size. The D step's fakes are as many as its real images, one fresh
  latent per real image, so a row's gradient is that of (real image i, fake i): removing an
  image removes one row, whose clipped gradient is bounded by ``max_grad_norm``.
* **Accounting.** ``noise_multiplier`` is found (Opacus's ``get_noise_multiplier``) so that the
  chosen accountant (``rdp``, default, or ``prv``) gives at most ``epsilon`` at ``delta`` after
  all ``schedule.steps * loss.n_critic`` D steps; the accountant's history is saved in the
  checkpoint (``privacy``) and its (epsilon, delta) after the run's steps is in ``run.json``
  (``privacy``).
* **Refusals.** Layers whose output for one image depends on the rest of the batch (BatchNorm,
  minibatch standard deviation) or that Opacus cannot differentiate per sample, gradient-penalty
  losses (WGAN-GP, DRAGAN: double backward), data-parallel runs and ``torch.compile`` ->
  :class:`ValueError` saying what to change (DCGAN: ``architecture.d_norm: group``).

What this guarantees, and what not: (epsilon, delta)-DP for **one image** (a slice or a lesion
patch). A patient with k images is protected at about ``k * epsilon`` (group privacy). The
training log (``stats.jsonl``: d_loss, d_real, d_grad_norm on the real batch, before noise) is
not covered; the checkpoint's weights and optimiser state and the generated images are.

On CPU with the same thread count a resumed DP run equals an uninterrupted one bit for bit: the
noise comes from torch's global generator and the batches from the data generator, both in the
checkpoint's RNG state.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch

ACCOUNTANTS = ("rdp", "prv")
DEFAULTS: dict[str, Any] = {"delta": None, "max_grad_norm": 1.0, "accountant": "rdp"}
# the losses that differentiate D's input gradient (double backward through Opacus's hooks)
GRADIENT_PENALTY_LOSSES = ("wgan_gp", "dragan")


def _positive(value: Any, what: str) -> float:
    try:
        out = float(value) if not isinstance(value, bool) else float("nan")
    except (TypeError, ValueError):
        out = float("nan")
    if not out > 0 or not math.isfinite(out):
        raise ValueError(f"privacy.dp.{what} must be a positive number, got {value!r}")
    return out


def resolve_dp(privacy: dict[str, Any] | None, *, n_images: int, batch_size: int,
               steps: int) -> dict[str, Any] | None:
    """The resolved ``privacy`` config of a run (None: no DP): ``dp`` with ``epsilon``,
    ``delta`` (default ``1 / (10 n_images)``), ``max_grad_norm``, ``accountant``, and the
    derived ``sample_rate``, ``d_steps`` and ``noise_multiplier``; bad values -> ValueError."""
    if not privacy or not privacy.get("dp"):
        return None
    unknown = [k for k in privacy if k != "dp"]
    if unknown:
        raise ValueError(f"unknown privacy key(s) {unknown}; known: ['dp']")
    dp = {**DEFAULTS, **privacy["dp"]}
    unknown = [k for k in dp if k not in (*DEFAULTS, "epsilon")]
    if unknown:
        raise ValueError(f"unknown privacy.dp key(s) {unknown}; known: "
                         f"{sorted([*DEFAULTS, 'epsilon'])}")
    if "epsilon" not in dp:
        raise ValueError("privacy.dp needs an epsilon (the privacy budget)")
    epsilon = _positive(dp["epsilon"], "epsilon")
    delta = 1.0 / (10 * n_images) if dp["delta"] is None else _positive(dp["delta"], "delta")
    if delta >= 1:
        raise ValueError(f"privacy.dp.delta must be < 1, got {delta}")
    if dp["accountant"] not in ACCOUNTANTS:
        raise ValueError(f"privacy.dp.accountant must be one of {ACCOUNTANTS}, "
                         f"got {dp['accountant']!r}")
    if batch_size >= n_images:
        raise ValueError(f"DP training samples batches of {batch_size} of {n_images} training "
                         "images: the batch must be smaller than the training set")
    from opacus.accountants.utils import get_noise_multiplier

    sample_rate = batch_size / n_images
    with warnings.catch_warnings():  # "optimal order is the largest alpha": a looser bound
        warnings.simplefilter("ignore", UserWarning)
        sigma = get_noise_multiplier(target_epsilon=epsilon, target_delta=delta,
                                     sample_rate=sample_rate, steps=steps,
                                     accountant=dp["accountant"])
    return {"dp": {"epsilon": epsilon, "delta": delta,
                   "max_grad_norm": _positive(dp["max_grad_norm"], "max_grad_norm"),
                   "accountant": dp["accountant"], "unit": "image",
                   "sample_rate": sample_rate, "d_steps": steps,
                   "noise_multiplier": float(sigma)}}


def check_private_run(config: dict[str, Any], *, distributed: bool) -> None:
    """Refuse, with what to change, a DP run of a loss, schedule or setting DP-SGD cannot take."""
    loss, arch = config["loss"]["name"], config["architecture"]
    if loss in GRADIENT_PENALTY_LOSSES:
        raise ValueError(f"privacy.dp: the {loss} loss differentiates D's input gradient, which "
                         "Opacus's per-sample gradients cannot; use gan, lsgan or wgan")
    if arch["name"] == "pggan" or arch.get("minibatch_stddev"):
        raise ValueError("privacy.dp: a minibatch-stddev layer mixes the images of a batch, so "
                         "one image's gradient depends on the others; turn it off "
                         "(architecture.minibatch_stddev: false; pggan has it built in)")
    if distributed:
        raise ValueError("privacy.dp: data-parallel DP training is not supported; train on "
                         "one process (gpu: 1 / processes: 1)")
    if config["performance"].get("compile"):
        raise ValueError("privacy.dp: torch.compile does not run Opacus's hooks; set "
                         "performance.compile: false")


def check_discriminator(D: torch.nn.Module, architecture: str) -> None:
    """ValueError naming the layers of ``D`` that Opacus cannot train per sample."""
    from opacus.validators import ModuleValidator

    errors = ModuleValidator.validate(D, strict=False)
    if errors:
        hint = (" (DCGAN: set architecture.d_norm: group for GroupNorm)"
                if architecture == "dcgan" else "")
        names = sorted({str(e).split(". ")[0] for e in errors})
        raise ValueError(f"privacy.dp: the {architecture} discriminator has layers DP-SGD "
                         f"cannot train per sample{hint}: {names[:4]}")


class PoissonSampler:
    """Batch indices with every one of ``n`` items in independently with probability
    ``sample_rate`` (redrawn when empty), from a seeded generator; ``last_size`` is the size
    of the last batch. The same ``next``/``state_dict`` interface as the epoch sampler."""

    def __init__(self, n: int, sample_rate: float, generator: torch.Generator):
        self.n, self.sample_rate, self.generator = n, sample_rate, generator
        self.batch_size = max(1, round(n * sample_rate))  # the expected size
        self.last_size = self.batch_size

    def _draw(self, generator: torch.Generator) -> torch.Tensor:
        while True:
            keep = torch.rand(self.n, generator=generator) < self.sample_rate
            idx = torch.nonzero(keep).flatten()
            if len(idx):
                return idx

    def next(self, batch_size: int | None = None) -> torch.Tensor:
        """A Poisson batch (``batch_size`` is ignored: the rate fixes the expected size)."""
        idx = self._draw(self.generator)
        self.last_size = len(idx)
        return idx

    def peek(self, batch_size: int | None = None) -> torch.Tensor:
        """The batch :meth:`next` would draw now, from a copy of the generator (nothing moves)."""
        copy = torch.Generator(device=self.generator.device)
        copy.set_state(self.generator.get_state())
        return self._draw(copy)

    def state_dict(self) -> dict[str, Any]:
        return {"poisson": True, "last_size": self.last_size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last_size = int(state["last_size"])


def _per_sample_module() -> type:
    """Opacus's GradSampleModule whose ``requires_grad_(False)`` (the generator steps of
    :func:`~medgan.training.step.train_step` freeze D) also turns its hooks off: the generator
    steps' backward passes through D must not be taken for per-sample gradients."""
    from opacus import GradSampleModule

    class FreezableGradSampleModule(GradSampleModule):
        def requires_grad_(self, requires_grad: bool = True) -> FreezableGradSampleModule:
            self.hooks_enabled = bool(requires_grad)
            return super().requires_grad_(requires_grad)

    return FreezableGradSampleModule


class PrivateDiscriminator:
    """The DP-SGD pieces of a run (held by the training state as ``privacy``): the accountant,
    the sampler and the settings; :meth:`report` is the accountant's (epsilon, delta)."""

    def __init__(self, settings: dict[str, Any], accountant: Any, sampler: PoissonSampler):
        self.settings, self.accountant, self.sampler = settings, accountant, sampler

    @property
    def latent_batch(self) -> int:
        """How many latents a step draws: one per real image of the last Poisson batch."""
        return self.sampler.last_size

    def state_dict(self) -> dict[str, Any]:
        history = [[float(s), float(q), int(n)] for s, q, n in self.accountant.history]
        return {"settings": self.settings, "history": history}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.accountant.history = [(float(s), float(q), int(n)) for s, q, n in state["history"]]

    def report(self) -> dict[str, Any]:
        """Settings and the accountant's epsilon at the target delta after the steps taken."""
        steps = sum(int(n) for _, _, n in self.accountant.history)
        delta = self.settings["delta"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            spent = float(self.accountant.get_epsilon(delta)) if steps else 0.0
        return {**self.settings, "epsilon_target": self.settings["epsilon"],
                "epsilon_spent": spent, "delta": delta, "d_steps_taken": steps}


def make_private(state: Any, dp: dict[str, Any], *, n_images: int) -> PrivateDiscriminator:
    """Turn the training state's D training private (in place): a GradSampleModule around D
    (``state.D_train``), a DPOptimizer around its optimiser whose steps feed the accountant,
    and a Poisson sampler on the data stream. Returns the object the state keeps."""
    from opacus.accountants import create_accountant
    from opacus.optimizers import DPOptimizer

    check_discriminator(state.D, state.config["architecture"]["name"])
    for module in state.D.modules():  # Opacus's backward hooks refuse in-place activations
        if getattr(module, "inplace", False):
            module.inplace = False  # the same values, computed out of place
    sampler = PoissonSampler(n_images, dp["sample_rate"], state.generators["data"])
    state.D_train = _per_sample_module()(state.D, loss_reduction="mean")
    state.opt_d = DPOptimizer(state.opt_d, noise_multiplier=dp["noise_multiplier"],
                              max_grad_norm=dp["max_grad_norm"],
                              expected_batch_size=sampler.batch_size, loss_reduction="mean")
    accountant = create_accountant(dp["accountant"])
    state.opt_d.attach_step_hook(accountant.get_optimizer_hook_fn(sample_rate=dp["sample_rate"]))
    state.sampler = sampler
    # D's first layer reads images, which need no gradient: torch then says a full backward hook
    # fires for module outputs only, which is what Opacus needs
    warnings.filterwarnings("ignore", message="Full backward hook is firing", category=UserWarning)
    return PrivateDiscriminator(dp, accountant, sampler)
