"""The small DCGAN of Kitchen & Seah 2017 for 16 x 16 px prostate-lesion patches.

Generator (Table 1): ``z`` (25, standard normal) -> fully connected to 256 = 4x4x16, reshaped
(ReLU: the table gives no activation for this layer; a linear layer before a linear transposed
conv would add nothing, so the DCGAN convention is used) -> 3x3 stride-2 transposed convs with
ReLU, 4 -> 8 (32 features) -> 16 (16 features) -> a 3x3 transposed conv to C channels at 16x16
(the table writes "3x3/2" but gives the output 16x16x3, so its stride is 1), with
``output_activation`` (Table 1: ReLU; the data lie in about [0, 1]). Other resolutions add
stride-2 layers: the hidden layers, from the highest resolution down, have
``min(width * 2**i, max_width)`` features (Table 1: width 16, max_width 32 gives 16, 32).

Discriminator (Table 2): Gaussian noise on the input -> 3x3 conv, ``d_width`` (32) features,
stride 1 -> 3x3 stride-2 convs doubling the features (64, 128; capped at ``d_max_width``) down to
4x4 -> global average pooling -> dropout -> fully connected to a logit (no sigmoid: the loss
works on logits). Every conv is followed by leaky ReLU (slope 0.1) and Gaussian noise. The
noise ("drawn from N(0, 1/2)"; read here as standard deviation 0.5, ``noise_std``) and dropout
(rate not given; ``dropout`` 0.5) act only in training mode.

Weights (not in the paper; the authors' ``gan.py``): TensorFlow's unit-scaling initialisation,
uniform with standard deviation ``factor / sqrt(fan_in)`` - factor 1.43 in G (hidden biases
0.1), 1.5 in D's convolutions and 1.0 in its last dense layer (biases 0); see
:func:`unit_scaling_init`. Radford's N(0, 0.02) (used before issue 16) shrinks every layer's
output about tenfold, so D's input and activation noise (std 0.5) drowned the image: D sat at
chance (loss log 4) and G collapsed to one lesion.

The paper's batch size of 200 is a training-schedule setting, not an architecture key.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from medgan.models.dcgan import assert_shape
from medgan.models.layers import (
    OUTPUT_ACTIVATIONS,
    check_channels,
    check_choice,
    check_resolution,
    output_activation,
    resolve_arch_config,
)

DEFAULTS: dict[str, Any] = {
    "name": "kitchen",
    "latent_dim": 25,  # Table 1: "random input 25"
    "dense_width": 16,  # Table 1: reshape to 4x4x16
    "width": 16,  # Table 1: the transposed conv at 16x16 has 16 features
    "max_width": 32,  # Table 1: the transposed conv at 8x8 has 32 features
    "output_activation": "relu",  # Table 1: "T. conv. / ReLU" on the output layer
    "d_width": 32,  # Table 2: first conv, 32 features
    "d_max_width": 128,  # Table 2: last conv, 128 features
    "leaky_slope": 0.1,  # section 5.3: alpha = 0.1
    "noise_std": 0.5,  # section 5.3: "Gaussian noise is drawn from N(0, 1/2)"
    "dropout": 0.5,  # Table 2: dropout after global average pooling (rate not given)
}


G_INIT_FACTOR = 1.43  # the authors' gan.py: uniform_unit_scaling_initializer(factor=1.43)
D_INIT_FACTOR = 1.5  # ... factor=1.5 for D's convolutions, 1.0 for its last dense layer
G_HIDDEN_BIAS = 0.1  # ... biases_initializer=constant(0.1) in G's hidden layers


def unit_scaling_init(layer: nn.Module, factor: float, bias: float = 0.0) -> None:
    """Uniform weights of standard deviation ``factor / sqrt(fan_in)`` (TensorFlow's
    ``uniform_unit_scaling_initializer``), constant bias ``bias``."""
    # TensorFlow's input size: the product of the kernel's dims but the last, which is
    # PyTorch's fan-in (for a transposed conv: out_channels * k * k, as in TF)
    fan_in = nn.init._calculate_fan_in_and_fan_out(layer.weight)[0]
    limit = factor * (3.0 / fan_in) ** 0.5
    nn.init.uniform_(layer.weight, -limit, limit)
    nn.init.constant_(layer.bias, bias)


class GaussianNoise(nn.Module):
    """Adds N(0, ``std``^2) noise in training mode; the identity in eval mode."""

    def __init__(self, std: float):
        super().__init__()
        self.std = std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.std > 0:
            return x + torch.randn_like(x) * self.std
        return x

    def extra_repr(self) -> str:
        return f"std={self.std}"


class KitchenGenerator(nn.Module):
    """``z`` (N, latent_dim) -> (N, channels, resolution, resolution); see the module doc."""

    def __init__(self, *, channels: int, resolution: int, latent_dim: int = 25,
                 dense_width: int = 16, width: int = 16, max_width: int = 32,
                 output_activation_name: str = "relu"):
        super().__init__()
        check_channels(channels)
        self.channels, self.resolution, self.latent_dim = channels, resolution, latent_dim
        self.dense_width = dense_width
        self.dense = nn.Sequential(nn.Linear(latent_dim, dense_width * 4 * 4),
                                   nn.ReLU(inplace=True))
        n_up = check_resolution(resolution) - 2
        widths = [min(width * 2**i, max_width) for i in range(n_up)][::-1]  # 8x8 first
        layers: list[nn.Module] = []
        c_in = dense_width
        for c_out in widths:
            layers += [nn.ConvTranspose2d(c_in, c_out, 3, 2, 1, output_padding=1),
                       nn.ReLU(inplace=True)]
            c_in = c_out
        layers += [nn.ConvTranspose2d(c_in, channels, 3, 1, 1),
                   output_activation(output_activation_name)]
        self.main = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.ConvTranspose2d)):
                unit_scaling_init(m, G_INIT_FACTOR, G_HIDDEN_BIAS)
        unit_scaling_init(layers[-2], G_INIT_FACTOR, 0.0)  # the output layer: bias 0

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        assert_shape(z, (None, self.latent_dim), "KitchenGenerator input z")
        x = self.main(self.dense(z).reshape(z.shape[0], self.dense_width, 4, 4))
        assert_shape(x, (z.shape[0], self.channels, self.resolution, self.resolution),
                     "KitchenGenerator output")
        return x


class KitchenDiscriminator(nn.Module):
    """Images (N, channels, resolution, resolution) -> logits (N,); see the module doc."""

    def __init__(self, *, channels: int, resolution: int, d_width: int = 32,
                 d_max_width: int = 128, leaky_slope: float = 0.1, noise_std: float = 0.5,
                 dropout: float = 0.5):
        super().__init__()
        check_channels(channels)
        self.channels, self.resolution = channels, resolution
        n_down = check_resolution(resolution) - 2  # R -> 4
        layers: list[nn.Module] = [GaussianNoise(noise_std)]
        c_in = channels
        for i in range(n_down + 1):
            c_out = min(d_width * 2**i, d_max_width)
            layers += [nn.Conv2d(c_in, c_out, 3, 1 if i == 0 else 2, 1),
                       nn.LeakyReLU(leaky_slope, inplace=True), GaussianNoise(noise_std)]
            c_in = c_out
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                   nn.Linear(c_in, 1)]
        self.main = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                unit_scaling_init(m, D_INIT_FACTOR)
        unit_scaling_init(layers[-1], 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert_shape(x, (None, self.channels, self.resolution, self.resolution),
                     "KitchenDiscriminator input")
        return self.main(x).reshape(x.shape[0])


def resolve_config(arch: dict[str, Any]) -> dict[str, Any]:
    """Validate a ``kitchen`` config and fill in defaults (unknown keys -> ValueError)."""
    cfg = resolve_arch_config(arch, DEFAULTS, positive_ints=(
        "latent_dim", "dense_width", "width", "max_width", "d_width", "d_max_width"))
    if cfg["max_width"] < cfg["width"] or cfg["d_max_width"] < cfg["d_width"]:
        raise ValueError("kitchen max_width/d_max_width must be >= width/d_width")
    for key in ("leaky_slope", "noise_std", "dropout"):
        if not isinstance(cfg[key], (int, float)) or isinstance(cfg[key], bool):
            raise ValueError(f"kitchen architecture {key} must be a number, got {cfg[key]!r}")
    if cfg["noise_std"] < 0:
        raise ValueError(f"kitchen noise_std must be >= 0, got {cfg['noise_std']}")
    if not 0 <= cfg["dropout"] < 1:
        raise ValueError(f"kitchen dropout must be in [0, 1), got {cfg['dropout']}")
    check_choice(cfg, "output_activation", OUTPUT_ACTIVATIONS)
    return cfg


def build_generator(arch: dict[str, Any], *, channels: int, resolution: int) -> KitchenGenerator:
    """Kitchen & Seah 2017's generator (Table 1) from a config (see ``DEFAULTS``)."""
    cfg = resolve_config(arch)
    check_resolution(resolution)
    return KitchenGenerator(channels=channels, resolution=resolution,
                            latent_dim=cfg["latent_dim"], dense_width=cfg["dense_width"],
                            width=cfg["width"], max_width=cfg["max_width"],
                            output_activation_name=cfg["output_activation"])


def build_discriminator(arch: dict[str, Any], *, channels: int,
                        resolution: int) -> KitchenDiscriminator:
    """Kitchen & Seah 2017's discriminator (Table 2) from a config (see ``DEFAULTS``)."""
    cfg = resolve_config(arch)
    check_resolution(resolution)
    return KitchenDiscriminator(channels=channels, resolution=resolution, d_width=cfg["d_width"],
                                d_max_width=cfg["d_max_width"],
                                leaky_slope=float(cfg["leaky_slope"]),
                                noise_std=float(cfg["noise_std"]), dropout=float(cfg["dropout"]))
