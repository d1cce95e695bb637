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

Two options follow the authors' code (``andykitchen/spie-svm``, ``gan.py``) where it differs
from, or says more than, the paper; each is recorded only when given. ``noise_placement``:
``"paper"`` (default, Table 2: noise on the input and after every conv) or ``"code"`` (noise
after every conv but the last, none on the input, as ``gan.py`` has it). ``init``: ``"normal"``
(default, DCGAN's N(0, 0.02)) or ``"uniform_unit_scaling"`` (the paper gives none; ``gan.py``
uses TensorFlow's uniform unit scaling, U(+-factor * sqrt(3 / fan_in)), factor 1.43 in G, 1.5
for D's convs and 1 for its dense layer, biases 0.1 in G's hidden layers, else 0).

The paper's batch size of 200 is a training-schedule setting, not an architecture key.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from medgan.models.dcgan import assert_shape, init_weights
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
# keys recorded only when given, so that older checkpoints stay resumable
OPTIONAL: dict[str, Any] = {"noise_placement": "paper", "init": "normal"}
NOISE_PLACEMENTS = ("paper", "code")
INITS = ("normal", "uniform_unit_scaling")


@torch.no_grad()
def init_uniform_unit_scaling(module: nn.Module, *, generator: bool) -> None:
    """The authors' initialisation (``gan.py``): weights U(+-factor * sqrt(3 / fan_in)), fan_in
    as TensorFlow counts it (for a transposed conv: its output features x kernel area)."""
    layers = [m for m in module.modules() if isinstance(m, (nn.Linear, nn.Conv2d,
                                                            nn.ConvTranspose2d))]
    for k, layer in enumerate(layers):
        factor = 1.43 if generator else (1.0 if isinstance(layer, nn.Linear) else 1.5)
        fan_in = nn.init._calculate_fan_in_and_fan_out(layer.weight)[0]
        bound = factor * (3.0 / fan_in) ** 0.5
        layer.weight.uniform_(-bound, bound)
        nn.init.constant_(layer.bias, 0.1 if generator and k < len(layers) - 1 else 0.0)


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
        init_weights(self)

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
                 dropout: float = 0.5, noise_placement: str = "paper"):
        super().__init__()
        check_channels(channels)
        self.channels, self.resolution = channels, resolution
        n_down = check_resolution(resolution) - 2  # R -> 4
        paper = noise_placement == "paper"  # "code": after every conv but the last only
        layers: list[nn.Module] = [GaussianNoise(noise_std)] if paper else []
        c_in = channels
        for i in range(n_down + 1):
            c_out = min(d_width * 2**i, d_max_width)
            layers += [nn.Conv2d(c_in, c_out, 3, 1 if i == 0 else 2, 1),
                       nn.LeakyReLU(leaky_slope, inplace=True)]
            if paper or i < n_down:
                layers.append(GaussianNoise(noise_std))
            c_in = c_out
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                   nn.Linear(c_in, 1)]
        self.main = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert_shape(x, (None, self.channels, self.resolution, self.resolution),
                     "KitchenDiscriminator input")
        return self.main(x).reshape(x.shape[0])


def resolve_config(arch: dict[str, Any]) -> dict[str, Any]:
    """Validate a ``kitchen`` config and fill in defaults (unknown keys -> ValueError)."""
    cfg = resolve_arch_config(arch, {**DEFAULTS, **OPTIONAL}, positive_ints=(
        "latent_dim", "dense_width", "width", "max_width", "d_width", "d_max_width"))
    for key in OPTIONAL:
        if key not in arch:
            del cfg[key]
    check_choice({**OPTIONAL, **cfg}, "noise_placement", NOISE_PLACEMENTS)
    check_choice({**OPTIONAL, **cfg}, "init", INITS)
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
    G = KitchenGenerator(channels=channels, resolution=resolution,
                         latent_dim=cfg["latent_dim"], dense_width=cfg["dense_width"],
                         width=cfg["width"], max_width=cfg["max_width"],
                         output_activation_name=cfg["output_activation"])
    if cfg.get("init") == "uniform_unit_scaling":
        init_uniform_unit_scaling(G, generator=True)
    return G


def build_discriminator(arch: dict[str, Any], *, channels: int,
                        resolution: int) -> KitchenDiscriminator:
    """Kitchen & Seah 2017's discriminator (Table 2) from a config (see ``DEFAULTS``)."""
    cfg = resolve_config(arch)
    check_resolution(resolution)
    D = KitchenDiscriminator(channels=channels, resolution=resolution, d_width=cfg["d_width"],
                             d_max_width=cfg["d_max_width"],
                             leaky_slope=float(cfg["leaky_slope"]),
                             noise_std=float(cfg["noise_std"]), dropout=float(cfg["dropout"]),
                             noise_placement=cfg.get("noise_placement", "paper"))
    if cfg.get("init") == "uniform_unit_scaling":
        init_uniform_unit_scaling(D, generator=False)
    return D
