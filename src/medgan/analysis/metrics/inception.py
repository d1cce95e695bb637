"""Standard FID with a user-provided local Inception-v3 file (never downloaded).

Supported file: the TorchScript Inception-v3 that NVlabs publishes with stylegan2-ada-pytorch
(``inception-2015-12-05.pt``, the TensorFlow FID network converted to TorchScript). As in
stylegan2-ada-pytorch's ``metrics/metric_utils.py`` it is loaded with :func:`torch.jit.load`
and called as ``detector(images, return_features=True)`` on a uint8 tensor ``(N, 3, H, W)``
with values in [0, 255]; it resizes to 299 x 299 itself and returns ``(N, 2048)`` pool features.

Medical images are not RGB photographs in [0, 255]: each channel is mapped to [0, 255] with a
display window ``(lo, hi)`` in the dataset's units (``255 (x - lo) / (hi - lo)``, clipped,
rounded). Either three channels are taken as R, G, B (``rgb_channels``, e.g. Beers 2018's
fundus photos) or every channel is repeated to three (grey) and gets its own FID. Windows must
be the same for the real and the synthetic images, or the FID measures the window.

``torch.jit`` is deprecated in torch 2.x (it warns) but still loads TorchScript archives;
the deprecation warning is silenced here because the file format is what NVlabs publishes.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
import torch

from medgan.analysis.metrics.distribution import frechet_distance
from medgan.errors import InputError

FEATURE_DIM = 2048


def _call(detector: Any, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return detector(x, return_features=True)


def load_inception(path: str | os.PathLike) -> Any:
    """Load the TorchScript Inception-v3 feature detector at ``path`` (CPU, eval mode).

    Raises :class:`~medgan.errors.InputError` naming ``path`` if the file is missing, is not a
    TorchScript archive, or does not map a probe batch of two 3 x 64 x 64 uint8 images to a
    ``(2, 2048)`` feature array.
    """
    if not os.path.isfile(path):
        raise InputError(path, "Inception-v3 file not found (place NVlabs' TorchScript "
                               "inception-2015-12-05.pt there; nothing is downloaded)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            detector = torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(path, f"not a TorchScript file ({first})") from err
    detector.eval()
    try:
        out = _call(detector, torch.zeros(2, 3, 64, 64, dtype=torch.uint8))
    except Exception as err:  # noqa: BLE001 - any failure of the probe means a wrong file
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(path, "the TorchScript module cannot be called as "
                               f"detector(images, return_features=True) ({first})") from err
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, FEATURE_DIM):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise InputError(path, f"not an Inception-v3 feature detector: a probe of 2 images "
                               f"gave {shape}, expected (2, {FEATURE_DIM})")
    return detector


def _check_windows(windows: Any, channels: int) -> list[tuple[float, float]]:
    try:
        pairs = [(float(lo), float(hi)) for lo, hi in windows]
    except (TypeError, ValueError) as err:
        raise ValueError(f"windows must be a list of (lo, hi) pairs, got {windows!r}") from err
    if len(pairs) != channels:
        raise ValueError(f"{len(pairs)} window(s) given for {channels} channel(s)")
    for i, (lo, hi) in enumerate(pairs):
        if not hi > lo:
            raise ValueError(f"window {i} must have hi > lo, got ({lo}, {hi})")
    return pairs


def to_uint8(images: np.ndarray, windows: list[tuple[float, float]]) -> np.ndarray:
    """Map every channel to [0, 255] with its window ``(lo, hi)``, clip and round: uint8."""
    lo = np.array([w[0] for w in windows], dtype=np.float64).reshape(1, -1, 1, 1)
    hi = np.array([w[1] for w in windows], dtype=np.float64).reshape(1, -1, 1, 1)
    scaled = (np.asarray(images, dtype=np.float64) - lo) * (255.0 / (hi - lo))
    return np.rint(np.clip(scaled, 0.0, 255.0)).astype(np.uint8)


def inception_features(detector: Any, images: np.ndarray, windows: list[tuple[float, float]], *,
                       rgb_channels: list[int] | None = None,
                       channel_names: list[str] | None = None,
                       batch_size: int = 64) -> dict[str, np.ndarray]:
    """Inception-v3 pool features (N, 2048) of ``images`` (N, C, H, W), float64.

    Channels are windowed to uint8 (see the module docstring). With ``rgb_channels`` (three
    channel indices) the result is ``{"rgb": features}``; otherwise every channel, repeated to
    three, gives ``{name: features}`` with ``channel_names`` (default ``ch0``, ``ch1``, ...).
    """
    if not isinstance(images, np.ndarray) or images.ndim != 4 or images.shape[0] < 1:
        raise ValueError(f"images must be a numpy array (N, C, H, W) with N >= 1, got "
                         f"{getattr(images, 'shape', type(images).__name__)}")
    n, c = images.shape[:2]
    pairs = _check_windows(windows, c)
    names = list(channel_names) if channel_names is not None else [f"ch{i}" for i in range(c)]
    if len(names) != c:
        raise ValueError(f"{len(names)} channel name(s) given for {c} channel(s)")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if rgb_channels is not None:
        rgb = [int(i) for i in rgb_channels]
        if len(rgb) != 3 or any(not 0 <= i < c for i in rgb):
            raise ValueError(f"rgb_channels must be 3 channel indices in [0, {c}), got "
                             f"{list(rgb_channels)}")
        selections = {"rgb": rgb}
    else:
        selections = {name: [i, i, i] for i, name in enumerate(names)}
    out = {key: np.empty((n, FEATURE_DIM), dtype=np.float64) for key in selections}
    for start in range(0, n, batch_size):
        block = np.asarray(images[start:start + batch_size])
        if not np.isfinite(block).all():
            raise ValueError(f"images {start}..{start + len(block) - 1} hold NaN or inf values")
        block8 = to_uint8(block, pairs)
        for key, idx in selections.items():
            x = torch.from_numpy(np.ascontiguousarray(block8[:, idx]))
            feats = _call(detector, x)
            if tuple(feats.shape) != (len(block), FEATURE_DIM):
                raise ValueError(f"the detector returned {tuple(feats.shape)} for "
                                 f"{len(block)} images, expected ({len(block)}, {FEATURE_DIM})")
            out[key][start:start + len(block)] = feats.double().numpy()
    return out


def inception_fid(detector: Any, real: np.ndarray, fake: np.ndarray,
                  windows: list[tuple[float, float]], channel_names: list[str], *,
                  rgb_channels: list[int] | None = None, batch_size: int = 64
                  ) -> dict[str, float]:
    """FID (Heusel et al. 2017) on Inception-v3 pool features of windowed images.

    Returns ``fid_inception_<name>`` per channel (each channel as a grey image), or
    ``fid_inception_rgb`` with ``rgb_channels``, and ``fid_inception``, their mean. The real
    and fake images must have the same channels; the same ``windows`` are applied to both.
    """
    for what, x in (("real", real), ("fake", fake)):
        if not isinstance(x, np.ndarray) or x.ndim != 4:
            raise ValueError(f"{what} images must be a numpy array (N, C, H, W), got "
                             f"{getattr(x, 'shape', type(x).__name__)}")
        if x.shape[0] < 2:
            raise ValueError(f"FID needs at least 2 {what} images, got {x.shape[0]}")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"real and fake images differ in channels: {real.shape[1]} vs "
                         f"{fake.shape[1]}")
    kw = {"rgb_channels": rgb_channels, "channel_names": channel_names, "batch_size": batch_size}
    real_f = inception_features(detector, real, windows, **kw)
    fake_f = inception_features(detector, fake, windows, **kw)
    out = {f"fid_inception_{key}": frechet_distance(real_f[key], fake_f[key]) for key in real_f}
    out["fid_inception"] = float(np.mean(list(out.values())))
    return out
