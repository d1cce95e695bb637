"""Layers shared by several architectures.

``MinibatchStddev`` is the minibatch standard-deviation layer of Karras et al. 2018 (ProGAN,
section 3): it appends one feature map holding the mean standard deviation of the features over
a group of samples, so that the discriminator can see how varied a batch is. Delplace 2019 uses
it in all three of his discriminators.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def resolve_arch_config(arch: dict[str, Any], defaults: dict[str, Any], *,
                        positive_ints: tuple[str, ...] = ()) -> dict[str, Any]:
    """``arch`` merged over ``defaults``; ``ValueError`` naming any unknown key, a wrong
    ``name``, or a key of ``positive_ints`` that is not a positive integer."""
    name = defaults["name"]
    unknown = [k for k in arch if k not in defaults]
    if unknown:
        raise ValueError(f"unknown {name} architecture key(s) {unknown}; known: {sorted(defaults)}")
    cfg = {**defaults, **arch}
    if cfg["name"] != name:
        raise ValueError(f"{name} builder got architecture name {cfg['name']!r}")
    for key in positive_ints:
        if not isinstance(cfg[key], int) or isinstance(cfg[key], bool) or cfg[key] < 1:
            raise ValueError(f"{name} architecture {key} must be a positive integer, "
                             f"got {cfg[key]!r}")
    return cfg


def check_choice(cfg: dict[str, Any], key: str, choices: tuple[str, ...]) -> None:
    """``ValueError`` unless ``cfg[key]`` is one of ``choices``."""
    if cfg[key] not in choices:
        raise ValueError(f"{cfg['name']} architecture {key} must be one of {choices}, "
                         f"got {cfg[key]!r}")


def check_resolution(resolution: int, minimum: int = 16) -> int:
    """``log2(resolution)``; ``ValueError`` unless it is a power of two >= ``minimum``."""
    if (not isinstance(resolution, int) or isinstance(resolution, bool) or resolution < minimum
            or resolution & (resolution - 1)):
        raise ValueError(f"resolution must be a power of two >= {minimum}, got {resolution!r}")
    return resolution.bit_length() - 1


def check_channels(channels: int) -> None:
    """``ValueError`` unless ``channels`` is a positive integer."""
    if not isinstance(channels, int) or isinstance(channels, bool) or channels < 1:
        raise ValueError(f"channels must be a positive integer, got {channels!r}")


def output_activation(name: str) -> nn.Module:
    """The generator's output non-linearity: ``none``, ``tanh``, ``relu`` or ``sigmoid``."""
    return {"none": nn.Identity, "tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid}[name]()


OUTPUT_ACTIVATIONS = ("none", "tanh", "relu", "sigmoid")


def group_size_for(batch: int, group_size: int) -> int:
    """The largest divisor of ``batch`` that is at most ``group_size``."""
    for g in range(min(group_size, batch), 0, -1):
        if batch % g == 0:
            return g
    return 1


class MinibatchStddev(nn.Module):
    """(N, C, H, W) -> (N, C + 1, H, W); the extra map is the group's mean feature stddev.

    The batch is split into groups of ``group_size`` samples (default 4, as Karras et al.; when
    the batch is not divisible, the largest divisor of the batch below ``group_size``). Within each
    group the (biased, population) standard deviation of every feature at every pixel is taken over
    the group, averaged over features and pixels to one number, and broadcast as a constant
    feature map to the group's samples. A group of one sample gives a map of zeros.
    """

    def __init__(self, group_size: int = 4, eps: float = 1e-8):
        super().__init__()
        if not isinstance(group_size, int) or isinstance(group_size, bool) or group_size < 1:
            raise ValueError(f"MinibatchStddev group_size must be a positive integer, "
                             f"got {group_size!r}")
        self.group_size, self.eps = group_size, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"MinibatchStddev input: expected (N, C, H, W), got {tuple(x.shape)}")
        n, c, h, w = x.shape
        g = group_size_for(n, self.group_size)
        y = x.reshape(g, n // g, c, h, w)  # sample i is in group i % (n // g), as Karras et al.
        y = y - y.mean(dim=0, keepdim=True)
        y = torch.sqrt(y.square().mean(dim=0) + self.eps)  # (n//g, c, h, w)
        y = y.mean(dim=(1, 2, 3))  # (n//g,)
        y = y.repeat(g).reshape(n, 1, 1, 1).expand(n, 1, h, w)
        return torch.cat([x, y.to(x.dtype)], dim=1)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}"


__all__ = ["OUTPUT_ACTIVATIONS", "MinibatchStddev", "check_channels", "check_choice",
           "check_resolution", "group_size_for", "output_activation", "resolve_arch_config"]
