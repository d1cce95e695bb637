"""Latent interpolation: images along paths between latent vectors (Kitchen & Seah 2017 Fig. 5,
Delplace 2019 section 3).

Kitchen show "linear interpolation between two lesion images in Z space", T2, ADC and Ktrans
generated together; Delplace interpolate between two random latent vectors to see whether the
model merely remembers training images. A smooth transition means the generator has learned a
continuous representation. Besides the straight line (:func:`lerp`) the great-circle path
(:func:`slerp`, White 2016) is offered: for Gaussian latents it keeps the norm, so the path stays
where the latents the generator was trained on lie (a straight line between two N(0, I) vectors
passes through vectors of unusually small norm).

:func:`plot_interpolation` draws a grid (for each pair and method, one row per channel, the steps
as columns); :func:`write_walk_gif` animates a closed walk through keypoints; :func:`latent_walk`
and :func:`interpolation_figure` do both from a generator checkpoint with seeded latents.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medgan.atomic import atomic_path
from medgan.plotting import _pyplot, channel_windows, save_figure

METHODS = ("linear", "spherical")
PARALLEL_EPS = 1e-7  # sin(angle) below this: the vectors are treated as parallel (lerp)


def lerp(z0: np.ndarray, z1: np.ndarray, t: Any) -> np.ndarray:
    """Linear interpolation ``(1 - t) * z0 + t * z1`` (exactly ``z0`` at t = 0, ``z1`` at t = 1).

    ``z0``, ``z1``: vectors (..., D) of one shape; ``t`` a number or an array of T values, which
    gives (T, ..., D).
    """
    z0, z1, t = _check(z0, z1, t)
    return (1.0 - t) * z0 + t * z1


def slerp(z0: np.ndarray, z1: np.ndarray, t: Any) -> np.ndarray:
    """Spherical linear interpolation along the great circle from ``z0`` to ``z1`` (Shoemake 1985,
    White 2016): ``sin((1 - t) w) / sin(w) * z0 + sin(t w) / sin(w) * z1``, ``w`` the angle
    between them. Exact at the endpoints; when ``|z0| = |z1|`` every point has that norm.
    (Anti)parallel vectors (``sin(w)`` ~ 0) have no unique great circle: :func:`lerp` is used.
    Shapes as :func:`lerp`.
    """
    z0, z1, t = _check(z0, z1, t)
    n0 = np.linalg.norm(z0, axis=-1, keepdims=True)
    n1 = np.linalg.norm(z1, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.sum(z0 * z1, axis=-1, keepdims=True) / (n0 * n1)
    cos = np.clip(np.nan_to_num(cos, nan=1.0), -1.0, 1.0)
    omega = np.arccos(cos)
    sin = np.sin(omega)
    parallel = sin < PARALLEL_EPS
    safe = np.where(parallel, 1.0, sin)
    out = np.sin((1.0 - t) * omega) / safe * z0 + np.sin(t * omega) / safe * z1
    return np.where(parallel, (1.0 - t) * z0 + t * z1, out)


def _check(z0: Any, z1: Any, t: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    z0, z1 = np.asarray(z0, dtype=np.float64), np.asarray(z1, dtype=np.float64)
    if z0.shape != z1.shape or z0.ndim < 1:
        raise ValueError(f"z0 and z1 must be vectors of one shape, got {z0.shape} and {z1.shape}")
    t = np.asarray(t, dtype=np.float64)
    if t.ndim > 1:
        raise ValueError(f"t must be a number or a 1-D array, got shape {t.shape}")
    if not np.isfinite(t).all():
        raise ValueError("t holds NaN or infinite values")
    if t.ndim == 1:
        t = t.reshape(-1, *([1] * z0.ndim))
    return z0, z1, t


def interpolate_latents(z0: np.ndarray, z1: np.ndarray, steps: int, *,
                        method: str = "linear") -> np.ndarray:
    """``steps`` latents from ``z0`` to ``z1`` (both included) at ``t = linspace(0, 1, steps)``:
    (steps, D) for vectors (D,), (P, steps, D) for pairs given as (P, D)."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise ValueError(f"steps must be an integer >= 2, got {steps!r}")
    if method not in METHODS:
        raise ValueError(f"interpolation method must be one of {list(METHODS)}, got {method!r}")
    t = np.linspace(0.0, 1.0, steps)
    path = (lerp if method == "linear" else slerp)(z0, z1, t)  # (steps, ..., D)
    return np.moveaxis(path, 0, -2) if path.ndim > 2 else path


@torch.no_grad()
def _generate(generator: nn.Module, z: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """``G(z)`` (N, C, H, W) float32 for latents (N, D), G in eval mode (restored after)."""
    was_training = generator.training
    generator.eval()
    dev = next(generator.parameters()).device
    try:
        parts = [generator(torch.from_numpy(z[i:i + batch_size].astype(np.float32)).to(dev))
                 .float().cpu().numpy() for i in range(0, z.shape[0], batch_size)]
    finally:
        generator.train(was_training)
    return np.concatenate(parts)


def interpolation_images(generator: nn.Module, pairs_z: np.ndarray, steps: int,
                         method: str = "linear") -> np.ndarray:
    """Images (P, steps, C, H, W) along the ``method`` path of each pair of ``pairs_z``
    (P, 2, latent_dim), generated in eval mode."""
    pairs_z = np.asarray(pairs_z, dtype=np.float64)
    latent_dim = getattr(generator, "latent_dim", None)
    if pairs_z.ndim != 3 or pairs_z.shape[1] != 2 or (latent_dim and pairs_z.shape[2]
                                                       != latent_dim):
        raise ValueError(f"pairs_z must be (P, 2, {latent_dim or 'latent_dim'}), "
                         f"got shape {pairs_z.shape}")
    path = interpolate_latents(pairs_z[:, 0], pairs_z[:, 1], steps, method=method)
    p, s, d = path.shape
    images = _generate(generator, path.reshape(p * s, d))
    return images.reshape(p, s, *images.shape[1:])


def _windows(images: np.ndarray, windows: Sequence[tuple[float, float]] | None,
             n_channels: int) -> list[tuple[float, float]]:
    return channel_windows(images.reshape(-1, n_channels, *images.shape[-2:]), windows)


def plot_interpolation(images: np.ndarray, channel_names: Sequence[str],
                       path: str | os.PathLike, *,
                       windows: Sequence[tuple[float, float]] | None = None,
                       method_names: Sequence[str] = METHODS, title: str | None = None) -> None:
    """A grid of interpolations (Kitchen Fig. 5): ``images`` (M, P, S, C, H, W) for M methods
    (``method_names``) and P pairs of S steps, or (P, S, C, H, W) for one method. For each pair
    and each method one row per channel (e.g. T2, ADC, Ktrans), the steps as columns; each
    channel in one grey window (``windows``, default robust percentiles of all images shown)."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 5:
        images = images[None]
    names, methods = list(channel_names), list(method_names)
    if images.ndim != 6 or images.shape[0] != len(methods) or images.shape[3] != len(names):
        raise ValueError(f"images must be (M={len(methods)} methods, pairs, steps, "
                         f"C={len(names)} channels, H, W), got shape {images.shape}")
    m, p, s, c = images.shape[:4]
    ranges = _windows(images, windows, c)
    plt = _pyplot()
    nrows = p * m * c
    fig, axes = plt.subplots(nrows, s, squeeze=False,
                             figsize=(0.9 * s + 1.2, 0.9 * nrows + (0.6 if title else 0.2)))
    for pair in range(p):
        for k in range(m):
            for ch in range(c):
                r = (pair * m + k) * c + ch
                for col in range(s):
                    ax = axes[r, col]
                    ax.imshow(images[k, pair, col, ch], cmap="gray", vmin=ranges[ch][0],
                              vmax=ranges[ch][1], interpolation="nearest")
                    ax.set_xticks([])
                    ax.set_yticks([])
                    if r == 0:
                        ax.set_title(f"t={col / (s - 1):.2f}" if s > 1 else "", fontsize=6)
                ax0 = axes[r, 0]
                ax0.set_ylabel(f"{pair + 1} {methods[k]}\n{names[ch]}", fontsize=6)
    fig.tight_layout(pad=0.15)
    if title:
        fig.suptitle(title, fontsize=9)
        fig.subplots_adjust(top=1 - 0.6 / fig.get_figheight())  # above the t= column titles
    save_figure(fig, path)


def _frame(image: np.ndarray, ranges: list[tuple[float, float]], scale: int) -> np.ndarray:
    """(C, H, W) -> uint8 (H * scale, C * W * scale): the channels side by side, windowed."""
    parts = []
    for ch, (lo, hi) in enumerate(ranges):
        grey = np.clip((image[ch] - lo) / (hi - lo), 0.0, 1.0)
        parts.append(np.round(grey * 255.0).astype(np.uint8))
    frame = np.concatenate(parts, axis=1)
    return np.kron(frame, np.ones((scale, scale), dtype=np.uint8)) if scale > 1 else frame


def walk_latents(keypoints_z: np.ndarray, frames_per_segment: int) -> np.ndarray:
    """Latents (K * frames_per_segment, D) of a closed slerp walk through K keypoints (K, D):
    segment k runs from keypoint k towards keypoint k + 1 (the last back to the first), its end
    left out as the next segment starts there, so the walk loops without a repeated frame."""
    keypoints_z = np.asarray(keypoints_z, dtype=np.float64)
    if keypoints_z.ndim != 2 or keypoints_z.shape[0] < 2:
        raise ValueError(f"keypoints_z must be (K >= 2, latent_dim), got {keypoints_z.shape}")
    if (isinstance(frames_per_segment, bool) or not isinstance(frames_per_segment, int)
            or frames_per_segment < 1):
        raise ValueError(f"frames_per_segment must be a positive integer, "
                         f"got {frames_per_segment!r}")
    t = np.arange(frames_per_segment) / frames_per_segment
    ends = np.roll(keypoints_z, -1, axis=0)
    path = slerp(keypoints_z, ends, t)  # (F, K, D)
    return np.moveaxis(path, 0, 1).reshape(-1, keypoints_z.shape[1])


def write_walk_gif(generator: nn.Module, keypoints_z: np.ndarray, path: str | os.PathLike, *,
                   frames_per_segment: int = 16,
                   windows: Sequence[tuple[float, float]] | None = None,
                   channel_names: Sequence[str] | None = None, duration_ms: int = 80,
                   scale: int | None = None) -> dict[str, Any]:
    """An animated GIF (looping) of a closed latent walk (:func:`walk_latents`) through
    ``keypoints_z``: K * ``frames_per_segment`` frames of ``duration_ms`` each, every frame the
    channels side by side in grey (``windows`` per channel; default: percentiles of all frames),
    each pixel enlarged ``scale`` times (default: to at least 128 px high). Written atomically.
    Returns ``{"frames", "size", "scale", "channels"}``."""
    from PIL import Image

    if isinstance(duration_ms, bool) or not isinstance(duration_ms, int) or duration_ms < 1:
        raise ValueError(f"duration_ms must be a positive integer, got {duration_ms!r}")
    z = walk_latents(keypoints_z, frames_per_segment)
    images = _generate(generator, z)
    n, c, h, w = images.shape
    names = list(channel_names) if channel_names is not None else [f"ch{i}" for i in range(c)]
    if len(names) != c:
        raise ValueError(f"{c} channels but {len(names)} channel names")
    ranges = _windows(images, windows, c)
    scale = max(1, 128 // h) if scale is None else int(scale)
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    frames = [Image.fromarray(_frame(img, ranges, scale)) for img in images]
    path = Path(path)
    with atomic_path(path, suffix=".gif") as tmp:
        frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:],
                       duration=duration_ms, loop=0, optimize=False, disposal=1)
    return {"frames": n, "size": list(frames[0].size), "scale": scale, "channels": names}


def _checkpoint_latents(checkpoint_path: str | os.PathLike, n: int, seed: int,
                        device: str) -> tuple[nn.Module, dict[str, Any], np.ndarray]:
    from medgan.training.generate import load_generator
    from medgan.training.schedule import draw_latents, latent_distribution

    G, config = load_generator(checkpoint_path, device=device)
    z = draw_latents(n, G.latent_dim, distribution=latent_distribution(config),
                     generator=torch.Generator().manual_seed(seed))
    return G, config, z.numpy().astype(np.float64)


def latent_walk(checkpoint_path: str | os.PathLike, path: str | os.PathLike, *,
                n_keypoints: int = 4, frames_per_segment: int = 16, seed: int = 0,
                duration_ms: int = 80, windows: Sequence[tuple[float, float]] | None = None,
                scale: int | None = None, device: str = "cpu") -> dict[str, Any]:
    """:func:`write_walk_gif` for a generator checkpoint: ``n_keypoints`` keypoints drawn with
    ``seed`` from the run's latent distribution, channel names from its config."""
    if isinstance(n_keypoints, bool) or not isinstance(n_keypoints, int) or n_keypoints < 2:
        raise ValueError(f"n_keypoints must be an integer >= 2, got {n_keypoints!r}")
    G, config, z = _checkpoint_latents(checkpoint_path, n_keypoints, seed, device)
    info = write_walk_gif(G, z, path, frames_per_segment=frames_per_segment, windows=windows,
                          channel_names=config["channels"], duration_ms=duration_ms, scale=scale)
    return {**info, "n_keypoints": n_keypoints, "seed": seed,
            "checkpoint": str(checkpoint_path)}


def interpolation_figure(checkpoint_path: str | os.PathLike, path: str | os.PathLike, *,
                         n_pairs: int = 2, steps: int = 8, methods: Sequence[str] = METHODS,
                         seed: int = 0, windows: Sequence[tuple[float, float]] | None = None,
                         device: str = "cpu") -> np.ndarray:
    """:func:`plot_interpolation` for a generator checkpoint: ``n_pairs`` latent pairs drawn with
    ``seed`` from the run's latent distribution, each interpolated by every method in
    ``methods``. Returns the images (M, P, S, C, H, W)."""
    if isinstance(n_pairs, bool) or not isinstance(n_pairs, int) or n_pairs < 1:
        raise ValueError(f"n_pairs must be a positive integer, got {n_pairs!r}")
    G, config, z = _checkpoint_latents(checkpoint_path, 2 * n_pairs, seed, device)
    pairs = z.reshape(n_pairs, 2, -1)
    images = np.stack([interpolation_images(G, pairs, steps, m) for m in methods])
    plot_interpolation(images, config["channels"], path, windows=windows, method_names=methods,
                       title=f"latent interpolation, {Path(checkpoint_path).parent.name}")
    return images


__all__ = ["METHODS", "interpolate_latents", "interpolation_figure", "interpolation_images",
           "latent_walk", "lerp", "plot_interpolation", "slerp", "walk_latents",
           "write_walk_gif"]
