"""StyleGAN2 (Karras et al. 2020, "Analyzing and improving the image quality of StyleGAN"),
written from the paper in plain PyTorch ops.

Generator (paper sec. 2-4, Fig. 2d and 7):

* **mapping network**: ``z`` (pixel-normalised) through ``mapping_layers`` fully connected
  layers (leaky ReLU 0.2; learning rate multiplier ``mapping_lr_mul``, 0.01 in the paper) to
  the intermediate latent ``w`` (``w_dim`` numbers), broadcast to one ``w`` per layer;
* **synthesis network**: a learned constant 4x4 input, then per resolution 4, 8, ...,
  ``resolution`` one (4 px) or two modulated 3x3 convolutions, the first of each block after
  2x upsampling. Every modulated convolution scales its weights by a per-input-channel style
  ``s = A(w)`` (a dense layer, bias initialised to 1) and **demodulates** them,
  ``w''_ijk = w'_ijk / sqrt(sum_ik w'_ijk^2 + eps)`` (eq. 1-3), run as input scaling, one
  shared convolution and output scaling (sec. 2.2); then per-pixel **noise** (N(0, 1), one
  learned strength per layer), a bias
  and leaky ReLU (gain sqrt 2);
* **skip-connection output** (Fig. 7b): every block has a ``toRGB`` (modulated 1x1, not
  demodulated) whose output is added to the upsampled image of the blocks before;
* **style mixing** (StyleGAN sec. 3.1): in training mode, with probability ``mixing_prob`` an
  image takes the ``w`` of a second latent from a random layer on (drawn from torch's global
  RNG, which checkpoints save). In eval mode the noise inputs are fixed buffers ("const" noise),
  so that ``G(z)`` is a function of ``z`` (interpolations, encoders, metrics).

Discriminator (Fig. 7c, residual): ``fromRGB`` (1x1) at the input resolution, then residual
blocks (two 3x3 convolutions, the second downsampling; a 1x1 skip on the downsampled input; sum
scaled by 1/sqrt 2) down to 4x4, minibatch standard deviation (:class:`MinibatchStddev`, group
``mbstd_group_size``), a 3x3 convolution, a dense layer and a linear dense layer to one logit.

Up/down-sampling (sec. 4.1, from StyleGAN's Zhang-style low-pass filtering) is the separable
FIR filter [1, 3, 3, 1] as ordinary depthwise convolutions: a transposed convolution with
stride 2 to upsample, a strided convolution to downsample. Every weight has an equalised
learning rate (N(0, 1) weights scaled at run time by ``1 / sqrt(fan_in)``).

Widths: ``min(channel_base // r, channel_max)`` features at resolution ``r`` (the paper:
``channel_base`` 32768, ``channel_max`` 512). Any channel count, any power-of-two
``resolution`` >= 16 (:func:`~medgan.models.layers.check_resolution`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from medgan.models.layers import (
    MinibatchStddev,
    check_channels,
    check_resolution,
    resolve_arch_config,
)

DEFAULTS: dict[str, Any] = {
    "name": "stylegan2",
    "latent_dim": 512,
    "w_dim": 512,
    "mapping_layers": 8,  # the ADA paper's small-data configurations use 2
    "mapping_lr_mul": 0.01,
    "channel_base": 32768,
    "channel_max": 512,
    "mixing_prob": 0.9,
    "minibatch_stddev": True,
    "mbstd_group_size": 4,
}
_POSITIVE = ("latent_dim", "w_dim", "mapping_layers", "channel_base", "channel_max",
             "mbstd_group_size")
LRELU_GAIN = math.sqrt(2.0)


def resolve_config(arch: dict[str, Any]) -> dict[str, Any]:
    """``arch`` over :data:`DEFAULTS`, checked (``ValueError`` naming a bad key)."""
    cfg = resolve_arch_config(arch, DEFAULTS, positive_ints=_POSITIVE)
    for key, low, high in (("mixing_prob", 0.0, 1.0), ("mapping_lr_mul", 1e-6, 1.0)):
        value = cfg[key]
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or not low <= value <= high:
            raise ValueError(f"stylegan2 architecture {key} must be a number in [{low}, {high}], "
                             f"got {value!r}")
    if cfg["minibatch_stddev"] is not True:
        raise ValueError("stylegan2 architecture minibatch_stddev is always true")
    return cfg


def widths(resolution: int, channel_base: int, channel_max: int) -> dict[int, int]:
    """Feature count at each resolution 4 .. ``resolution``."""
    return {4 * 2**i: max(1, min(channel_base // (4 * 2**i), channel_max))
            for i in range(check_resolution(resolution) - 1)}


# --- FIR resampling as ordinary convolutions ----------------------------------------------------

def fir_filter(taps: tuple[float, ...] = (1.0, 3.0, 3.0, 1.0)) -> torch.Tensor:
    """The separable 2-D low-pass filter of ``taps``, normalised to sum 1 (4x4)."""
    f = torch.tensor(taps, dtype=torch.float32)
    f = torch.outer(f, f)
    return f / f.sum()


def _upsample_rows(x: torch.Tensor, dim: int) -> torch.Tensor:
    """The 1-D [1, 3, 3, 1] upsampling (gain 2) along ``dim``: with zero insertion and the
    filter, output ``2i`` is ``(x[i-1] + 3 x[i]) / 4`` and ``2i+1`` is ``(3 x[i] + x[i+1]) / 4``
    (zeros beyond the border)."""
    n = x.shape[dim]
    pad = [0, 0, 0, 0]
    pad[2 * (3 - dim)] = pad[2 * (3 - dim) + 1] = 1  # F.pad counts from the last dimension
    p = F.pad(x, pad)
    prev, mid, nxt = p.narrow(dim, 0, n), p.narrow(dim, 1, n), p.narrow(dim, 2, n)
    even, odd = 0.25 * prev + 0.75 * mid, 0.75 * mid + 0.25 * nxt
    out = torch.stack([even, odd], dim=dim + 1)
    return out.flatten(dim, dim + 1)


def upsample2x(x: torch.Tensor, f: torch.Tensor | None = None) -> torch.Tensor:
    """2x upsampling: zero insertion and the separable FIR filter [1, 3, 3, 1] (gain 4), i.e.
    the depthwise transposed convolution ``conv_transpose2d(x, 4 f, stride=2, padding=1)``
    (which ``f`` gives; ``None``: the same computed separably, several times faster on CPUs);
    (N, C, H, W) -> (N, C, 2H, 2W)."""
    if f is None:
        return _upsample_rows(_upsample_rows(x, 2), 3)
    c = x.shape[1]
    kernel = (f * 4.0).to(x.dtype)[None, None].expand(c, 1, 4, 4)
    return F.conv_transpose2d(x, kernel, stride=2, padding=1, groups=c)


def downsample2x(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """FIR low-pass filter and 2x decimation, one strided depthwise convolution."""
    c = x.shape[1]
    kernel = f.to(x.dtype)[None, None].expand(c, 1, 4, 4)
    return F.conv2d(x, kernel, stride=2, padding=1, groups=c)


# --- layers with an equalised learning rate ------------------------------------------------------

class EqualLinear(nn.Module):
    """Dense layer with weights N(0, 1) / lr_mul scaled by ``lr_mul / sqrt(fan_in)``."""

    def __init__(self, n_in: int, n_out: int, *, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activate: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_out, n_in) / lr_mul)
        self.bias = nn.Parameter(torch.full((n_out,), float(bias_init) / lr_mul))
        self.scale, self.lr_mul, self.activate = lr_mul / math.sqrt(n_in), lr_mul, activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)
        return F.leaky_relu(x, 0.2) * LRELU_GAIN if self.activate else x


class EqualConv2d(nn.Module):
    """Convolution (same padding) with an equalised learning rate; ``down``: FIR-filtered 2x
    downsampling before the convolution (kernel 3: the filter and a stride-2 convolution)."""

    def __init__(self, n_in: int, n_out: int, kernel: int, *, bias: bool = True,
                 activate: bool = True, down: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_out, n_in, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(n_out)) if bias else None
        self.scale = 1.0 / math.sqrt(n_in * kernel * kernel)
        self.activate, self.down, self.padding = activate, down, kernel // 2
        self.register_buffer("fir", fir_filter(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.down:
            x = downsample2x(x, self.fir)
        x = F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)
        return F.leaky_relu(x, 0.2) * LRELU_GAIN if self.activate else x


class ModulatedConv2d(nn.Module):
    """The modulated (and, with ``demodulate``, demodulated) convolution of eq. 1-3;
    ``up``: 2x FIR upsampling of the input first."""

    def __init__(self, n_in: int, n_out: int, kernel: int, w_dim: int, *,
                 demodulate: bool = True, up: bool = False, eps: float = 1e-8):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_out, n_in, kernel, kernel))
        self.affine = EqualLinear(w_dim, n_in, bias_init=1.0)  # A: the style s = A(w)
        self.scale = 1.0 / math.sqrt(n_in * kernel * kernel)
        self.demodulate, self.up, self.eps, self.padding = demodulate, up, eps, kernel // 2

    def modulated_weight(self, w: torch.Tensor) -> torch.Tensor:
        """Per-sample weights (N, out, in, k, k): ``w' = s * w`` and demodulated ``w''``."""
        style = self.affine(w)  # (N, in)
        weight = self.weight[None] * self.scale * style[:, None, :, None, None]
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.square().sum(dim=(2, 3, 4), keepdim=True)
                                          + self.eps)
        return weight

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Equal to a convolution of each sample with its :meth:`modulated_weight`, computed as
        StyleGAN2 sec. 2.2 allows: inputs scaled by the style, one convolution with the shared
        weights for the whole batch, outputs scaled by the demodulation coefficients (a grouped
        convolution per sample is several times slower on CPUs)."""
        if self.up:
            x = upsample2x(x)
        style = self.affine(w)  # (N, in)
        weight = self.weight * self.scale
        out = F.conv2d(x * style.to(x.dtype)[:, :, None, None], weight.to(x.dtype),
                       padding=self.padding)
        if self.demodulate:  # sigma_j = sqrt(sum_ik (s_i w_ijk)^2): (N, out)
            sigma2 = style.square() @ weight.square().sum(dim=(2, 3)).t()
            out = out * torch.rsqrt(sigma2 + self.eps).to(x.dtype)[:, :, None, None]
        return out


class StyledLayer(nn.Module):
    """Modulated conv, noise input (one learned strength), bias, leaky ReLU."""

    def __init__(self, n_in: int, n_out: int, w_dim: int, resolution: int, *, up: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(n_in, n_out, 3, w_dim, up=up)
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.bias = nn.Parameter(torch.zeros(n_out))
        self.register_buffer("noise_const", torch.randn(1, 1, resolution, resolution))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        x = self.conv(x, w)
        if self.training:
            noise = torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype)
        else:
            noise = self.noise_const.to(x.dtype)
        x = x + noise * self.noise_strength + self.bias[None, :, None, None]
        return F.leaky_relu(x, 0.2) * LRELU_GAIN


class ToRGB(nn.Module):
    """Modulated 1x1 convolution (no demodulation) to the output channels, and a bias."""

    def __init__(self, n_in: int, channels: int, w_dim: int):
        super().__init__()
        self.conv = ModulatedConv2d(n_in, channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.conv(x, w) + self.bias[None, :, None, None]


class MappingNetwork(nn.Module):
    """z (N, latent_dim) -> w (N, w_dim): pixel norm and ``layers`` dense layers."""

    def __init__(self, latent_dim: int, w_dim: int, layers: int, lr_mul: float):
        super().__init__()
        dims = [latent_dim] + [w_dim] * layers
        self.net = nn.Sequential(*[EqualLinear(a, b, lr_mul=lr_mul, activate=True)
                                   for a, b in zip(dims[:-1], dims[1:], strict=True)])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)
        return self.net(z)


class StyleGAN2Generator(nn.Module):
    """``z`` (N, latent_dim) -> images (N, channels, resolution, resolution), linear output."""

    def __init__(self, *, channels: int, resolution: int, latent_dim: int, w_dim: int,
                 mapping_layers: int, mapping_lr_mul: float, channel_base: int,
                 channel_max: int, mixing_prob: float):
        super().__init__()
        check_channels(channels)
        width = widths(resolution, channel_base, channel_max)
        self.channels, self.resolution, self.latent_dim = channels, resolution, latent_dim
        self.mixing_prob = mixing_prob
        # trailing latent entries that a mixing latent keeps (a class embedding, set by
        # medgan.models.build_generator for class-conditional runs)
        self.mixing_keep = 0
        self.mapping = MappingNetwork(latent_dim, w_dim, mapping_layers, mapping_lr_mul)
        self.const = nn.Parameter(torch.randn(1, width[4], 4, 4))
        self.layers, self.to_rgb = nn.ModuleList(), nn.ModuleList()
        self.layers.append(StyledLayer(width[4], width[4], w_dim, 4))
        self.to_rgb.append(ToRGB(width[4], channels, w_dim))
        for r in list(width)[1:]:
            self.layers.append(StyledLayer(width[r // 2], width[r], w_dim, r, up=True))
            self.layers.append(StyledLayer(width[r], width[r], w_dim, r))
            self.to_rgb.append(ToRGB(width[r], channels, w_dim))

    @property
    def num_ws(self) -> int:
        """How many ``w`` the synthesis network takes: one per layer, one per toRGB."""
        return len(self.layers) + len(self.to_rgb)

    def mapped(self, z: torch.Tensor) -> torch.Tensor:
        """Per-layer ``w`` (N, num_ws, w_dim), style-mixed in training mode."""
        w = self.mapping(z)[:, None].expand(-1, self.num_ws, -1)
        if not (self.training and self.mixing_prob > 0):
            return w
        n = z.shape[0]
        z2 = torch.randn(z.shape, device=z.device, dtype=z.dtype)
        if self.mixing_keep:
            z2 = torch.cat([z2[:, :-self.mixing_keep], z[:, -self.mixing_keep:]], dim=1)
        w2 = self.mapping(z2)[:, None].expand(-1, self.num_ws, -1)
        cutoff = torch.randint(1, self.num_ws, (n, 1), device=z.device)
        mix = torch.rand(n, 1, device=z.device) < self.mixing_prob
        cutoff = torch.where(mix, cutoff, torch.full_like(cutoff, self.num_ws))
        layer = torch.arange(self.num_ws, device=z.device)[None]
        return torch.where((layer >= cutoff)[..., None], w2, w)

    def synthesis(self, ws: torch.Tensor) -> torch.Tensor:
        """Per-layer ``ws`` (N, num_ws, w_dim) -> images; ws ordered layer, toRGB per block."""
        x = self.const.to(ws.dtype).repeat(ws.shape[0], 1, 1, 1)
        x = self.layers[0](x, ws[:, 0])
        img = self.to_rgb[0](x, ws[:, 1])
        k = 2
        for i, rgb in enumerate(self.to_rgb[1:]):
            x = self.layers[1 + 2 * i](x, ws[:, k])
            x = self.layers[2 + 2 * i](x, ws[:, k + 1])
            img = upsample2x(img) + rgb(x, ws[:, k + 2])
            k += 3
        return img

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"StyleGAN2Generator: expected shape (N, {self.latent_dim}), "
                             f"got {tuple(z.shape)}")
        img = self.synthesis(self.mapped(z))
        assert img.shape[1:] == (self.channels, self.resolution, self.resolution)
        return img


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions (the second downsampling) + a downsampled 1x1 skip, / sqrt 2."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.conv1 = EqualConv2d(n_in, n_in, 3)
        self.conv2 = EqualConv2d(n_in, n_out, 3, down=True)
        self.skip = EqualConv2d(n_in, n_out, 1, bias=False, activate=False, down=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.skip(x) + self.conv2(self.conv1(x))) / math.sqrt(2.0)


class StyleGAN2Discriminator(nn.Module):
    """Images (N, channels, resolution, resolution) -> logits (N,); residual architecture."""

    def __init__(self, *, channels: int, resolution: int, channel_base: int, channel_max: int,
                 mbstd_group_size: int):
        super().__init__()
        check_channels(channels)
        width = widths(resolution, channel_base, channel_max)
        self.channels, self.resolution = channels, resolution
        self.from_rgb = EqualConv2d(channels, width[resolution], 1)
        res = sorted(width, reverse=True)
        self.blocks = nn.Sequential(*[ResidualBlock(width[r], width[r // 2]) for r in res[:-1]])
        self.mbstd = MinibatchStddev(mbstd_group_size)
        self.conv = EqualConv2d(width[4] + 1, width[4], 3)
        self.dense = EqualLinear(width[4] * 16, width[4], activate=True)
        self.out = EqualLinear(width[4], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1:] != (self.channels, self.resolution, self.resolution):
            raise ValueError(f"StyleGAN2Discriminator: expected shape (N, {self.channels}, "
                             f"{self.resolution}, {self.resolution}), got {tuple(x.shape)}")
        x = self.conv(self.mbstd(self.blocks(self.from_rgb(x))))
        return self.out(self.dense(x.flatten(1))).squeeze(1)


def build_generator(arch: dict[str, Any], *, channels: int,
                    resolution: int) -> StyleGAN2Generator:
    """StyleGAN2 generator from an architecture config (see :data:`DEFAULTS`)."""
    cfg = resolve_config(arch)
    check_resolution(resolution)
    return StyleGAN2Generator(
        channels=channels, resolution=resolution, latent_dim=cfg["latent_dim"],
        w_dim=cfg["w_dim"], mapping_layers=cfg["mapping_layers"],
        mapping_lr_mul=float(cfg["mapping_lr_mul"]), channel_base=cfg["channel_base"],
        channel_max=cfg["channel_max"], mixing_prob=float(cfg["mixing_prob"]))


def build_discriminator(arch: dict[str, Any], *, channels: int,
                        resolution: int) -> StyleGAN2Discriminator:
    """StyleGAN2 residual discriminator from an architecture config (see :data:`DEFAULTS`)."""
    cfg = resolve_config(arch)
    check_resolution(resolution)
    return StyleGAN2Discriminator(channels=channels, resolution=resolution,
                                  channel_base=cfg["channel_base"],
                                  channel_max=cfg["channel_max"],
                                  mbstd_group_size=cfg["mbstd_group_size"])


__all__ = ["DEFAULTS", "ModulatedConv2d", "StyleGAN2Discriminator", "StyleGAN2Generator",
           "build_discriminator", "build_generator", "downsample2x", "upsample2x"]
