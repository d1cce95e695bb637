"""Fundus phantoms: macula-centred retinal photographs with a known vessel tree, seeded.

Written in the DRIVE training set's layout (Staal et al. 2004)::

    <out_dir>/images/21_training.tif        RGB uint8 TIFF
    <out_dir>/1st_manual/21_manual1.gif     vessel mask {0, 255} (the rendered vessel tree)
    <out_dir>/mask/21_training_mask.gif     field-of-view mask {0, 255}
    <out_dir>/phantom_truth.tsv             image, laterality, disc and macula centres (px)

Ids start at 21 as in DRIVE's training set. Each photo is ``size`` px high and
``round(size * 565 / 584)`` wide (DRIVE's aspect) and shows: a circular field of view on black;
an orange fundus with a smooth texture, vignetting and a random illumination gradient; a pale
yellow optic disc; a darker macula near the centre; and a vessel tree grown from the disc —
two temporal arcades curving around the macula, two nasal trunks and two small macular
branches, each branching repeatedly with tapering widths (trunks about 3.5% of the FOV radius)
and stopping short of the fovea — drawn dark red on a 2x supersampled grid. The manual mask is
the tree where it covers at least half a pixel, inside the field of view.

Laterality follows :data:`medgan.data.preprocess.fundus_image.LATERALITY_CONVENTION` (a right eye,
"R",
has its disc on the image's right); photos alternate R, L, R, ... (starting side set by the
seed), and ``phantom_truth.tsv`` records each one, which
:func:`~medgan.data.readers.fundus.discover_fundus_images` reads as laterality source "phantom".
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.special import expit

from medgan.atomic import atomic_dir
from medgan.data.readers.fundus import FOV_DIR, IMAGES_DIR, PHANTOM_TRUTH_FILE, VESSELS_DIR

FIRST_ID = 21
_SUPERSAMPLE = 2
_VESSEL_ABSORPTION = np.array([0.35, 0.72, 0.6], np.float32)  # darkening of R, G, B


def _smooth_field(shape, sigma: float, rng: np.random.Generator) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return (field - field.mean()) / (field.std() + 1e-9)


def _grow_vessel_tree(*, disc: tuple[float, float], macula: tuple[float, float],
                      centre: tuple[float, float], radius: float, side: str,
                      rng: np.random.Generator) -> list[tuple[float, float, float]]:
    """Points (row, col, width) along a branching tree grown from the disc (pixel units)."""
    mirror = 1.0 if side == "R" else -1.0  # R: temporal (towards the macula) is the image's left

    def angle(theta: float) -> float:  # theta for a right eye -> theta for this eye
        return theta if mirror > 0 else np.pi - theta

    w0 = 0.035 * radius * rng.uniform(0.9, 1.1)
    k = 1.0 / radius
    trunks = [  # (angle, curvature, width)  angle 0 = +x, pi/2 = down (image rows)
        (angle(-np.pi / 2 - 0.35), -mirror * 1.1 * k, w0),  # superior temporal arcade
        (angle(np.pi / 2 + 0.35), mirror * 1.1 * k, w0),  # inferior temporal arcade
        (angle(-np.pi / 2 + 0.7), mirror * 0.3 * k, 0.8 * w0),  # superior nasal
        (angle(np.pi / 2 - 0.7), -mirror * 0.3 * k, 0.8 * w0),  # inferior nasal
        (angle(np.pi - 0.25), 0.0, 0.45 * w0),  # macular branches
        (angle(np.pi + 0.25), 0.0, 0.45 * w0),
    ]
    stack = [(disc[0], disc[1], th + rng.normal(0, 0.1), kap, w, 0.0) for th, kap, w in trunks]
    points: list[tuple[float, float, float]] = []
    w_min, n_branches = 0.45, 0
    while stack and n_branches < 300:
        y, x, theta, kappa, width, travelled = stack.pop()
        n_branches += 1
        next_branch = rng.uniform(0.12, 0.3) * radius
        since = 0.0
        while width >= w_min and travelled < 2.5 * radius:
            if np.hypot(y - centre[0], x - centre[1]) > radius - 0.5:
                break
            if np.hypot(y - macula[0], x - macula[1]) < 0.1 * radius:
                break
            points.append((y, x, width))
            step = max(0.4, width / 3)
            theta += kappa * step + rng.normal(0.0, 0.04) * np.sqrt(step)
            y += step * np.sin(theta)
            x += step * np.cos(theta)
            width *= 1.0 - 0.12 * step / radius
            travelled += step
            since += step
            if since >= next_branch:
                since, next_branch = 0.0, rng.uniform(0.12, 0.3) * radius * (width / w0) ** 0.3
                child_w = width * rng.uniform(0.45, 0.7)
                width *= rng.uniform(0.8, 0.95)
                turn = rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.1)
                stack.append((y, x, theta + turn, rng.normal(0, 0.8) * k, child_w, travelled))
    return points


def _render_vessels(points, shape: tuple[int, int], w0: float) -> tuple[np.ndarray, np.ndarray]:
    """(coverage, darkness) in [0, 1] at ``shape`` from disks drawn on a supersampled grid."""
    from skimage.draw import disk

    ss = _SUPERSAMPLE
    big = (shape[0] * ss, shape[1] * ss)
    cover = np.zeros(big, np.float32)
    dark = np.zeros(big, np.float32)
    for y, x, w in points:
        rr, cc = disk((y * ss + (ss - 1) / 2, x * ss + (ss - 1) / 2), max(0.5, w * ss / 2),
                      shape=big)
        cover[rr, cc] = 1.0
        dark[rr, cc] = np.maximum(dark[rr, cc], 0.45 + 0.55 * min(1.0, w / w0))
    cover = cover.reshape(shape[0], ss, shape[1], ss).mean(axis=(1, 3))
    dark = dark.reshape(shape[0], ss, shape[1], ss).mean(axis=(1, 3))
    return cover, dark


def fundus_phantom(*, size: int = 256, side: str = "R",
                   rng: np.random.Generator) -> dict[str, Any]:
    """One phantom: ``image`` (H, W, 3) uint8, ``vessels`` and ``fov`` bool (H, W), and its
    truth (``laterality``, ``disc`` and ``macula`` centres as (row, col), ``disc_radius``)."""
    if side not in ("L", "R"):
        raise ValueError(f"side must be 'L' or 'R', got {side!r}")
    if size < 32:
        raise ValueError(f"size must be at least 32 px, got {size}")
    h, w = size, round(size * 565 / 584)
    mirror = 1.0 if side == "R" else -1.0
    centre = (h / 2 + rng.normal(0, 0.01 * h), w / 2 + rng.normal(0, 0.01 * w))
    radius = 0.47 * min(h, w)
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
    r_norm = np.hypot(rows - centre[0], cols - centre[1]) / radius
    fov = r_norm <= 1.0

    disc = (centre[0] + rng.uniform(-0.2, 0.05) * radius,
            centre[1] + mirror * rng.uniform(0.55, 0.72) * radius)
    disc_radius = rng.uniform(0.12, 0.16) * radius
    macula = (centre[0] + rng.uniform(-0.05, 0.1) * radius,
              centre[1] - mirror * rng.uniform(0.0, 0.08) * radius)

    base = np.array([0.80, 0.42, 0.17], np.float32) * rng.uniform(0.85, 1.1, 3).astype(np.float32)
    texture = 1.0 + 0.05 * _smooth_field((h, w), 0.08 * radius, rng)
    direction = rng.uniform(0, 2 * np.pi)
    gradient = 1.0 + rng.uniform(0.05, 0.2) * (
        np.cos(direction) * (cols - centre[1]) + np.sin(direction) * (rows - centre[0])) / radius
    vignette = 1.0 - 0.45 * np.clip(r_norm, 0, 1) ** 2.5
    img = base * (texture * gradient * vignette)[..., None]

    d_disc = np.hypot(rows - disc[0], cols - disc[1])
    disc_profile = expit((disc_radius - d_disc) / (0.12 * disc_radius))
    cup = np.exp(-0.5 * (d_disc / (0.4 * disc_radius)) ** 2)
    disc_colour = np.array([1.0, 0.82, 0.5], np.float32) * rng.uniform(0.9, 1.0)
    mix = (0.75 * disc_profile)[..., None]
    img = img * (1 - mix) + disc_colour * mix + 0.08 * cup[..., None]
    d_mac = np.hypot(rows - macula[0], cols - macula[1]) / radius
    macula_dark = 0.35 * np.exp(-0.5 * (d_mac / 0.17) ** 2) + 0.1 * np.exp(-0.5 * (d_mac / 0.04)
                                                                          ** 2)
    img = img * (1.0 - macula_dark[..., None] * np.array([0.6, 1.0, 1.0], np.float32))

    points = _grow_vessel_tree(disc=disc, macula=macula, centre=centre, radius=radius, side=side,
                               rng=rng)
    cover, dark = _render_vessels(points, (h, w), 0.035 * radius)
    img = img * (1.0 - dark[..., None] * _VESSEL_ABSORPTION)
    img = img + rng.normal(0.0, 0.012, img.shape).astype(np.float32)
    img = np.where(fov[..., None], img, 0.01 + 0.005 * rng.standard_normal(img.shape))
    image = np.clip(np.rint(np.clip(img, 0, 1) * 255), 0, 255).astype(np.uint8)
    return {"image": image, "vessels": (cover >= 0.5) & fov, "fov": fov, "laterality": side,
            "disc": disc, "disc_radius": disc_radius, "macula": macula}


def make_fundus_phantoms(out_dir: str | os.PathLike, *, n_images: int = 8, size: int = 256,
                         seed: int = 0) -> list[Path]:
    """Write ``n_images`` phantoms in DRIVE's layout to ``out_dir`` (atomically); returns the
    photo paths. Photo ``i`` depends only on (``seed``, ``i``)."""
    from PIL import Image

    if n_images < 1:
        raise ValueError(f"n_images must be positive, got {n_images}")
    out_dir = Path(out_dir)
    truth = []
    with atomic_dir(out_dir) as tmp:
        for sub in (IMAGES_DIR, VESSELS_DIR, FOV_DIR):
            (tmp / sub).mkdir()
        for i in range(n_images):
            side = "R" if (i + seed) % 2 == 0 else "L"
            ph = fundus_phantom(size=size, side=side, rng=np.random.default_rng([seed, i]))
            key = f"{FIRST_ID + i:02d}"
            Image.fromarray(ph["image"], "RGB").save(tmp / IMAGES_DIR / f"{key}_training.tif")
            Image.fromarray(ph["vessels"].astype(np.uint8) * 255, "L").save(
                tmp / VESSELS_DIR / f"{key}_manual1.gif")
            Image.fromarray(ph["fov"].astype(np.uint8) * 255, "L").save(
                tmp / FOV_DIR / f"{key}_training_mask.gif")
            truth.append({"image": f"{key}_training.tif", "laterality": side,
                          "disc_row": round(ph["disc"][0], 2), "disc_col": round(ph["disc"][1], 2),
                          "disc_radius": round(ph["disc_radius"], 2),
                          "macula_row": round(ph["macula"][0], 2),
                          "macula_col": round(ph["macula"][1], 2)})
        with open(tmp / PHANTOM_TRUTH_FILE, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(truth[0]), delimiter="\t",
                                    lineterminator="\n")
            writer.writeheader()
            writer.writerows(truth)
    return [out_dir / IMAGES_DIR / f"{FIRST_ID + i:02d}_training.tif" for i in range(n_images)]
