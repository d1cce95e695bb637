"""A small U-net (Ronneberger et al. 2015) for retinal-vessel segmentation on 48x48 patches.

Beers et al. 2018 segment vessels with the U-net of the retina-unet project (orobix): 48x48
grayscale patches, two 2x2 max-poolings (48 -> 24 -> 12), two 3x3 convolutions + ReLU per level,
32-64-128 channels, dropout 0.2 between the convolutions of a level, and a per-pixel two-class
softmax. :class:`VesselUNet` is that network with its size as parameters:

* ``depth`` (default 2): number of 2x2 poolings; the patch side must be divisible by 2**depth
  (48 allows depth <= 4);
* ``width`` (default 16): channels of the first level, doubled at every pooling (16-32-64);
  retina-unet's 32 is ``width=32``; 16 keeps CPU training fast at a small loss of accuracy;
* ``dropout`` (default 0.0): dropout probability between the two convolutions of a level
  (retina-unet: 0.2);
* ``batch_norm`` (default true): BatchNorm after each convolution (not in retina-unet; it makes
  the short CPU training budgets of this project converge faster);
* ``in_channels`` (default 1: the preprocessed grayscale image);
* ``out_channels`` (default 1: the vessel logit; more for several labels, e.g. the tumour labels
  of the downstream-utility segmenter, :mod:`medgan.analysis.utility`).

The decoder upsamples by a 2x2 transposed convolution, concatenates the skip connection and
applies two 3x3 convolutions; a final 1x1 convolution gives one vessel *logit* per pixel
(a sigmoid turns it into a probability; one logit is the two-class softmax with one degree of
freedom). All convolutions are zero-padded, so the output has the input's size.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

UNET_DEFAULTS: dict[str, Any] = {
    "depth": 2,
    "width": 16,
    "dropout": 0.0,
    "batch_norm": True,
    "in_channels": 1,
    "out_channels": 1,
}


def resolve_unet_config(config: dict[str, Any] | None = None) -> dict[str, Any]:
    """``config`` with defaults filled in; ``ValueError`` on unknown keys or bad values."""
    config = dict(config or {})
    unknown = sorted(set(config) - set(UNET_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown U-net config key(s) {unknown}; keys are {sorted(UNET_DEFAULTS)}")
    out = {**UNET_DEFAULTS, **config}
    for key in ("depth", "width", "in_channels", "out_channels"):
        value, low = out[key], 0 if key == "depth" else 1
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"U-net {key} must be an integer >= {low}, got {value!r}")
    if not 0.0 <= float(out["dropout"]) < 1.0:
        raise ValueError(f"U-net dropout must be in [0, 1), got {out['dropout']!r}")
    out["dropout"] = float(out["dropout"])
    out["batch_norm"] = bool(out["batch_norm"])
    return out


class _DoubleConv(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, *, dropout: float, batch_norm: bool):
        layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=not batch_norm)]
        if batch_norm:
            layers.append(nn.BatchNorm2d(c_out))
        layers.append(nn.ReLU(inplace=True))
        if dropout > 0:
            layers.append(nn.Dropout2d(dropout))
        layers.append(nn.Conv2d(c_out, c_out, 3, padding=1, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(c_out))
        layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class VesselUNet(nn.Module):
    """U-net mapping (N, in_channels, H, W) to logits (N, out_channels, H, W).

    H and W must be divisible by ``2 ** depth``. ``self.config`` is the resolved config dict,
    enough to rebuild the network (:func:`build_unet`).
    """

    def __init__(self, **config: Any):
        super().__init__()
        self.config = resolve_unet_config(config)
        depth, width = self.config["depth"], self.config["width"]
        kw = {"dropout": self.config["dropout"], "batch_norm": self.config["batch_norm"]}
        widths = [width * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList()
        c_in = self.config["in_channels"]
        for w in widths[:-1]:
            self.down.append(_DoubleConv(c_in, w, **kw))
            c_in = w
        self.pool = nn.MaxPool2d(2)
        self.bottom = _DoubleConv(c_in, widths[-1], **kw)
        self.up = nn.ModuleList()
        self.up_conv = nn.ModuleList()
        for w_low, w in zip(widths[:0:-1], widths[-2::-1], strict=True):
            self.up.append(nn.ConvTranspose2d(w_low, w, 2, stride=2))
            self.up_conv.append(_DoubleConv(2 * w, w, **kw))
        self.head = nn.Conv2d(widths[0], self.config["out_channels"], 1)

    @property
    def divisor(self) -> int:
        """Input sides must be multiples of this."""
        return 2 ** self.config["depth"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.config["in_channels"]:
            raise ValueError(f"VesselUNet: expected (N, {self.config['in_channels']}, H, W) input, "
                             f"got {tuple(x.shape)}")
        if x.shape[2] % self.divisor or x.shape[3] % self.divisor:
            raise ValueError(f"VesselUNet: input size {tuple(x.shape[2:])} is not divisible by "
                             f"{self.divisor} (2 ** depth)")
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottom(x)
        for up, conv, skip in zip(self.up, self.up_conv, reversed(skips), strict=True):
            x = conv(torch.cat([up(x), skip], dim=1))
        return self.head(x)


def build_unet(config: dict[str, Any] | None = None) -> VesselUNet:
    """A :class:`VesselUNet` from a (partial) config dict."""
    return VesselUNet(**(config or {}))
