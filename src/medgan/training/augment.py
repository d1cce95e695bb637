"""Adaptive discriminator augmentation (ADA; Karras et al. 2020, "Training generative
adversarial networks with limited data"), written from the paper.

:class:`AugmentPipe` is the differentiable pipeline of the paper's sec. 2-3 and appendix B,
applied with probability ``p`` per image and per transformation to every image the
discriminator sees (real and generated, in D's and in G's steps; the stylegan2 loss of
:mod:`medgan.training.losses` calls it):

* geometric (one bilinear resampling with reflected borders for the whole chain):
  x-flip, rotation by 90 degrees, integer translation (up to 1/8 of the image), isotropic
  scaling (log2-normal, std 0.2), arbitrary rotation (twice, each with probability
  ``1 - sqrt(1 - p)``, around the anisotropic scaling), anisotropic scaling (std 0.2),
  fractional translation (normal, std 1/8 of the image);
* colour, on the **image channels only**: brightness (add N(0, 0.2^2)), contrast (scale about
  each channel's mean by log2-normal, std 0.5), and for data holding the channels ``R``, ``G``
  and ``B`` also luma flip, hue rotation and saturation (log2-normal, std 1) on those three,
  about each image's mean colour. No colour operation mixes channels other than R, G, B:
  MRI sequences (T1, FLAIR, ...) are never combined;
* **label channels** (``edema``, ``necrosis``, ``enhancing``, ``vessels``: segmentation maps
  generated beside the image) take every geometric transformation with their image and no
  colour transformation.

:class:`AdaptiveAugment` holds ``p`` and tunes it by the overfitting heuristic
``r_t = E[sign(D_train(x))]`` over the real batches of every ``interval`` discriminator
steps: ``p`` moves by ``sign(r_t - target) * images / (speed_kimg * 1000)`` (the paper:
target 0.6, interval 4, p able to go from 0 to 1 in 500k images), clamped to [0, 1]. Its
state (``p``, the running sign sum, the image count, the adjustment count) is a plain dict for
the checkpoint: a resumed run continues it exactly.

Random numbers: one ``U[0, 1)`` draw per batch from a ``rand(n, k)`` callable (the loss's, which
uses torch's global RNG; in a data-parallel run each process takes its rows of the global
batch's draw, as one process would); normal numbers are made from it by the inverse CDF.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812

from medgan.data.labels import LABEL_CHANNELS

# segmentation channels generated beside images: geometric ops only
LABEL_CHANNEL_NAMES = (*LABEL_CHANNELS, "vessels")
RGB = ("R", "G", "B")
ADA_DEFAULTS: dict[str, Any] = {"target": 0.6, "interval": 4, "speed_kimg": 500.0,
                                "initial_p": 0.0}
# the paper's strengths (appendix B)
XINT_MAX, SCALE_STD, ANISO_STD, XFRAC_STD = 0.125, 0.2, 0.2, 0.125
BRIGHTNESS_STD, CONTRAST_STD, SATURATION_STD = 0.2, 0.5, 1.0
# columns of the per-image uniform draw
_COLUMNS = ("xflip_on", "xflip", "rot90_on", "rot90", "xint_on", "xint_x", "xint_y",
            "scale_on", "scale", "rot_on", "rot", "aniso_on", "aniso", "rot2_on", "rot2",
            "xfrac_on", "xfrac_x", "xfrac_y", "bright_on", "bright", "contrast_on", "contrast",
            "luma_on", "luma", "hue_on", "hue", "sat_on", "sat")
N_DRAWS = len(_COLUMNS)


def _normal(u: torch.Tensor) -> torch.Tensor:
    """Standard normal numbers from uniform ones (inverse CDF; ``u`` kept off 0 and 1)."""
    return math.sqrt(2.0) * torch.erfinv(2.0 * u.clamp(1e-6, 1.0 - 1e-6) - 1.0)


def _eye(n: int, like: torch.Tensor) -> torch.Tensor:
    return torch.eye(3, device=like.device, dtype=like.dtype).expand(n, 3, 3).clone()


def _scale(sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    m = _eye(len(sx), sx)
    m[:, 0, 0], m[:, 1, 1] = sx, sy
    return m


def _rotate(cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    m = _eye(len(cos), cos)
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = cos, -sin, sin, cos
    return m


def _translate(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    m = _eye(len(tx), tx)
    m[:, 0, 2], m[:, 1, 2] = tx, ty
    return m


class AugmentPipe:
    """The augmentation pipeline for images whose channels are named ``channels``."""

    def __init__(self, channels: Sequence[str]):
        names = list(channels)
        self.channels = names
        self.label_idx = [i for i, c in enumerate(names) if c in LABEL_CHANNEL_NAMES]
        self.image_idx = [i for i in range(len(names)) if i not in self.label_idx]
        self.rgb_idx = [names.index(c) for c in RGB] if all(c in names for c in RGB) else []

    def draw(self, n: int, p: float, rand: Callable[..., torch.Tensor],
             like: torch.Tensor) -> dict[str, torch.Tensor]:
        """The random parameters of ``n`` images at probability ``p`` (``rand(n, k)``: uniform
        numbers for the batch)."""
        u = rand(n, N_DRAWS, like=like)
        col = {name: u[:, i] for i, name in enumerate(_COLUMNS)}
        p_rot = 1.0 - math.sqrt(max(0.0, 1.0 - p))
        on = {k: (col[f"{k}_on"] < (p_rot if k in ("rot", "rot2") else p)).to(like.dtype)
              for k in ("xflip", "rot90", "xint", "scale", "rot", "aniso", "rot2", "xfrac",
                        "bright", "contrast", "luma", "hue", "sat")}
        return {
            "xflip": on["xflip"] * (col["xflip"] < 0.5).to(like.dtype),
            "rot90": on["rot90"] * torch.floor(col["rot90"] * 4.0).clamp(max=3.0),
            "xint": on["xint"][:, None] * (torch.stack([col["xint_x"], col["xint_y"]], 1)
                                           * 2.0 - 1.0) * XINT_MAX,
            "scale": on["scale"] * _normal(col["scale"]) * SCALE_STD,
            "rot": on["rot"] * (col["rot"] * 2.0 - 1.0) * math.pi,
            "aniso": on["aniso"] * _normal(col["aniso"]) * ANISO_STD,
            "rot2": on["rot2"] * (col["rot2"] * 2.0 - 1.0) * math.pi,
            "xfrac": on["xfrac"][:, None] * _normal(torch.stack([col["xfrac_x"],
                                                                 col["xfrac_y"]], 1)) * XFRAC_STD,
            "bright": on["bright"] * _normal(col["bright"]) * BRIGHTNESS_STD,
            "contrast": on["contrast"] * _normal(col["contrast"]) * CONTRAST_STD,
            "luma": on["luma"] * (col["luma"] < 0.5).to(like.dtype),
            "hue": on["hue"] * (col["hue"] * 2.0 - 1.0) * math.pi,
            "sat": on["sat"] * _normal(col["sat"]) * SATURATION_STD,
        }

    # --- geometric ----------------------------------------------------------------------------

    def geometric_matrix(self, params: dict[str, torch.Tensor], size: int) -> torch.Tensor:
        """(N, 3, 3) maps from output to input coordinates in [-1, 1] (the chain's random
        transformations are symmetric, so each draw is used as its own inverse)."""
        xint = torch.round(params["xint"] * size) * (2.0 / size)  # whole pixels
        k = params["rot90"]
        cos90 = torch.cos(k * (math.pi / 2)).round()
        sin90 = torch.sin(k * (math.pi / 2)).round()
        s, a = torch.exp2(params["scale"]), torch.exp2(params["aniso"])
        one = torch.ones_like(s)
        chain = [_scale(1.0 - 2.0 * params["xflip"], one), _rotate(cos90, sin90),
                 _translate(xint[:, 0], xint[:, 1]), _scale(s, s),
                 _rotate(torch.cos(params["rot"]), torch.sin(params["rot"])), _scale(a, 1.0 / a),
                 _rotate(torch.cos(params["rot2"]), torch.sin(params["rot2"])),
                 _translate(params["xfrac"][:, 0] * 2.0, params["xfrac"][:, 1] * 2.0)]
        m = chain[0]
        for t in chain[1:]:
            m = m @ t
        return m

    def geometric(self, x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """Every channel (image and labels) resampled through the same transformation; images
        with no geometric transformation are returned unchanged."""
        m = self.geometric_matrix(params, x.shape[-1]).to(x.dtype)
        moved = (m - torch.eye(3, dtype=x.dtype, device=x.device)).abs().flatten(1).amax(1) > 0
        if not bool(moved.any()):
            return x
        grid = F.affine_grid(m[:, :2], list(x.shape), align_corners=False)
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection",
                            align_corners=False)
        return torch.where(moved[:, None, None, None], out, x)

    # --- colour -------------------------------------------------------------------------------

    def colour(self, x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """Brightness and contrast on each image channel; luma flip, hue and saturation on
        R, G, B; label channels untouched."""
        if not self.image_idx:
            return x
        idx = torch.tensor(self.image_idx, device=x.device)
        img = x.index_select(1, idx)
        img = img + params["bright"].to(x.dtype)[:, None, None, None]
        mean = img.mean(dim=(2, 3), keepdim=True)
        img = (img - mean) * torch.exp2(params["contrast"]).to(x.dtype)[:, None, None, None] + mean
        out = x.clone()
        out[:, idx] = img
        if self.rgb_idx:
            out = self._rgb(out, params)
        return out

    def colour_matrix(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """(N, 3, 3) luma flip, hue rotation about the luma axis, saturation."""
        v = torch.full((3,), 1.0 / math.sqrt(3.0), dtype=params["hue"].dtype,
                       device=params["hue"].device)
        vv = torch.outer(v, v)
        eye = torch.eye(3, dtype=vv.dtype, device=vv.device)
        n = len(params["hue"])
        flip = eye - 2.0 * params["luma"][:, None, None] * vv
        cross = torch.tensor([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]],
                             dtype=vv.dtype, device=vv.device) / math.sqrt(3.0)
        theta = params["hue"][:, None, None]
        hue = vv + torch.cos(theta) * (eye - vv) + torch.sin(theta) * cross  # Rodrigues
        sat = vv + torch.exp2(params["sat"])[:, None, None] * (eye - vv)
        return (sat @ hue @ flip).reshape(n, 3, 3)

    def _rgb(self, x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        idx = torch.tensor(self.rgb_idx, device=x.device)
        rgb = x.index_select(1, idx)
        mean = rgb.mean(dim=(2, 3), keepdim=True)
        m = self.colour_matrix(params).to(x.dtype)
        rgb = torch.einsum("nij,njhw->nihw", m, rgb - mean) + mean
        out = x.clone()
        out[:, idx] = rgb
        return out

    def apply(self, x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """``x`` (N, C, H, W) augmented with ``params`` of :meth:`draw` (differentiable)."""
        if x.shape[1] != len(self.channels):
            raise ValueError(f"AugmentPipe for channels {self.channels}: got images of "
                             f"{x.shape[1]} channels")
        return self.colour(self.geometric(x, params), params)

    def __call__(self, x: torch.Tensor, p: float,
                 rand: Callable[..., torch.Tensor]) -> torch.Tensor:
        if p <= 0.0:
            return x
        return self.apply(x, self.draw(x.shape[0], p, rand, like=x))


class AdaptiveAugment:
    """``p`` and the overfitting heuristic that tunes it (see the module docstring)."""

    def __init__(self, channels: Sequence[str], cfg: dict[str, Any]):
        self.pipe = AugmentPipe(channels)
        self.target = float(cfg["target"])
        self.interval = int(cfg["interval"])
        self.speed_kimg = float(cfg["speed_kimg"])
        self.p = float(cfg["initial_p"])
        self.sign_sum, self.sign_n = 0.0, 0  # this interval's real logits
        self.pending: list[torch.Tensor] = []  # device sums not yet read (no host sync per step)
        self.d_steps, self.images, self.r_t = 0, 0, 0.0

    def observe(self, real_logits: torch.Tensor, ranks: Any = None) -> None:
        """One discriminator step's logits on (augmented) real images; every ``interval``
        steps, ``r_t`` and the adjustment of ``p``."""
        self.pending.append(torch.sign(real_logits.detach()).sum().float())
        self.sign_n += real_logits.shape[0]
        self.d_steps += 1
        if self.d_steps % self.interval:
            return
        total = {"sum": float(torch.stack(self.pending).sum()) + self.sign_sum,
                 "n": float(self.sign_n)}
        if ranks is not None:
            total = ranks.mean(total)  # means of sums: the ratio is the global one
            n_images = self.sign_n * ranks.world_size
        else:
            n_images = self.sign_n
        self.r_t = total["sum"] / max(total["n"], 1.0)
        step = math.copysign(1.0, self.r_t - self.target) if self.r_t != self.target else 0.0
        self.p = min(1.0, max(0.0, self.p + step * n_images / (self.speed_kimg * 1000.0)))
        self.images += n_images
        self.pending, self.sign_sum, self.sign_n = [], 0.0, 0

    def augment(self, x: torch.Tensor, rand: Callable[..., torch.Tensor]) -> torch.Tensor:
        return self.pipe(x, self.p, rand)

    def state_dict(self) -> dict[str, Any]:
        """Plain numbers for the checkpoint (pending device sums folded in)."""
        partial = self.sign_sum + (float(torch.stack(self.pending).sum()) if self.pending else 0.0)
        return {"p": self.p, "sign_sum": partial, "sign_n": self.sign_n,
                "d_steps": self.d_steps, "images": self.images, "r_t": self.r_t}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.p, self.sign_sum = float(state["p"]), float(state["sign_sum"])
        self.sign_n, self.d_steps = int(state["sign_n"]), int(state["d_steps"])
        self.images, self.r_t = int(state["images"]), float(state["r_t"])
        self.pending = []


__all__ = ["ADA_DEFAULTS", "LABEL_CHANNEL_NAMES", "AdaptiveAugment", "AugmentPipe"]
