"""Control sets whose answer is known, to check that the metrics measure something.

* :func:`structured_images`: a seeded family of brain-like images (an ellipse of smooth texture
  with a ventricle and a few bright lesions on a flat background), so that two draws are two
  samples of one distribution - the stand-in for real data when no data is at hand;
* :func:`control_sets`: from held-out real images, sets that a metric must rank: the real images
  themselves (best), blurred copies and a mode-collapsed set (one image repeated) in between,
  Gaussian noise with the real mean and spread (worst), and, given the training images,
  near-copies of training images (a memorising generator).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def structured_images(n: int, *, resolution: int = 64, channels: int = 1,
                      seed: int = 0) -> np.ndarray:
    """``n`` float32 images (n, channels, resolution, resolution) in about [-1, 1].

    Each image: background -1; an ellipse (random size, position, tilt) filled with smoothed
    noise texture; a dark ellipse inside (a ventricle); 0-3 bright Gaussian blobs (lesions).
    Channels share the anatomy with different contrasts (channel c inverts the ventricle and
    scales the lesions), like MRI sequences of one slice.
    """
    if n < 1 or resolution < 8 or channels < 1:
        raise ValueError(f"need n >= 1, resolution >= 8, channels >= 1; got {n}, {resolution}, "
                         f"{channels}")
    rng = np.random.default_rng(seed)
    r = resolution
    yy, xx = np.mgrid[0:r, 0:r].astype(np.float64) / (r - 1) * 2 - 1
    out = np.full((n, channels, r, r), -1.0, dtype=np.float32)
    for i in range(n):
        cy, cx = rng.uniform(-0.1, 0.1, size=2)
        ay, ax = rng.uniform(0.55, 0.85), rng.uniform(0.45, 0.75)
        t = rng.uniform(-0.4, 0.4)
        y, x = yy - cy, xx - cx
        u, v = np.cos(t) * x + np.sin(t) * y, -np.sin(t) * x + np.cos(t) * y
        head = (u / ax) ** 2 + (v / ay) ** 2 <= 1
        vent = ((u / (0.25 * ax)) ** 2 + ((v + 0.1) / (0.35 * ay)) ** 2) <= 1
        texture = ndimage.gaussian_filter(rng.normal(size=(r, r)), sigma=r / 16)
        texture = 0.3 * texture / (texture.std() + 1e-12)
        lesions = np.zeros((r, r))
        for _ in range(rng.integers(0, 4)):
            py, px = rng.uniform(-0.5, 0.5, size=2) * np.array([ay, ax])
            s = rng.uniform(0.05, 0.15)
            lesions += np.exp(-((u - px) ** 2 + (v - py) ** 2) / (2 * s * s))
        for c in range(channels):
            tissue = 0.1 + texture + (0.6 - 0.3 * c) * lesions * head
            tissue = np.where(vent, -0.6 if c % 2 == 0 else 0.7, tissue)
            out[i, c] = np.where(head, np.clip(tissue, -1, 1), -1.0)
    return out


def control_sets(heldout: np.ndarray, *, train: np.ndarray | None = None, seed: int = 0,
                 blur_sigma: float = 1.5, copy_noise: float = 0.01) -> dict[str, np.ndarray]:
    """Known-answer candidate sets built from held-out real images (N, C, H, W).

    ``real`` (the held-out images), ``blurred`` (Gaussian blur of ``blur_sigma`` px),
    ``collapsed`` (the first held-out image repeated N times), ``noise`` (Gaussian noise with
    each channel's mean and standard deviation) and, if ``train`` is given, ``memorised``
    (N training images drawn with replacement plus ``copy_noise`` x their std of noise).
    """
    heldout = np.asarray(heldout, dtype=np.float32)
    if heldout.ndim != 4 or len(heldout) < 2:
        raise ValueError(f"expected at least 2 images (N, C, H, W), got shape {heldout.shape}")
    rng = np.random.default_rng(seed)
    n = len(heldout)
    mean = heldout.mean(axis=(0, 2, 3), keepdims=True)
    std = heldout.std(axis=(0, 2, 3), keepdims=True)
    sets = {
        "real": heldout,
        "blurred": ndimage.gaussian_filter(heldout, sigma=(0, 0, blur_sigma, blur_sigma)),
        "collapsed": np.repeat(heldout[:1], n, axis=0),
        "noise": (mean + std * rng.normal(size=heldout.shape)).astype(np.float32),
    }
    if train is not None:
        train = np.asarray(train, dtype=np.float32)
        picks = train[rng.integers(0, len(train), size=n)]
        sets["memorised"] = (picks + copy_noise * train.std() *
                             rng.normal(size=picks.shape)).astype(np.float32)
    return sets
