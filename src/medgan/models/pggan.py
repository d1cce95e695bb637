"""Progressive GAN (Karras et al. 2018) as configured by Beers et al. 2018 (and Delplace 2019).

Both networks grow from 4x4 to the target resolution by doubling. ``level`` names the current
output resolution ``4 * 2**level``; ``alpha`` in [0, 1] is the fade-in weight of the newest block.

Generator (Karras, table 2): the latent is pixel-normalised, a dense layer (Karras's "Conv 4x4"
on the 1x1 latent) makes a 4x4 feature map, a conv follows; every further block is nearest-
neighbour 2x upsampling and two convs. Every conv is followed by leaky ReLU 0.2 and pixel norm.
``toRGB`` is a linear 1x1 conv at every resolution. While fading in level L the output is
``lerp(upsample(toRGB[L-1](h)), toRGB[L](block[L](h)), alpha)``.

Discriminator (mirror image): ``fromRGB`` (1x1 conv + leaky ReLU) at the input resolution, blocks
of two convs and 2x average pooling down to 4x4, then minibatch stddev, a conv, a dense layer
(Karras's "Conv 4x4") and a linear dense layer to one logit. While fading in level L the 8x..
features are ``lerp(fromRGB[L-1](avgpool(x)), block[L](fromRGB[L](x)), alpha)``. The real images
shown to D are blended to match by :func:`blend_reals`.

Equalized learning rate: every weight is drawn from N(0, 1) and multiplied at run time by He's
constant ``gain / sqrt(fan_in)`` (``gain = sqrt(2)``; 1 for the linear toRGB and logit layers;
``sqrt(2) / 4`` for the first dense layer of G, whose fan-in Karras counts as that of a 4x4 conv,
``latent_dim * 16``). Biases start at zero.

Widths: ``filters`` maps a resolution to the conv width there: ``{"default": 128, 256: 64,
512: 16}`` (Beers: 128 filters below 256 px, 64 at 256, 16 at 512); a key gives the width at
that resolution and above, up to the next key (keys may be ints or digit strings, for YAML/JSON).
A plain integer gives the same width everywhere. ``kernel_size`` (odd; Karras 3, Delplace 5)
applies to every conv except the 1x1 RGB layers.

Training helpers: :func:`pggan_schedule` (phases of fade-in and stable training per level),
:func:`stage_at` (level, alpha and batch size at a step), :func:`blend_reals`,
:func:`downsample_to` and :func:`ema_update` (Karras average the generator with decay 0.999 and
use the average for all outputs). Karras reset the Adam state whenever a new level starts.
The WGAN-GP loss with the drift term (lambda 10, epsilon 0.001) lives with the losses.

The generator's ``resolution`` is the target resolution; its output is
``current_resolution = 4 * 2**level``. ``level`` and ``alpha`` travel in ``state_dict()`` (as
extra state), so a loaded generator resumes at its saved stage.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from medgan.models.layers import MinibatchStddev

DEFAULTS: dict[str, Any] = {
    "name": "pggan",
    "latent_dim": 128,
    "filters": {"default": 128, "256": 64, "512": 16},
    "kernel_size": 3,
    "mbstd_group_size": 4,
}
EMA_DECAY = 0.999  # Karras et al.'s generator averaging (G_smoothing)
SCHEDULE_DEFAULTS: dict[str, Any] = {  # Beers: 40,000 batches per resolution, half fading
    "steps_per_phase": 20000,
    "batch_sizes": {"default": 16, "512": 8},
}
LEAKY_SLOPE = 0.2


# --- config ------------------------------------------------------------------------------------

def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return value


def max_level(resolution: int) -> int:
    """The level of ``resolution`` (a power of two >= 4): 4 px is level 0."""
    if (isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 4
            or resolution & (resolution - 1)):
        raise ValueError(f"resolution must be a power of two >= 4, got {resolution!r}")
    return resolution.bit_length() - 3


def per_resolution(spec: Any, resolution: int, what: str) -> int:
    """The value of a per-resolution spec (int, or ``{"default": v, res: v, ...}``) at a size.

    A resolution key applies at that resolution and above, up to the next key; ``default`` below
    the smallest key (and everywhere when there are no keys).
    """
    if isinstance(spec, int) and not isinstance(spec, bool):
        return _positive_int(spec, what)
    if not isinstance(spec, dict):
        raise ValueError(f"{what} must be an integer or a dict of resolution -> integer, "
                         f"got {spec!r}")
    value, best = spec.get("default"), 0
    for key, v in spec.items():
        _positive_int(v, f"{what}[{key!r}]")
        if key == "default":
            continue
        try:
            res = int(key)
        except (TypeError, ValueError):
            raise ValueError(f"{what}: key {key!r} is neither 'default' nor a resolution") from None
        max_level(res)
        if best < res <= resolution:
            value, best = v, res
    if value is None:
        raise ValueError(f"{what} gives no value at resolution {resolution} (add a 'default')")
    return _positive_int(value, f"{what} at resolution {resolution}")


def resolve_config(arch: dict[str, Any]) -> dict[str, Any]:
    """Validate a PGGAN architecture config and fill in defaults (unknown keys -> ValueError)."""
    unknown = [k for k in arch if k not in DEFAULTS]
    if unknown:
        raise ValueError(f"unknown pggan architecture key(s) {unknown}; known: {sorted(DEFAULTS)}")
    cfg = {**DEFAULTS, **arch}
    if cfg["name"] != "pggan":
        raise ValueError(f"pggan builder got architecture name {cfg['name']!r}")
    for key in ("latent_dim", "kernel_size", "mbstd_group_size"):
        _positive_int(cfg[key], f"architecture {key}")
    if cfg["kernel_size"] % 2 == 0:
        raise ValueError(f"architecture kernel_size must be odd, got {cfg['kernel_size']}")
    per_resolution(cfg["filters"], 4, "architecture filters")  # validates every key
    return cfg


def _check_channels(channels: int) -> None:
    _positive_int(channels, "channels")


def _assert_shape(tensor: torch.Tensor, shape: tuple[int | None, ...], what: str) -> None:
    if tensor.ndim != len(shape) or any(
        want is not None and got != want for got, want in zip(tensor.shape, shape, strict=True)
    ):
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{what}: expected shape {want}, got {tuple(tensor.shape)}")


# --- layers ------------------------------------------------------------------------------------

class EqualizedConv2d(nn.Module):
    """Conv with weights N(0, 1) scaled at run time by ``weight_scale = gain / sqrt(fan_in)``."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, *, gain: float = math.sqrt(2)):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(c_out))
        self.weight_scale = gain / math.sqrt(c_in * kernel_size * kernel_size)
        self.padding = kernel_size // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.weight_scale, self.bias, padding=self.padding)


class EqualizedLinear(nn.Module):
    """Dense layer with weights N(0, 1) scaled at run time by ``gain / sqrt(fan_in)``."""

    def __init__(self, f_in: int, f_out: int, *, gain: float = math.sqrt(2),
                 fan_in: int | None = None):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(f_out, f_in))
        self.bias = nn.Parameter(torch.zeros(f_out))
        self.weight_scale = gain / math.sqrt(f_in if fan_in is None else fan_in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.weight_scale, self.bias)


class PixelNorm(nn.Module):
    """Normalise the feature vector of every pixel (dim 1) to unit mean square."""

    def __init__(self, eps: float = 1e-8):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + self.eps)


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour 2x upsampling."""
    return F.interpolate(x, scale_factor=2, mode="nearest")


def downsample2x(x: torch.Tensor) -> torch.Tensor:
    """2x2 average pooling."""
    return F.avg_pool2d(x, 2)


def downsample_to(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """Average-pool (N, C, H, H) images down to ``resolution`` (H / resolution a power of two)."""
    size = images.shape[-1]
    if size % resolution or (size // resolution) & (size // resolution - 1):
        raise ValueError(f"cannot downsample {size} px images to {resolution} px")
    return images if size == resolution else F.avg_pool2d(images, size // resolution)


def blend_reals(images: torch.Tensor, alpha: float) -> torch.Tensor:
    """Real images as the networks see them while fading in (Karras et al.'s ``FadeLOD``).

    ``alpha * x + (1 - alpha) * upsample(avgpool(x))``: at ``alpha = 0`` the images at half the
    resolution, nearest-upsampled; at ``alpha = 1`` the images themselves. ``images`` must already
    be at the current level's resolution (:func:`downsample_to`).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    if alpha == 1.0:
        return images
    return torch.lerp(upsample2x(downsample2x(images)), images, alpha)


def _act(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, LEAKY_SLOPE)


# --- growing networks ----------------------------------------------------------------------------

class _Staged(nn.Module):
    """The current ``level`` and fade ``alpha`` of a growing network, saved as extra state."""

    max_level: int
    level: int
    alpha: float

    def set_stage(self, level: int, alpha: float = 1.0) -> None:
        """Grow (or shrink) to ``level`` with fade weight ``alpha`` of the newest block."""
        if (isinstance(level, bool) or not isinstance(level, int)
                or not 0 <= level <= self.max_level):
            raise ValueError(f"level must be an integer in [0, {self.max_level}], got {level!r}")
        alpha = float(alpha)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
        self.level, self.alpha = level, alpha

    @property
    def current_resolution(self) -> int:
        return 4 * 2**self.level

    def get_extra_state(self) -> dict[str, Any]:
        return {"level": self.level, "alpha": self.alpha}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.set_stage(int(state["level"]), float(state["alpha"]))


class PGGANGenerator(_Staged):
    """``z`` (N, latent_dim) -> images (N, channels, current_resolution, current_resolution)."""

    def __init__(self, *, channels: int, resolution: int, latent_dim: int = 128,
                 filters: Any = 128, kernel_size: int = 3):
        super().__init__()
        _check_channels(channels)
        self.max_level = max_level(resolution)
        self.channels, self.resolution, self.latent_dim = channels, resolution, latent_dim
        widths = [per_resolution(filters, 4 * 2**i, "filters") for i in range(self.max_level + 1)]
        self.widths = widths
        self.pixel_norm = PixelNorm()
        self.dense = EqualizedLinear(latent_dim, widths[0] * 16, gain=math.sqrt(2) / 4)
        self.blocks = nn.ModuleList([EqualizedConv2d(widths[0], widths[0], kernel_size)])
        for i in range(1, self.max_level + 1):
            self.blocks.append(nn.Sequential(
                EqualizedConv2d(widths[i - 1], widths[i], kernel_size),
                EqualizedConv2d(widths[i], widths[i], kernel_size),
            ))
        self.to_rgb = nn.ModuleList([EqualizedConv2d(w, channels, 1, gain=1.0) for w in widths])
        self.set_stage(self.max_level, 1.0)

    def _block(self, i: int, h: torch.Tensor) -> torch.Tensor:
        if i == 0:
            return self.pixel_norm(_act(self.blocks[0](h)))
        for conv in self.blocks[i]:
            h = self.pixel_norm(_act(conv(h)))
        return h

    def features(self, z: torch.Tensor, level: int) -> torch.Tensor:
        """Feature maps after block ``level`` (no fade): (N, widths[level], 4*2**level, ...)."""
        h = self.dense(self.pixel_norm(z)).reshape(z.shape[0], self.widths[0], 4, 4)
        h = self._block(0, self.pixel_norm(_act(h)))
        for i in range(1, level + 1):
            h = self._block(i, upsample2x(h))
        return h

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        _assert_shape(z, (None, self.latent_dim), "PGGANGenerator input z")
        level, alpha = self.level, self.alpha
        if level == 0 or alpha == 1.0:
            x = self.to_rgb[level](self.features(z, level))
        else:
            h = self.features(z, level - 1)
            old = upsample2x(self.to_rgb[level - 1](h))
            if alpha == 0.0:
                x = old
            else:
                new = self.to_rgb[level](self._block(level, upsample2x(h)))
                x = torch.lerp(old, new, alpha)
        res = self.current_resolution
        _assert_shape(x, (z.shape[0], self.channels, res, res), "PGGANGenerator output")
        return x


class PGGANDiscriminator(_Staged):
    """Images (N, channels, current_resolution, current_resolution) -> logits (N,)."""

    def __init__(self, *, channels: int, resolution: int, filters: Any = 128,
                 kernel_size: int = 3, mbstd_group_size: int = 4):
        super().__init__()
        _check_channels(channels)
        self.max_level = max_level(resolution)
        self.channels, self.resolution = channels, resolution
        widths = [per_resolution(filters, 4 * 2**i, "filters") for i in range(self.max_level + 1)]
        self.widths = widths
        self.from_rgb = nn.ModuleList([EqualizedConv2d(channels, w, 1) for w in widths])
        # blocks[i] takes features at 4*2**i px to features at half that size (i >= 1)
        self.blocks = nn.ModuleList([nn.Identity()])
        for i in range(1, self.max_level + 1):
            self.blocks.append(nn.Sequential(
                EqualizedConv2d(widths[i], widths[i], kernel_size),
                EqualizedConv2d(widths[i], widths[i - 1], kernel_size),
            ))
        self.mbstd = MinibatchStddev(mbstd_group_size)
        self.conv4 = EqualizedConv2d(widths[0] + 1, widths[0], kernel_size)
        self.dense4 = EqualizedLinear(widths[0] * 16, widths[0])
        self.logit = EqualizedLinear(widths[0], 1, gain=1.0)
        self.set_stage(self.max_level, 1.0)

    def _block(self, i: int, h: torch.Tensor) -> torch.Tensor:
        for conv in self.blocks[i]:
            h = _act(conv(h))
        return downsample2x(h)

    def _from_rgb(self, i: int, x: torch.Tensor) -> torch.Tensor:
        return _act(self.from_rgb[i](x))

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """4x4 features (N, widths[0], 4, 4) -> logits (N,)."""
        h = _act(self.conv4(self.mbstd(h)))
        h = _act(self.dense4(h.flatten(1)))
        return self.logit(h).reshape(h.shape[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = self.current_resolution
        _assert_shape(x, (None, self.channels, res, res), "PGGANDiscriminator input")
        level, alpha = self.level, self.alpha
        if level == 0 or alpha == 1.0:
            h = self._from_rgb(level, x)
            if level > 0:
                h = self._block(level, h)
        else:
            old = self._from_rgb(level - 1, downsample2x(x))
            if alpha == 0.0:
                h = old
            else:
                new = self._block(level, self._from_rgb(level, x))
                h = torch.lerp(old, new, alpha)
        for i in range(level - 1, 0, -1):
            h = self._block(i, h)
        return self.head(h)


# --- builders --------------------------------------------------------------------------------

def build_generator(arch: dict[str, Any], *, channels: int, resolution: int) -> PGGANGenerator:
    """PGGAN generator from an architecture config (see ``DEFAULTS``), at its full size."""
    cfg = resolve_config(arch)
    return PGGANGenerator(channels=channels, resolution=resolution, latent_dim=cfg["latent_dim"],
                          filters=cfg["filters"], kernel_size=cfg["kernel_size"])


def build_discriminator(arch: dict[str, Any], *, channels: int,
                        resolution: int) -> PGGANDiscriminator:
    """PGGAN discriminator from an architecture config (see ``DEFAULTS``), at its full size."""
    cfg = resolve_config(arch)
    return PGGANDiscriminator(channels=channels, resolution=resolution, filters=cfg["filters"],
                              kernel_size=cfg["kernel_size"],
                              mbstd_group_size=cfg["mbstd_group_size"])


# --- schedule and generator averaging -------------------------------------------------------------

class Phase(NamedTuple):
    """One phase of progressive training: ``kind`` is ``"fade"`` or ``"stable"``."""

    level: int
    kind: str
    steps: int
    batch_size: int


def pggan_schedule(resolution: int, *, start_resolution: int = 4,
                   steps_per_phase: int = SCHEDULE_DEFAULTS["steps_per_phase"],
                   batch_sizes: Any = SCHEDULE_DEFAULTS["batch_sizes"]) -> list[Phase]:
    """The phases of progressive training from ``start_resolution`` up to ``resolution``.

    The first level trains stable only; every later level fades in (``steps_per_phase`` steps,
    alpha rising linearly from 0) and then trains stable (``steps_per_phase`` steps). Beers:
    20,000 + 20,000 steps per resolution, batch 16 below 512 px and 8 at 512
    (``batch_sizes={"default": 16, 512: 8}``, same lookup as the architecture's ``filters``).
    """
    first, last = max_level(start_resolution), max_level(resolution)
    if first > last:
        raise ValueError(f"start_resolution {start_resolution} > resolution {resolution}")
    _positive_int(steps_per_phase, "steps_per_phase")
    phases = []
    for level in range(first, last + 1):
        batch = per_resolution(batch_sizes, 4 * 2**level, "batch_sizes")
        if level > first:
            phases.append(Phase(level, "fade", steps_per_phase, batch))
        phases.append(Phase(level, "stable", steps_per_phase, batch))
    return phases


def stage_at(step: int, phases: list[Phase]) -> tuple[int, float, int]:
    """``(level, alpha, batch_size)`` at 0-based ``step``; after the last phase, its final stage.

    In a fade phase starting at step ``s`` of ``n`` steps, ``alpha = (step - s) / n``; in a stable
    phase ``alpha = 1``.
    """
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be a non-negative integer, got {step!r}")
    if not phases:
        raise ValueError("empty schedule")
    start = 0
    for phase in phases:
        if step < start + phase.steps:
            alpha = (step - start) / phase.steps if phase.kind == "fade" else 1.0
            return phase.level, alpha, phase.batch_size
        start += phase.steps
    return phases[-1].level, 1.0, phases[-1].batch_size


@torch.no_grad()
def ema_update(ema_G: nn.Module, G: nn.Module, decay: float = EMA_DECAY) -> None:
    """``ema = decay * ema + (1 - decay) * param`` for every parameter; buffers and stage copied."""
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"EMA decay must be in [0, 1], got {decay!r}")
    for p_ema, p in zip(ema_G.parameters(), G.parameters(), strict=True):
        p_ema.lerp_(p, 1.0 - decay)
    for b_ema, b in zip(ema_G.buffers(), G.buffers(), strict=True):
        b_ema.copy_(b)
    if isinstance(ema_G, _Staged) and isinstance(G, _Staged):
        ema_G.set_stage(G.level, G.alpha)


__all__ = ["DEFAULTS", "EMA_DECAY", "SCHEDULE_DEFAULTS", "EqualizedConv2d", "EqualizedLinear",
           "PGGANDiscriminator", "PGGANGenerator", "Phase", "PixelNorm", "blend_reals",
           "build_discriminator", "build_generator", "downsample_to", "ema_update", "max_level",
           "per_resolution", "pggan_schedule", "stage_at"]
