"""SRResNet GAN of Delplace 2019 (section 2.1), after Ledig et al. 2017's SRGAN.

Generator (Delplace: "a dense layer that rescales the input latent vector to the size 64x16x16,
... followed by 16 residual blocks (2 convolutions with 3x3 kernels). At the end, 4 upsampling
blocks generate the 1x256x256 output image by transferring filters into pixels, as described in
Ledig"): ``z`` is normalised to unit root-mean-square ("drawn from N(0, 1) before being
normalized") -> dense to ``width`` x S x S (BN + ReLU) -> ``n_blocks`` residual blocks
(conv 3x3, BN, ReLU, conv 3x3, BN, + input) -> BN + ReLU, plus a long skip from before the
blocks (Ledig) -> upsampling blocks (conv 3x3 to 4 * ``width``, pixel shuffle x2, BN, ReLU) ->
conv ``output_kernel_size`` (Ledig: 9x9) to C channels with ``output_activation`` (tanh).
S = R / 2**``n_upsample`` (paper: 256 / 2**4 = 16); where that would be below 4 (small images),
S = 4 and fewer upsampling blocks are used.

Discriminator (Delplace: "12 residual blocks separated by a downsampling convolution layer with
3x3 kernels and stride 2. The only dense layer is the one at the end ... reducing ... 2048x2x2
into one scalar"; "does not use any Batch Normalization"): a 3x3 stride-2 conv with
``d_width`` features, then stages of ``d_blocks_per_stage`` residual blocks (conv 3x3, leaky ReLU,
conv 3x3, + input, leaky ReLU) each followed by a 3x3 stride-2 conv doubling the features
(capped at ``d_max_width``), down to 2x2, then one dense layer to a logit (no sigmoid). At 256 px
with the defaults: 32 features at 128, then 6 stages of 2 blocks = 12 blocks, 2048 x 2 x 2.
The paper does not give the 32 starting features; they are the unique power of two that ends at
2048 after six doublings. Optionally a minibatch-stddev map before the dense layer.

Weights: He normal ("tensor weights are initialized with the He Normal method"); the conv
before each pixel shuffle is He normal per output pixel and copied to its 4 sub-pixels (ICNR,
Aitken et al. 2017, :func:`icnr_init`), so that the upsampling starts as nearest-neighbour and
not as a checkerboard: with independent He weights the four sub-pixels of every 2x2 block
differ at the start, and Delplace's short default runs (200 steps) ended with a checkerboard
(issue 16).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from medgan.models.dcgan import assert_shape
from medgan.models.layers import (
    OUTPUT_ACTIVATIONS,
    MinibatchStddev,
    check_channels,
    check_choice,
    check_resolution,
    output_activation,
    resolve_arch_config,
)

DEFAULTS: dict[str, Any] = {
    "name": "srresnet",
    "latent_dim": 256,  # Delplace: "The 256-long input latent space"
    "normalize_latent": True,  # Delplace: "drawn from N(0, 1) before being normalized"
    "width": 64,  # Delplace: dense layer to 64x16x16
    "n_blocks": 16,  # Delplace/Ledig: 16 residual blocks in G
    "n_upsample": 4,  # Delplace: 4 upsampling blocks (16 -> 256)
    "output_kernel_size": 9,  # Ledig et al. 2017: last conv 9x9
    "output_activation": "tanh",  # images in [-1, 1] (Delplace's OASIS scaling)
    "d_width": 32,  # derived: 2048 at 2x2 after six doublings (Delplace gives only 2048)
    "d_max_width": 2048,  # Delplace: "2048x2x2"
    "d_blocks_per_stage": 2,  # Delplace: 12 residual blocks over 6 stages at 256 px
    "leaky_slope": 0.2,  # Ledig et al. 2017 (Delplace's DCGAN uses 0.2 as well)
    "minibatch_stddev": False,  # not in Delplace's SRResNet description; optional
    "mbstd_group_size": 4,  # Karras et al. 2018
}


def he_init(module: nn.Module) -> None:
    """He normal (fan-in) weights, zero biases; BatchNorm scale 1, shift 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def icnr_init(conv: nn.Conv2d, scale: int = 2) -> None:
    """ICNR (Aitken et al. 2017): He-normal weights of ``conv.out_channels / scale**2``
    filters, each repeated for the ``scale**2`` channels that a pixel shuffle spreads over one
    output pixel's sub-pixels; zero biases. The conv + pixel shuffle then starts as a conv
    followed by nearest-neighbour upsampling: free of checkerboards."""
    n = scale * scale
    if conv.out_channels % n:
        raise ValueError(f"ICNR needs out_channels divisible by {n}, got {conv.out_channels}")
    base = torch.empty(conv.out_channels // n, *conv.weight.shape[1:])
    nn.init.kaiming_normal_(base, nonlinearity="relu")
    with torch.no_grad():
        conv.weight.copy_(base.repeat_interleave(n, dim=0))
        if conv.bias is not None:
            conv.bias.zero_()


def _conv3(c_in: int, c_out: int, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride, 1, bias=bias)


class GeneratorResBlock(nn.Module):
    """x + BN(conv(ReLU(BN(conv(x))))) (Ledig et al. 2017, with ReLU for PReLU)."""

    def __init__(self, width: int):
        super().__init__()
        self.body = nn.Sequential(_conv3(width, width, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU(inplace=True), _conv3(width, width, bias=False),
                                  nn.BatchNorm2d(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class DiscriminatorResBlock(nn.Module):
    """LReLU(x + conv(LReLU(conv(x)))), no normalisation (Delplace: D has no BatchNorm)."""

    def __init__(self, width: int, slope: float):
        super().__init__()
        self.body = nn.Sequential(_conv3(width, width), nn.LeakyReLU(slope, inplace=True),
                                  _conv3(width, width))
        self.act = nn.LeakyReLU(slope, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.body(x))


def start_resolution(resolution: int, n_upsample: int) -> int:
    """G's dense-layer resolution: R / 2**n_upsample, but at least 4 (and at most R)."""
    return max(resolution >> n_upsample, min(4, resolution))


class SRResNetGenerator(nn.Module):
    """``z`` (N, latent_dim) -> (N, channels, resolution, resolution); see the module doc."""

    def __init__(self, *, channels: int, resolution: int, latent_dim: int = 256,
                 normalize_latent: bool = True, width: int = 64, n_blocks: int = 16,
                 n_upsample: int = 4, output_kernel_size: int = 9,
                 output_activation_name: str = "tanh"):
        super().__init__()
        check_channels(channels)
        self.channels, self.resolution, self.latent_dim = channels, resolution, latent_dim
        self.normalize_latent, self.width = normalize_latent, width
        self.start = start_resolution(resolution, n_upsample)
        self.dense = nn.Linear(latent_dim, width * self.start**2, bias=False)
        self.dense_act = nn.Sequential(nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        self.blocks = nn.Sequential(*(GeneratorResBlock(width) for _ in range(n_blocks)))
        self.blocks_out = nn.Sequential(nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        ups: list[nn.Module] = []
        for _ in range((resolution // self.start).bit_length() - 1):
            ups += [_conv3(width, 4 * width), nn.PixelShuffle(2), nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True)]
        self.upsample = nn.Sequential(*ups)
        self.to_image = nn.Sequential(
            nn.Conv2d(width, channels, output_kernel_size, 1, output_kernel_size // 2),
            output_activation(output_activation_name))
        he_init(self)
        for i, layer in enumerate(ups):
            if isinstance(layer, nn.PixelShuffle):
                icnr_init(ups[i - 1])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        assert_shape(z, (None, self.latent_dim), "SRResNetGenerator input z")
        if self.normalize_latent:
            z = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)
        x = self.dense_act(self.dense(z).reshape(z.shape[0], self.width, self.start, self.start))
        x = x + self.blocks_out(self.blocks(x))
        x = self.to_image(self.upsample(x))
        assert_shape(x, (z.shape[0], self.channels, self.resolution, self.resolution),
                     "SRResNetGenerator output")
        return x


class SRResNetDiscriminator(nn.Module):
    """Images (N, channels, resolution, resolution) -> logits (N,); see the module doc."""

    def __init__(self, *, channels: int, resolution: int, d_width: int = 32,
                 d_max_width: int = 2048, d_blocks_per_stage: int = 2, leaky_slope: float = 0.2,
                 minibatch_stddev: bool = False, mbstd_group_size: int = 4):
        super().__init__()
        check_channels(channels)
        self.channels, self.resolution = channels, resolution
        n_down = check_resolution(resolution) - 1  # R -> 2
        layers: list[nn.Module] = [_conv3(channels, d_width, stride=2),
                                   nn.LeakyReLU(leaky_slope, inplace=True)]
        c = d_width
        for _ in range(n_down - 1):
            layers += [DiscriminatorResBlock(c, leaky_slope) for _ in range(d_blocks_per_stage)]
            c_out = min(2 * c, d_max_width)
            layers += [_conv3(c, c_out, stride=2), nn.LeakyReLU(leaky_slope, inplace=True)]
            c = c_out
        if minibatch_stddev:
            layers.append(MinibatchStddev(mbstd_group_size))
            c += 1
        layers += [nn.Flatten(), nn.Linear(c * 2 * 2, 1)]
        self.main = nn.Sequential(*layers)
        he_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert_shape(x, (None, self.channels, self.resolution, self.resolution),
                     "SRResNetDiscriminator input")
        return self.main(x).reshape(x.shape[0])


def resolve_config(arch: dict[str, Any]) -> dict[str, Any]:
    """Validate an ``srresnet`` config and fill in defaults (unknown keys -> ValueError)."""
    cfg = resolve_arch_config(arch, DEFAULTS, positive_ints=(
        "latent_dim", "width", "output_kernel_size", "d_width", "d_max_width",
        "mbstd_group_size"))
    for key in ("n_blocks", "n_upsample", "d_blocks_per_stage"):
        if not isinstance(cfg[key], int) or isinstance(cfg[key], bool) or cfg[key] < 0:
            raise ValueError(f"srresnet architecture {key} must be an integer >= 0, "
                             f"got {cfg[key]!r}")
    if cfg["output_kernel_size"] % 2 == 0:
        raise ValueError(f"srresnet output_kernel_size must be odd, "
                         f"got {cfg['output_kernel_size']}")
    if cfg["d_max_width"] < cfg["d_width"]:
        raise ValueError("srresnet d_max_width must be >= d_width")
    for key in ("normalize_latent", "minibatch_stddev"):
        if not isinstance(cfg[key], bool):
            raise ValueError(f"srresnet architecture {key} must be true/false, got {cfg[key]!r}")
    if not isinstance(cfg["leaky_slope"], (int, float)) or isinstance(cfg["leaky_slope"], bool):
        raise ValueError(f"srresnet leaky_slope must be a number, got {cfg['leaky_slope']!r}")
    check_choice(cfg, "output_activation", OUTPUT_ACTIVATIONS)
    return cfg


def build_generator(arch: dict[str, Any], *, channels: int, resolution: int) -> SRResNetGenerator:
    """Delplace 2019's SRResNet generator from a config (see ``DEFAULTS``)."""
    cfg = resolve_config(arch)
    check_resolution(resolution)
    return SRResNetGenerator(channels=channels, resolution=resolution,
                             latent_dim=cfg["latent_dim"], normalize_latent=cfg["normalize_latent"],
                             width=cfg["width"], n_blocks=cfg["n_blocks"],
                             n_upsample=cfg["n_upsample"],
                             output_kernel_size=cfg["output_kernel_size"],
                             output_activation_name=cfg["output_activation"])


def build_discriminator(arch: dict[str, Any], *, channels: int,
                        resolution: int) -> SRResNetDiscriminator:
    """Delplace 2019's SRResNet discriminator from a config (see ``DEFAULTS``)."""
    cfg = resolve_config(arch)
    check_resolution(resolution)
    return SRResNetDiscriminator(channels=channels, resolution=resolution,
                                 d_width=cfg["d_width"], d_max_width=cfg["d_max_width"],
                                 d_blocks_per_stage=cfg["d_blocks_per_stage"],
                                 leaky_slope=float(cfg["leaky_slope"]),
                                 minibatch_stddev=cfg["minibatch_stddev"],
                                 mbstd_group_size=cfg["mbstd_group_size"])
