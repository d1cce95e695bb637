"""Fundus photographs for Beers et al. 2018, one photo at a time: field of view, segmenter
preprocessing, optic disc and laterality (the prepared dataset is
:mod:`medgan.data.preprocess.fundus`).

Segmenter preprocessing (Beers sec. 2.1: "converting images to grayscale and applying gamma
adjustment and CLAHE"; the details follow retina-unet, the U-net code Beers et al. used):

1. grayscale = *luminance* ``0.299 R + 0.587 G + 0.114 B`` (retina-unet's ``rgb2gray``; the
   paper does not say, and the green channel is *not* what its code used);
2. min-max normalisation to [0, 1] inside the field of view (retina-unet z-scores over the
   dataset and then min-max scales each image, which is the same per-image result);
3. CLAHE, :func:`skimage.exposure.equalize_adapthist` with ``clahe_kernel`` px tiles (None =
   1/8 of the image side, i.e. retina-unet's 8x8 tile grid) and clip limit ``clahe_clip``
   (default 2/256 = 0.0078125: OpenCV's ``clipLimit=2.0`` counts per bin of 256, skimage's
   limit is a fraction of the tile's pixels);
4. gamma: ``out = in ** (1 / gamma)`` with ``gamma = 1.2`` (retina-unet's ``adjust_gamma``
   convention: gamma > 1 brightens). The paper lists gamma before CLAHE; its code applies
   CLAHE first, which is followed here;
5. everything outside the field of view set to 0.

Photos are first resized to ``resolution`` x ``resolution`` (Beers: 512): ``aspect="stretch"``
resizes as the paper did (a 640x480 photo is squeezed), ``"pad"`` pads the short side with black
first. The field of view is the release's mask file, or estimated by thresholding the smoothed
luminance (:func:`estimate_fov`).

Laterality convention: photos are viewed as the camera shows the eye, facing the patient, not
mirrored. The optic disc lies nasal to the macula, so in a macula-centred photo of the *right*
eye (OD) the disc is on the image's *right* and in a left eye (OS) on its left.
:func:`estimate_laterality` finds the disc as the brightest compact blob where vessels converge
and returns the eye whose convention matches the disc's side of the field-of-view centre.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from scipy import ndimage

from medgan.data.readers.fundus import FundusRecord, read_fundus_record
from medgan.errors import InputError

LUMINANCE_WEIGHTS = (0.299, 0.587, 0.114)
ASPECTS = ("stretch", "pad")
DEFAULT_RESOLUTION = 512
DEFAULT_GAMMA = 1.2
DEFAULT_CLAHE_CLIP = 2.0 / 256
CHANNELS = ("R", "G", "B", "vessels")
LATERALITY_CONVENTION = ("photos viewed facing the patient (not mirrored): the optic disc is on "
                         "the image's right in a right eye (R, OD), on its left in a left eye "
                         "(L, OS)")


def luminance(image: np.ndarray) -> np.ndarray:
    """Grayscale ``0.299 R + 0.587 G + 0.114 B`` of an (H, W, 3) image, float32."""
    return (np.asarray(image, dtype=np.float32) @ np.asarray(LUMINANCE_WEIGHTS, np.float32))


def estimate_fov(image: np.ndarray, *, min_fraction: float = 0.05) -> np.ndarray:
    """The field of view of a photo (H, W, 3) in [0, 1]: the largest bright connected region.

    Threshold: 0.2 x the 99th percentile of the (sigma 1 px) smoothed luminance, at least 0.03;
    holes are filled. ``ValueError`` when the region covers less than ``min_fraction`` of the
    image (a black or nearly black photo). On DRIVE this matches the mask files to IoU > 0.98.
    """
    lum = ndimage.gaussian_filter(luminance(image), 1.0)
    threshold = max(0.03, 0.2 * float(np.percentile(lum, 99)))
    mask = ndimage.binary_fill_holes(lum > threshold)
    labels, n = ndimage.label(mask)
    if n == 0:
        raise ValueError("no field of view found: the image is black")
    sizes = ndimage.sum(mask, labels, range(1, n + 1))
    mask = labels == (1 + int(np.argmax(sizes)))
    if mask.mean() < min_fraction:
        raise ValueError(f"no field of view found: the bright region covers only "
                         f"{100 * mask.mean():.1f}% of the image")
    return mask


def fit_to_square(array: np.ndarray, resolution: int | None, *, aspect: str = "stretch",
                  mask: bool = False) -> np.ndarray:
    """Resize an (H, W) or (H, W, C) array to ``resolution`` square (None: unchanged).

    ``aspect="pad"`` first pads the short side symmetrically with zeros. Images are resized
    bilinearly with anti-aliasing; ``mask=True`` resizes the coverage and thresholds at 0.5.
    """
    if aspect not in ASPECTS:
        raise ValueError(f"aspect must be one of {ASPECTS}, got {aspect!r}")
    if resolution is None:
        return array
    from skimage.transform import resize

    arr = np.asarray(array, dtype=np.float32)
    if aspect == "pad":
        h, w = arr.shape[:2]
        side = max(h, w)
        pad = [((side - h) // 2, side - h - (side - h) // 2),
               ((side - w) // 2, side - w - (side - w) // 2)] + [(0, 0)] * (arr.ndim - 2)
        arr = np.pad(arr, pad)
    shape = (resolution, resolution) + arr.shape[2:]
    out = resize(arr, shape, order=1, anti_aliasing=min(arr.shape[:2]) > resolution,
                 preserve_range=True).astype(np.float32)
    return out > 0.5 if mask else out


class FundusSample(NamedTuple):
    """One photo resized for segmentation: image (H, W, 3) in [0, 1], masks bool (H, W)."""

    image: np.ndarray
    fov: np.ndarray
    vessels: np.ndarray | None
    fov_source: str  # "file" | "estimated"


def load_fundus_sample(record: FundusRecord, *, resolution: int | None = DEFAULT_RESOLUTION,
                       aspect: str = "stretch") -> FundusSample:
    """Read a record's photo and masks, estimate a missing field of view, resize all three."""
    data = read_fundus_record(record)
    fov, fov_source = data["fov"], "file"
    if fov is None:
        try:
            fov = estimate_fov(data["image"])
        except ValueError as err:
            raise InputError(record.image, str(err)) from err
        fov_source = "estimated"
    image = fit_to_square(data["image"], resolution, aspect=aspect)
    fov = fit_to_square(fov, resolution, aspect=aspect, mask=True)
    vessels = data["vessels"]
    if vessels is not None:
        vessels = fit_to_square(vessels, resolution, aspect=aspect, mask=True) & fov
    if not fov.any():
        raise InputError(record.fov or record.image, "the field of view vanishes when resized "
                                                      f"to {resolution} px")
    return FundusSample(np.clip(image, 0.0, 1.0) * fov[..., None], fov, vessels, fov_source)


def preprocess_for_vessel_segmentation(image: np.ndarray, fov: np.ndarray | None = None, *,
                                       gamma: float = DEFAULT_GAMMA,
                                       clahe_clip: float = DEFAULT_CLAHE_CLIP,
                                       clahe_kernel: int | None = None) -> np.ndarray:
    """The U-net's input: luminance, normalised in the FOV, CLAHE, gamma; 0 outside the FOV.

    ``image`` is (H, W, 3) RGB or (H, W) gray in [0, 1]; ``fov`` a bool mask (None: all).
    Returns float32 (H, W) in [0, 1]. A constant field of view gives all zeros.
    """
    from skimage.exposure import equalize_adapthist

    if gamma <= 0:
        raise ValueError(f"gamma must be positive, got {gamma}")
    if not 0 < clahe_clip <= 1:
        raise ValueError(f"clahe_clip must be in (0, 1], got {clahe_clip}")
    image = np.asarray(image, dtype=np.float32)
    gray = luminance(image) if image.ndim == 3 else image
    fov = np.ones(gray.shape, bool) if fov is None else np.asarray(fov, dtype=bool)
    if fov.shape != gray.shape:
        raise ValueError(f"fov shape {fov.shape} differs from the image's {gray.shape}")
    if not fov.any():
        return np.zeros(gray.shape, np.float32)
    lo, hi = float(gray[fov].min()), float(gray[fov].max())
    if hi - lo < 1e-6:
        return np.zeros(gray.shape, np.float32)
    gray = np.clip((gray - lo) / (hi - lo), 0.0, 1.0) * fov
    eq = equalize_adapthist(gray, kernel_size=clahe_kernel, clip_limit=clahe_clip, nbins=256)
    out = np.clip(eq, 0.0, 1.0) ** (1.0 / gamma)
    return (out * fov).astype(np.float32)


class OpticDisc(NamedTuple):
    """The optic disc found in a photo: centre (row, col) in pixels, the image side it lies on
    ("L"/"R" = the eye by :data:`LATERALITY_CONVENTION`) and a confidence in [0, 1]."""

    row: float
    col: float
    side: str
    confidence: float


def _smooth_in(img: np.ndarray, fov: np.ndarray, sigma: float) -> np.ndarray:
    num = ndimage.gaussian_filter(img * fov, sigma)
    den = ndimage.gaussian_filter(fov.astype(np.float32), sigma)
    return num / np.maximum(den, 1e-6)


def locate_optic_disc(image: np.ndarray, fov: np.ndarray, *,
                      vessels: np.ndarray | None = None) -> OpticDisc:
    """Find the optic disc: the brightest compact blob where the vessels converge.

    The score is the sum of two standardised maps inside the (slightly eroded) field of view:
    a difference of Gaussians of the luminance (sigmas 0.5 and 3 disc radii; disc radius taken
    as 0.15 of the FOV radius), and the local vessel density (Gaussian, one disc radius) of
    ``vessels`` (a probability map or mask; None: Sato's ridge filter on the green channel).
    The side is the disc's side of the FOV centroid; the confidence is how far the best score
    on that side rises above the best score on the other side, relative to the median score.
    Works at a scale where the FOV radius is about 128 px; coordinates are the input's.
    """
    from skimage.filters import sato
    from skimage.transform import resize

    image = np.asarray(image, dtype=np.float32)
    fov = np.asarray(fov, dtype=bool)
    if image.ndim != 3 or image.shape[2] != 3 or fov.shape != image.shape[:2]:
        raise ValueError(f"expected an (H, W, 3) image and an (H, W) fov, got {image.shape} "
                         f"and {fov.shape}")
    if fov.sum() < 16:
        raise ValueError("the field of view is (nearly) empty")
    radius = np.sqrt(fov.sum() / np.pi)
    scale = min(1.0, 128.0 / radius)
    if scale < 1.0:
        shape = tuple(max(8, round(s * scale)) for s in fov.shape)
        image = resize(image, shape + (3,), order=1, anti_aliasing=True).astype(np.float32)
        fov = resize(fov.astype(np.float32), shape, order=1) > 0.5
        if vessels is not None:
            vessels = resize(np.asarray(vessels, np.float32), shape, order=1, anti_aliasing=True)
        radius = np.sqrt(fov.sum() / np.pi)
    cx = float(np.nonzero(fov)[1].mean())
    r_disc = 0.15 * radius
    gray = luminance(image)
    band = ndimage.binary_erosion(fov, iterations=max(1, round(0.08 * radius)))
    if vessels is None:
        green = np.where(fov, image[..., 1], np.median(image[..., 1][fov]))
        vessels = sato(green, sigmas=[1, 2, 3], black_ridges=True)
    vessels = np.asarray(vessels, np.float32) * band
    brightness = _smooth_in(gray, fov, 0.5 * r_disc) - _smooth_in(gray, fov, 3 * r_disc)
    density = _smooth_in(vessels, fov, r_disc)
    inner = ndimage.binary_erosion(fov, iterations=max(1, round(0.3 * r_disc)))
    if not inner.any():
        inner = fov

    def standardised(m: np.ndarray) -> np.ndarray:
        v = m[inner]
        return (m - np.median(v)) / (v.std() + 1e-9)

    score = np.where(inner, standardised(brightness) + standardised(density), -np.inf)
    row, col = np.unravel_index(int(np.argmax(score)), score.shape)
    side = "R" if col > cx else "L"
    other = score[:, : int(np.floor(cx)) + 1] if side == "R" else score[:, int(np.ceil(cx)):]
    best, median = float(score[row, col]), float(np.median(score[inner]))
    other_best = float(other.max()) if np.isfinite(other).any() else median
    confidence = float(np.clip((best - other_best) / max(best - median, 1e-9), 0.0, 1.0))
    return OpticDisc(float(row / scale), float(col / scale), side, confidence)


def estimate_laterality(image: np.ndarray, fov: np.ndarray, *,
                        vessels: np.ndarray | None = None) -> tuple[str, float]:
    """``("L" | "R", confidence)`` from the optic disc's side (:func:`locate_optic_disc`)."""
    disc = locate_optic_disc(image, fov, vessels=vessels)
    return disc.side, disc.confidence


def load_segmentation_set(records: Sequence[FundusRecord], *,
                          resolution: int | None = DEFAULT_RESOLUTION, aspect: str = "stretch",
                          gamma: float = DEFAULT_GAMMA, clahe_clip: float = DEFAULT_CLAHE_CLIP,
                          clahe_kernel: int | None = None
                          ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Preprocessed U-net inputs, manual vessel masks and FOV masks of ``records`` (which must
    all have vessel masks; an InputError names the first photo without one)."""
    images, vessels, fovs = [], [], []
    for record in records:
        if record.vessels is None:
            raise InputError(record.image, "no manual vessel mask for this image")
        sample = load_fundus_sample(record, resolution=resolution, aspect=aspect)
        images.append(preprocess_for_vessel_segmentation(
            sample.image, sample.fov, gamma=gamma, clahe_clip=clahe_clip,
            clahe_kernel=clahe_kernel))
        vessels.append(sample.vessels)
        fovs.append(sample.fov)
    return images, vessels, fovs
