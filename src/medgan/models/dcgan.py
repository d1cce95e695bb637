"""DCGAN (Radford et al. 2016) with the changes of Han et al. 2018, and Delplace 2019's variant.

(Delplace's ``dcgan_delplace``, Tables 1 and 2 of delplace2019, is at the end of this module.)

Generator: ``z`` (``latent_dim``) -> transposed conv to 4x4 -> stride-2 transposed convs with
BatchNorm + ReLU, doubling the resolution up to the target -> a last transposed conv to C
channels with a linear output (Han: "no tanh"; ``output_activation: tanh`` gives Radford's).

Discriminator: stride-2 convs halving the resolution down to 4x4, BatchNorm on all but the first
layer, ELU (Han) or leaky ReLU 0.2 (Radford), and a final 4x4 conv to one logit (no sigmoid: the
losses work on logits).

Widths. ``width`` is the channel count of the highest-resolution hidden layer (G's layer at R/2,
D's first conv, also at R/2); it doubles for every halving of the resolution and is capped at
``max_width``. With Han's ``width=64, max_width=512`` this is exactly half of Radford's 64 px
network: G 512-256-128-64, D 64-128-256-512. At 128 px the extra layer sits at the high-resolution
end and keeps ``width`` there, so the low-resolution layers are capped at ``max_width``:
G 512-512-256-128-64, D 64-128-256-512-512 (Han do not give their 128 px widths; this choice
keeps the network's capacity per resolution the same as at 64 px).

Kernel size ``kernel_size`` (Han: 4) applies to every stride-2 layer; padding is chosen so each
layer exactly doubles/halves the resolution for any kernel size >= 2. The layers at 4x4 (G's
projection from ``z`` and D's final logit conv) always use a 4x4 kernel, as Radford's
"project and reshape" and the PyTorch DCGAN reference do.

Weights are initialised as in Radford: conv weights N(0, 0.02), BatchNorm scale N(1, 0.02),
biases 0.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from medgan.models.layers import OUTPUT_ACTIVATIONS as OUTPUT_ACTIVATIONS_ALL
from medgan.models.layers import (
    MinibatchStddev,
    check_channels,
    check_choice,
    check_resolution,
    resolve_arch_config,
)
from medgan.models.layers import output_activation as make_output_activation

DEFAULTS: dict[str, Any] = {
    "name": "dcgan",
    "latent_dim": 100,
    "width": 64,
    "max_width": 512,
    "kernel_size": 4,
    "d_activation": "elu",
    "output_activation": "none",
}

D_ACTIVATIONS = ("elu", "leaky_relu")
# ``d_norm`` (optional key, absent = "batch"): the discriminator's normalisation. "group"
# (GroupNorm, groups of 8 channels) keeps one image's logit independent of the rest of
# its batch, which differentially private training needs (medgan.training.dp).
D_NORMS = ("batch", "group")
OUTPUT_ACTIVATIONS = ("none", "tanh")


def assert_shape(tensor: torch.Tensor, shape: tuple[int | None, ...], what: str) -> None:
    """Raise ``ValueError`` unless ``tensor.shape`` matches ``shape`` (``None`` = any size)."""
    if tensor.ndim != len(shape) or any(
        want is not None and got != want for got, want in zip(tensor.shape, shape, strict=True)
    ):
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{what}: expected shape {want}, got {tuple(tensor.shape)}")


def resolve_config(arch: dict[str, Any]) -> dict[str, Any]:
    """Validate a DCGAN architecture config and fill in defaults (unknown keys -> ValueError)."""
    unknown = [k for k in arch if k not in DEFAULTS and k != "d_norm"]
    if unknown:
        raise ValueError(f"unknown dcgan architecture key(s) {unknown}; "
                         f"known: {sorted([*DEFAULTS, 'd_norm'])}")
    cfg = {**DEFAULTS, **arch}
    if cfg["name"] != "dcgan":
        raise ValueError(f"dcgan builder got architecture name {cfg['name']!r}")
    for key in ("latent_dim", "width", "max_width", "kernel_size"):
        if not isinstance(cfg[key], int) or isinstance(cfg[key], bool) or cfg[key] < 1:
            raise ValueError(f"architecture {key} must be a positive integer, got {cfg[key]!r}")
    if cfg["kernel_size"] < 2:
        raise ValueError(f"architecture kernel_size must be >= 2, got {cfg['kernel_size']}")
    if cfg["max_width"] < cfg["width"]:
        raise ValueError(f"architecture max_width ({cfg['max_width']}) < width ({cfg['width']})")
    if cfg["d_activation"] not in D_ACTIVATIONS:
        raise ValueError(f"architecture d_activation must be one of {D_ACTIVATIONS}, "
                         f"got {cfg['d_activation']!r}")
    if cfg["output_activation"] not in OUTPUT_ACTIVATIONS:
        raise ValueError(f"architecture output_activation must be one of {OUTPUT_ACTIVATIONS}, "
                         f"got {cfg['output_activation']!r}")
    if cfg.get("d_norm", "batch") not in D_NORMS:
        raise ValueError(f"architecture d_norm must be one of {D_NORMS}, got {cfg['d_norm']!r}")
    return cfg


def n_levels(resolution: int) -> int:
    """Number of stride-2 layers between 4x4 and ``resolution`` (a power of two >= 8)."""
    if (not isinstance(resolution, int) or isinstance(resolution, bool) or resolution < 8
            or resolution & (resolution - 1)):
        raise ValueError(f"resolution must be a power of two >= 8, got {resolution!r}")
    return resolution.bit_length() - 1 - 2


def layer_widths(resolution: int, width: int, max_width: int) -> list[int]:
    """Channel counts of the hidden layers from high to low resolution (R/2, R/4, ..., 4).

    D's stride-2 convs output these in this order; G's hidden layers use them reversed.
    """
    return [min(width * 2**i, max_width) for i in range(n_levels(resolution))]


def _check_channels(channels: int) -> None:
    if not isinstance(channels, int) or isinstance(channels, bool) or channels < 1:
        raise ValueError(f"channels must be a positive integer, got {channels!r}")


def _padding(kernel_size: int) -> tuple[int, int]:
    """(padding, output_padding) for a stride-2 layer that exactly halves/doubles the size."""
    return (kernel_size - 1) // 2, kernel_size % 2


def init_weights(module: nn.Module) -> None:
    """Radford's initialisation: conv N(0, 0.02); BatchNorm scale N(1, 0.02); biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class DCGANGenerator(nn.Module):
    """``z`` (N, latent_dim) -> images (N, channels, resolution, resolution)."""

    def __init__(self, *, channels: int, resolution: int, latent_dim: int = 100, width: int = 64,
                 max_width: int = 512, kernel_size: int = 4, output_activation: str = "none"):
        super().__init__()
        _check_channels(channels)
        self.channels, self.resolution, self.latent_dim = channels, resolution, latent_dim
        widths = layer_widths(resolution, width, max_width)[::-1]  # 4x4 first
        pad, out_pad = _padding(kernel_size)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(latent_dim, widths[0], 4, 1, 0, bias=False),  # 1x1 -> 4x4
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        ]
        for c_in, c_out in zip(widths[:-1], widths[1:], strict=True):
            layers += [
                nn.ConvTranspose2d(c_in, c_out, kernel_size, 2, pad, out_pad, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
        layers.append(nn.ConvTranspose2d(widths[-1], channels, kernel_size, 2, pad, out_pad))
        if output_activation == "tanh":
            layers.append(nn.Tanh())
        self.main = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        assert_shape(z, (None, self.latent_dim), "DCGANGenerator input z")
        x = self.main(z[:, :, None, None])
        assert_shape(x, (z.shape[0], self.channels, self.resolution, self.resolution),
                     "DCGANGenerator output")
        return x


class DCGANDiscriminator(nn.Module):
    """Images (N, channels, resolution, resolution) -> logits (N,)."""

    def __init__(self, *, channels: int, resolution: int, width: int = 64, max_width: int = 512,
                 kernel_size: int = 4, activation: str = "elu", norm: str = "batch"):
        super().__init__()
        _check_channels(channels)
        self.channels, self.resolution = channels, resolution
        widths = layer_widths(resolution, width, max_width)  # R/2 first
        pad, _ = _padding(kernel_size)
        layers: list[nn.Module] = []
        c_in = channels
        for i, c_out in enumerate(widths):
            layers.append(nn.Conv2d(c_in, c_out, kernel_size, 2, pad, bias=i == 0))
            if i > 0:  # Radford: no BatchNorm on the discriminator's input layer
                layers.append(nn.BatchNorm2d(c_out) if norm == "batch"
                              else nn.GroupNorm(max(1, c_out // 8), c_out))
            layers.append(nn.ELU(inplace=True) if activation == "elu"
                          else nn.LeakyReLU(0.2, inplace=True))
            c_in = c_out
        layers.append(nn.Conv2d(c_in, 1, 4, 1, 0))  # 4x4 -> 1x1 logit
        self.main = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert_shape(x, (None, self.channels, self.resolution, self.resolution),
                     "DCGANDiscriminator input")
        logits = self.main(x).reshape(x.shape[0])
        return logits


def build_generator(arch: dict[str, Any], *, channels: int, resolution: int) -> DCGANGenerator:
    """Han/Radford DCGAN generator from an architecture config (see ``DEFAULTS``)."""
    cfg = resolve_config(arch)
    n_levels(resolution)
    return DCGANGenerator(channels=channels, resolution=resolution, latent_dim=cfg["latent_dim"],
                          width=cfg["width"], max_width=cfg["max_width"],
                          kernel_size=cfg["kernel_size"],
                          output_activation=cfg["output_activation"])


def build_discriminator(arch: dict[str, Any], *, channels: int,
                        resolution: int) -> DCGANDiscriminator:
    """Han/Radford DCGAN discriminator from an architecture config (see ``DEFAULTS``)."""
    cfg = resolve_config(arch)
    n_levels(resolution)
    return DCGANDiscriminator(channels=channels, resolution=resolution, width=cfg["width"],
                              max_width=cfg["max_width"], kernel_size=cfg["kernel_size"],
                              activation=cfg["d_activation"],
                              norm=cfg.get("d_norm", "batch"))


# --- Delplace 2019's DCGAN (Tables 1 and 2) -------------------------------------------------------

DELPLACE_DEFAULTS: dict[str, Any] = {
    "name": "dcgan_delplace",
    "latent_dim": 256,  # Table 1: latent vector 256x1x1 (drawn from U(-1, 1) in the paper)
    "width": 64,  # Table 1: G's last hidden layer (at R) has 64 features
    "max_width": 256,  # Table 1: G's dense layer and low-resolution layers have 256 features
    "d_width": 64,  # Table 2: D's first conv has 64 features
    "d_max_width": 1024,  # Table 2: D's conv at 8x8 has 1024 features
    "d_dense_width": 1024,  # Table 2: the hidden dense layer has 1024 units
    "kernel_size": 5,  # Tables 1 and 2: every conv is 5x5
    "leaky_slope": 0.2,  # section 2.1: "Leaky ReLU ... slope of 0.2"
    "minibatch_stddev": True,  # Karras et al. 2018's layer, before D's dense layers
    "mbstd_group_size": 4,  # Karras et al. 2018
    "output_activation": "tanh",  # Table 1: Tanh (images in [-1, 1])
}


def delplace_generator_widths(resolution: int, width: int, max_width: int) -> list[int]:
    """Widths of G's upsampling layers from 16x16 up to ``resolution`` (low resolution first)."""
    n_up = check_resolution(resolution) - 3
    return [min(width * 2**i, max_width) for i in range(n_up)][::-1]


class DelplaceDCGANGenerator(nn.Module):
    """Delplace's Table 1: dense -> 8x8; 5x5 transposed convs; ``z`` -> (N, C, R, R).

    A dense layer maps ``z`` to ``max_width`` x 8 x 8 (BN + ReLU). Then, for every resolution
    16, 32, ..., R, one stride-2 transposed conv doubling the size, with ``min(width * 2**i,
    max_width)`` features at R / 2**i (BN + ReLU); at every resolution whose width is
    ``max_width`` a second, stride-1 transposed conv of the same width follows (Table 1 at 256 px:
    16, 32 and 64 have two 256-feature layers, 128 has one of 128 and 256 one of 64). A last
    stride-1 transposed conv maps to C channels with ``output_activation`` (Table 1: tanh).
    Weights N(0, 0.02) (section 2.1).
    """

    def __init__(self, *, channels: int, resolution: int, latent_dim: int = 256, width: int = 64,
                 max_width: int = 256, kernel_size: int = 5, output_activation: str = "tanh"):
        super().__init__()
        check_channels(channels)
        self.channels, self.resolution, self.latent_dim = channels, resolution, latent_dim
        self.base_width = max_width
        self.dense = nn.Linear(latent_dim, max_width * 8 * 8, bias=False)
        pad, out_pad = _padding(kernel_size)
        layers: list[nn.Module] = [nn.BatchNorm2d(max_width), nn.ReLU(inplace=True)]
        c_in = max_width
        for c_out in delplace_generator_widths(resolution, width, max_width):
            layers += [nn.ConvTranspose2d(c_in, c_out, kernel_size, 2, pad, out_pad, bias=False),
                       nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            if c_out == max_width:
                layers += [nn.ConvTranspose2d(c_out, c_out, kernel_size, 1, kernel_size // 2,
                                              bias=False),
                           nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            c_in = c_out
        layers += [nn.ConvTranspose2d(c_in, channels, kernel_size, 1, kernel_size // 2),
                   make_output_activation(output_activation)]
        self.main = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        assert_shape(z, (None, self.latent_dim), "DelplaceDCGANGenerator input z")
        x = self.main(self.dense(z).reshape(z.shape[0], self.base_width, 8, 8))
        assert_shape(x, (z.shape[0], self.channels, self.resolution, self.resolution),
                     "DelplaceDCGANGenerator output")
        return x


class DelplaceDCGANDiscriminator(nn.Module):
    """Delplace's Table 2: 5x5 stride-2 convs down to 8x8 -> [mbstd] -> dense -> dense -> logit.

    Conv features ``min(d_width * 2**i, d_max_width)`` (Table 2 at 256 px: 64, 128, 256, 512,
    1024), BatchNorm on all but the first, leaky ReLU ``leaky_slope``. With
    ``minibatch_stddev`` the 8x8 features get one minibatch-stddev map before the dense layers.
    The last dense layer gives a logit (Table 2's sigmoid is in the loss).
    """

    def __init__(self, *, channels: int, resolution: int, d_width: int = 64,
                 d_max_width: int = 1024, d_dense_width: int = 1024, kernel_size: int = 5,
                 leaky_slope: float = 0.2, minibatch_stddev: bool = True,
                 mbstd_group_size: int = 4):
        super().__init__()
        check_channels(channels)
        self.channels, self.resolution = channels, resolution
        pad, _ = _padding(kernel_size)
        layers: list[nn.Module] = []
        c_in = channels
        for i in range(check_resolution(resolution) - 3):
            c_out = min(d_width * 2**i, d_max_width)
            layers.append(nn.Conv2d(c_in, c_out, kernel_size, 2, pad, bias=i == 0))
            if i > 0:
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.LeakyReLU(leaky_slope, inplace=True))
            c_in = c_out
        if minibatch_stddev:
            layers.append(MinibatchStddev(mbstd_group_size))
            c_in += 1
        layers += [nn.Flatten(), nn.Linear(c_in * 8 * 8, d_dense_width),
                   nn.LeakyReLU(leaky_slope, inplace=True), nn.Linear(d_dense_width, 1)]
        self.main = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert_shape(x, (None, self.channels, self.resolution, self.resolution),
                     "DelplaceDCGANDiscriminator input")
        return self.main(x).reshape(x.shape[0])


def resolve_delplace_config(arch: dict[str, Any]) -> dict[str, Any]:
    """Validate a ``dcgan_delplace`` config and fill in defaults (unknown keys -> ValueError)."""
    cfg = resolve_arch_config(arch, DELPLACE_DEFAULTS, positive_ints=(
        "latent_dim", "width", "max_width", "d_width", "d_max_width", "d_dense_width",
        "kernel_size", "mbstd_group_size"))
    if cfg["kernel_size"] < 2:
        raise ValueError(f"dcgan_delplace kernel_size must be >= 2, got {cfg['kernel_size']}")
    if cfg["kernel_size"] % 2 == 0:
        raise ValueError(f"dcgan_delplace kernel_size must be odd (stride-1 layers keep the "
                         f"size), got {cfg['kernel_size']}")
    if cfg["max_width"] < cfg["width"] or cfg["d_max_width"] < cfg["d_width"]:
        raise ValueError("dcgan_delplace max_width/d_max_width must be >= width/d_width")
    if not isinstance(cfg["leaky_slope"], (int, float)) or isinstance(cfg["leaky_slope"], bool):
        raise ValueError(f"dcgan_delplace leaky_slope must be a number, got "
                         f"{cfg['leaky_slope']!r}")
    if not isinstance(cfg["minibatch_stddev"], bool):
        raise ValueError(f"dcgan_delplace minibatch_stddev must be true/false, got "
                         f"{cfg['minibatch_stddev']!r}")
    check_choice(cfg, "output_activation", OUTPUT_ACTIVATIONS_ALL)
    return cfg


def build_delplace_generator(arch: dict[str, Any], *, channels: int,
                             resolution: int) -> DelplaceDCGANGenerator:
    """Delplace 2019's DCGAN generator (Table 1) from a config (see ``DELPLACE_DEFAULTS``)."""
    cfg = resolve_delplace_config(arch)
    check_resolution(resolution)
    return DelplaceDCGANGenerator(channels=channels, resolution=resolution,
                                  latent_dim=cfg["latent_dim"], width=cfg["width"],
                                  max_width=cfg["max_width"], kernel_size=cfg["kernel_size"],
                                  output_activation=cfg["output_activation"])


def build_delplace_discriminator(arch: dict[str, Any], *, channels: int,
                                 resolution: int) -> DelplaceDCGANDiscriminator:
    """Delplace 2019's DCGAN discriminator (Table 2) from a config (see ``DELPLACE_DEFAULTS``)."""
    cfg = resolve_delplace_config(arch)
    check_resolution(resolution)
    return DelplaceDCGANDiscriminator(
        channels=channels, resolution=resolution, d_width=cfg["d_width"],
        d_max_width=cfg["d_max_width"], d_dense_width=cfg["d_dense_width"],
        kernel_size=cfg["kernel_size"], leaky_slope=float(cfg["leaky_slope"]),
        minibatch_stddev=cfg["minibatch_stddev"], mbstd_group_size=cfg["mbstd_group_size"])
