"""A domain feature network for distribution metrics, trained on the real images of one dataset.

No downloaded weights (DESIGN.md: no network at run time): ImageNet features describe natural
photographs, not z-scored MRI slices or fundus vessel maps, so every prepared dataset gets its own
small encoder, trained self-supervised on its real training images with SimCLR's objective
(Chen et al. 2020, "A simple framework for contrastive learning of visual representations"):
two random augmentations of the same image are pulled together and away from every other image
of the batch by the NT-Xent loss (normalised temperature-scaled cross entropy) on the output of
a projection head. The representation used for metrics is the encoder's output *before* the
projection head (global average pool of the last 4x4 feature map, ``feature_dim`` numbers).

Single-channel samples. Every channel of every training image is one sample, standardised with
that channel's mean and standard deviation over the training set (stored by channel *name* in
the checkpoint). A model trained on any subset of the dataset's channels (T1 only, Han 2018's
Concat, Beers 2018's RGB + vessel map) is then described by the concatenation of the per-channel
embeddings in its channel order, so one network per dataset serves all its models. The limit of
this choice: the network never sees two channels at once, so cross-channel structure (e.g.
whether a tumour is bright in T1c *and* in FLAIR at the same place) enters the metrics only
through the joint distribution of the per-channel feature vectors, not through features that
look at the channels together.

Augmentations (batched, on torch tensors, drawn from a seeded :class:`torch.Generator`): random
resized crop (area fraction 0.5-1, aspect ratio 3/4-4/3) back to the full resolution, horizontal
and vertical flips, intensity scale (0.8-1.2) and shift (+-0.2 in standardised units), Gaussian
noise (sigma 0-0.1) and, with probability 1/2, a small Gaussian blur (sigma 0.1-1 px).

Encoder: stride-2 3x3 convolutions (GroupNorm, ReLU) from the input down to 4x4 (the first one
reads every input pixel), widths ``width * 2**i`` capped at ``8 * width``, then global average
pooling and a linear map to ``feature_dim``. GroupNorm (not BatchNorm) keeps an image's features
independent of the batch it is extracted with. Works at any power-of-two resolution >= 16; the
features are defined for the resolution the network was trained at.

Cost: a training step (batch 128, width 32, 2 CPU threads) takes about 0.26 s at 64 px, 1.4 s at
128 px and 7.7 s at 256 px. ``max_resolution`` bounds it: larger images are average-pooled by a
power-of-two factor before the network, in training and in :func:`extract_features` alike
(the features then see no detail finer than the pooled pixels).

Checkpoint: a plain dict ``{"kind": "medgan.featurenet", "format_version", "state_dict",
"info"}`` written atomically and read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from tqdm.auto import tqdm

from medgan.atomic import atomic_path
from medgan.errors import InputError
from medgan.training.checkpoint import load_checkpoint
from medgan.training.distributed import resolve_device

KIND = "medgan.featurenet"
CHANNELS_LAST = torch.channels_last  # about 25% faster convolutions on CPU (oneDNN)
FORMAT_VERSION = 1

DEFAULTS: dict[str, Any] = {"steps": 600, "batch_size": 128, "lr": 1e-3, "width": 32,
                            "feature_dim": 128, "temperature": 0.5}


class FeatureEncoder(nn.Module):
    """Single-channel CNN encoder: ``(N, 1, R, R) -> (N, feature_dim)``; R a power of two >= 16.

    ``project(features)`` is SimCLR's projection head, used only by the training loss.
    """

    def __init__(self, *, resolution: int, width: int = 32, feature_dim: int = 128):
        super().__init__()
        _check_resolution(resolution)
        self.resolution, self.width, self.feature_dim = resolution, width, feature_dim
        layers: list[nn.Module] = []
        channels, size, i = 1, resolution, 0
        while size > 4:
            out = width * min(2 ** i, 8)
            layers += [nn.Conv2d(channels, out, 3, stride=2, padding=1), _norm(out), nn.ReLU()]
            channels, size, i = out, size // 2, i + 1
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(channels, feature_dim)
        self.projection = nn.Sequential(nn.Linear(feature_dim, feature_dim), nn.ReLU(),
                                        nn.Linear(feature_dim, feature_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 1 or x.shape[2:] != (self.resolution, self.resolution):
            raise ValueError(f"FeatureEncoder expects (N, 1, {self.resolution}, "
                             f"{self.resolution}) images, got {tuple(x.shape)}")
        return self.head(self.body(x).mean(dim=(2, 3)))

    def project(self, features: torch.Tensor) -> torch.Tensor:
        return self.projection(features)


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels), channels)


def _check_resolution(resolution: int) -> None:
    if resolution < 16 or resolution & (resolution - 1):
        raise ValueError(f"the feature network needs a power-of-two resolution >= 16, "
                         f"got {resolution}")


# --- augmentations --------------------------------------------------------------------------------

def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One random augmentation per image of ``x`` (N, 1, R, R) (see the module docstring)."""
    n, _, r, _ = x.shape
    u = torch.rand(n, 10, generator=generator, dtype=x.dtype)
    area = 0.5 + 0.5 * u[:, 0]
    log_ratio = math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * u[:, 1]
    sx = torch.sqrt(area * torch.exp(log_ratio)).clamp(max=1.0)
    sy = torch.sqrt(area / torch.exp(log_ratio)).clamp(max=1.0)
    tx = (1 - sx) * (2 * u[:, 2] - 1)
    ty = (1 - sy) * (2 * u[:, 3] - 1)
    flip_x = torch.where(u[:, 4] < 0.5, -1.0, 1.0).to(x.dtype)
    flip_y = torch.where(u[:, 5] < 0.5, -1.0, 1.0).to(x.dtype)
    theta = torch.zeros(n, 2, 3, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 0, 2] = sx * flip_x, tx
    theta[:, 1, 1], theta[:, 1, 2] = sy * flip_y, ty
    grid = F.affine_grid(theta, [n, 1, r, r], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    x = x * (0.8 + 0.4 * u[:, 6]).view(n, 1, 1, 1) + (0.4 * u[:, 7] - 0.2).view(n, 1, 1, 1)
    sigma = torch.where(u[:, 8] < 0.5, 0.1 + 0.9 * u[:, 9], torch.zeros_like(u[:, 9]))
    x = _gaussian_blur(x, sigma)
    noise_sigma = 0.1 * torch.rand(n, 1, 1, 1, generator=generator, dtype=x.dtype)
    return x + noise_sigma * torch.randn(x.shape, generator=generator, dtype=x.dtype)


def _gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-image Gaussian blur with a 5x5 kernel; sigma 0 leaves the image unchanged."""
    n, _, r, _ = x.shape
    offsets = torch.arange(-2, 3, dtype=x.dtype)
    s = sigma.clamp(min=1e-3).view(n, 1)
    k1 = torch.exp(-0.5 * (offsets.view(1, 5) / s) ** 2)
    k1 = k1 / k1.sum(dim=1, keepdim=True)
    kernel = (k1.view(n, 5, 1) * k1.view(n, 1, 5)).view(n, 1, 5, 5)
    padded = F.pad(x.view(1, n, r, r), (2, 2, 2, 2), mode="replicate")
    return F.conv2d(padded, kernel, groups=n).view(n, 1, r, r)


def nt_xent_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's NT-Xent loss: ``z1[i]`` and ``z2[i]`` are the positive pair, the other 2N-2
    embeddings of the batch the negatives; cosine similarity divided by ``temperature``."""
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return F.cross_entropy(sim, target)


# --- training -------------------------------------------------------------------------------------

def _validate_images(images: Any, channel_names: list[str], what: str) -> np.ndarray:
    if not isinstance(images, np.ndarray) or images.ndim != 4:
        raise ValueError(f"{what} must be a numpy array (N, C, H, W), got "
                         f"{getattr(images, 'shape', type(images).__name__)}")
    if len(channel_names) != images.shape[1]:
        raise ValueError(f"{what} has {images.shape[1]} channel(s) but {len(channel_names)} "
                         f"channel name(s) were given: {list(channel_names)}")
    if len(set(channel_names)) != len(channel_names):
        raise ValueError(f"channel names must be unique, got {list(channel_names)}")
    if images.shape[2] != images.shape[3]:
        raise ValueError(f"{what} must be square, got {images.shape[2]}x{images.shape[3]}")
    if images.shape[0] < 1:
        raise ValueError(f"{what} holds no images")
    return images


def pool_images(x: np.ndarray, factor: int) -> np.ndarray:
    """Average-pool the last two axes of ``x`` by ``factor`` (float64)."""
    x = np.asarray(x, dtype=np.float64)
    if factor == 1:
        return x
    *lead, h, w = x.shape
    return x.reshape(*lead, h // factor, factor, w // factor, factor).mean(axis=(-3, -1))


def pooling_factor(resolution: int, max_resolution: int | None) -> int:
    """The smallest power of two that brings ``resolution`` to at most ``max_resolution``."""
    factor = 1
    while max_resolution is not None and resolution // factor > max_resolution:
        factor *= 2
    return factor


def channel_statistics(images: np.ndarray, channel_names: list[str], *, factor: int = 1,
                       chunk: int = 512) -> dict[str, dict[str, float]]:
    """Mean and standard deviation of every channel over all images, after average pooling by
    ``factor`` (float64, chunked)."""
    c = images.shape[1]
    total = np.zeros(c)
    total_sq = np.zeros(c)
    for start in range(0, images.shape[0], chunk):
        block = pool_images(images[start:start + chunk], factor)
        if not np.isfinite(block).all():
            raise ValueError(f"images {start}..{start + len(block) - 1} hold NaN or inf values")
        total += block.sum(axis=(0, 2, 3))
        total_sq += (block ** 2).sum(axis=(0, 2, 3))
    count = images.shape[0] * block.shape[2] * block.shape[3]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean ** 2, 0.0))
    return {name: {"mean": float(mean[i]), "std": float(max(std[i], 1e-8))}
            for i, name in enumerate(channel_names)}


def train_feature_net(images: np.ndarray, channel_names: list[str], *, steps: int = 600,
                      batch_size: int = 128, lr: float = 1e-3, width: int = 32,
                      feature_dim: int = 128, temperature: float = 0.5, seed: int = 0,
                      progress: bool = True, device: str = "cpu",
                      max_resolution: int | None = None
                      ) -> tuple[FeatureEncoder, dict[str, Any]]:
    """Train a :class:`FeatureEncoder` with SimCLR's NT-Xent loss (Chen et al. 2020) on the
    single-channel images of ``images`` (N, C, R, R) (every channel of every image one sample,
    standardised with its channel's training mean/std).

    Each step draws ``batch_size`` samples without replacement, two augmentations of each, and
    takes an Adam step on the NT-Xent loss of their projections. Returns ``(model, info)``;
    ``info`` holds ``channel_stats`` (by channel name), ``config``, ``loss_history`` (one loss per
    step) and ``seconds``. Same seed, same thread count -> same weights (on CPU). ``device``
    (``"cpu"``, ``"cuda"``, ``"auto"``) runs the network there; sampling and augmentations stay
    on the CPU, so the random stream does not depend on the device. The returned model is on
    the CPU. ``max_resolution``: pool larger images down to it (see the module docstring).
    """
    images = _validate_images(images, list(channel_names), "training images")
    n, c, r, _ = images.shape
    _check_resolution(r)
    factor = pooling_factor(r, max_resolution)
    net_resolution = r // factor
    if net_resolution < 16:
        raise ValueError(f"max_resolution {max_resolution} is below the network's minimum of 16")
    for name, value in {"steps": steps, "batch_size": batch_size, "width": width,
                        "feature_dim": feature_dim}.items():
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if n * c < 2:
        raise ValueError("contrastive training needs at least 2 single-channel images, "
                         f"got {n * c}")
    if not temperature > 0 or not lr > 0:
        raise ValueError(f"temperature and lr must be > 0, got {temperature}, {lr}")
    stats = channel_statistics(images, list(channel_names), factor=factor)
    mean = np.array([stats[name]["mean"] for name in channel_names])
    std = np.array([stats[name]["std"] for name in channel_names])
    config = {"resolution": int(net_resolution), "input_resolution": int(r),
              "max_resolution": None if max_resolution is None else int(max_resolution),
              "width": int(width), "feature_dim": int(feature_dim),
              "steps": int(steps), "batch_size": int(batch_size), "lr": float(lr),
              "temperature": float(temperature), "seed": int(seed)}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = FeatureEncoder(resolution=net_resolution, width=width, feature_dim=feature_dim)
    dev = resolve_device(device)
    model.to(dev, memory_format=CHANNELS_LAST)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    batch = min(batch_size, n * c)
    history: list[float] = []
    start = time.perf_counter()
    model.train()
    for _ in tqdm(range(steps), desc="feature net", unit="step", disable=not progress):
        flat = torch.randperm(n * c, generator=generator)[:batch].sort().values.numpy()
        idx_n, idx_c = flat // c, flat % c
        x = pool_images(images[idx_n, idx_c], factor)
        x = (x - mean[idx_c, None, None]) / std[idx_c, None, None]
        x = torch.from_numpy(x.astype(np.float32)).unsqueeze(1)
        v1, v2 = (augment(x, generator).to(dev, memory_format=CHANNELS_LAST) for _ in range(2))
        loss = nt_xent_loss(model.project(model(v1)), model.project(model(v2)), temperature)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history.append(float(loss.detach()))
    model.to("cpu", memory_format=torch.contiguous_format).eval()
    info = {"channel_stats": stats, "config": config, "loss_history": history,
            "seconds": time.perf_counter() - start}
    return model, info


# --- checkpoint -----------------------------------------------------------------------------------

def save_feature_net(path: str | os.PathLike, model: FeatureEncoder, info: dict[str, Any]) -> None:
    """Write the network and its ``info`` as a plain-dict checkpoint, atomically."""
    ckpt = {"kind": KIND, "format_version": FORMAT_VERSION,
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "info": info}
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)


def load_feature_net(path: str | os.PathLike) -> tuple[FeatureEncoder, dict[str, Any]]:
    """Read a checkpoint written by :func:`save_feature_net` (``weights_only=True``).

    Raises :class:`~medgan.errors.InputError` naming ``path`` if it is missing, not a torch file,
    or not a feature-network checkpoint.
    """
    ckpt = load_checkpoint(path, required=("kind", "state_dict", "info"))
    if ckpt["kind"] != KIND:
        raise InputError(path, f"not a feature-network checkpoint (kind {ckpt['kind']!r}, "
                               f"expected {KIND!r})")
    info = ckpt["info"]
    try:
        cfg = info["config"]
        model = FeatureEncoder(resolution=int(cfg["resolution"]), width=int(cfg["width"]),
                               feature_dim=int(cfg["feature_dim"]))
        model.load_state_dict(ckpt["state_dict"])
        _ = info["channel_stats"]
    except (KeyError, TypeError, RuntimeError, ValueError) as err:
        raise InputError(path, f"corrupt feature-network checkpoint ({type(err).__name__}: "
                               f"{str(err).splitlines()[0] if str(err) else ''})") from err
    model.eval()
    return model, info


# --- features -------------------------------------------------------------------------------------

def extract_features(model: FeatureEncoder, info: dict[str, Any], images: np.ndarray,
                     channel_names: list[str], *, batch_size: int = 256,
                     device: str = "cpu") -> np.ndarray:
    """Features of ``images`` (N, C, R, R): the concatenation, in ``channel_names`` order, of
    the encoder's ``feature_dim`` outputs for every channel, each channel standardised with
    the training statistics stored under its name. Returns float64 (N, C * feature_dim)."""
    channel_names = list(channel_names)
    images = _validate_images(images, channel_names, "images")
    stats = info["channel_stats"]
    unknown = [name for name in channel_names if name not in stats]
    if unknown:
        raise ValueError(f"the feature network was not trained on channel(s) {unknown} "
                         f"(it knows {sorted(stats)})")
    input_resolution = int(info["config"].get("input_resolution", model.resolution))
    if images.shape[2] != input_resolution:
        raise ValueError(f"the feature network was trained on {input_resolution} px images, "
                         f"these are {images.shape[2]} px")
    factor = input_resolution // model.resolution
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = images.shape[0]
    out = np.empty((n, len(channel_names) * model.feature_dim), dtype=np.float64)
    was_training = model.training
    dev = resolve_device(device)
    model.to(dev, memory_format=CHANNELS_LAST).eval()
    try:
        with torch.no_grad():
            for ci, name in enumerate(channel_names):
                mean, std = stats[name]["mean"], stats[name]["std"]
                for start in range(0, n, batch_size):
                    block = pool_images(images[start:start + batch_size, ci], factor)
                    if not np.isfinite(block).all():
                        raise ValueError(f"images {start}..{start + len(block) - 1} hold NaN "
                                         "or inf values")
                    x = torch.from_numpy(((block - mean) / std).astype(np.float32)).unsqueeze(1)
                    cols = slice(ci * model.feature_dim, (ci + 1) * model.feature_dim)
                    x = x.to(dev, memory_format=CHANNELS_LAST)
                    out[start:start + len(block), cols] = model(x).double().cpu().numpy()
    finally:
        model.to("cpu", memory_format=torch.contiguous_format).train(was_training)
    return out
