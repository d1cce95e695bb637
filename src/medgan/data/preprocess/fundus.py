"""The prepared 4-channel (R, G, B, vessels) fundus dataset of Beers et al. 2018.

Photo-level steps (field of view, segmenter preprocessing, optic disc and laterality) are in
:mod:`medgan.data.preprocess.fundus_image`; the vessel U-net in :mod:`medgan.data.vessels`.
"""

from __future__ import annotations

import numbers
import os
from typing import Any

import numpy as np

from medgan.data.preprocess.fundus_image import (
    ASPECTS,
    CHANNELS,
    DEFAULT_CLAHE_CLIP,
    DEFAULT_GAMMA,
    DEFAULT_RESOLUTION,
    LATERALITY_CONVENTION,
    load_fundus_sample,
    locate_optic_disc,
    preprocess_for_vessel_segmentation,
)
from medgan.data.preprocess.pool import check_provenance, write_subjects
from medgan.data.readers.fundus import discover_fundus_images
from medgan.data.vessels import load_vessel_unet, segment_vessels, vessel_auc
from medgan.errors import InputError

_WRITER_KEYS = {"channels", "n_images", "shape", "resolution", "value_range", "channel_stats",
                "medgan_version"}


def prepare_fundus(root: str | os.PathLike, out_dir: str | os.PathLike, *,
                   unet_checkpoint: str | os.PathLike, resolution: int = DEFAULT_RESOLUTION,
                   aspect: str = "stretch", gamma: float = DEFAULT_GAMMA,
                   clahe_clip: float = DEFAULT_CLAHE_CLIP, clahe_kernel: int | None = None,
                   overlap: int = 8, laterality_table: str | os.PathLike | None = None,
                   vessel_threshold: float | None = None,
                   provenance: dict[str, Any] | None = None,
                   on_bad_case: str = "stop") -> dict[str, Any]:
    """Write the prepared fundus dataset: (N, 4, R, R) float32 R, G, B, vessels in [-1, 1].

    For each photo under ``root`` (:func:`~medgan.data.readers.fundus.discover_fundus_images`),
    one at a time: resize to ``resolution`` (``aspect``), preprocess for the U-net (``gamma``,
    ``clahe_clip``, ``clahe_kernel``), segment the vessels with the U-net of
    ``unet_checkpoint`` on 48x48 patches overlapping by ``overlap`` px, locate the optic disc.
    RGB is ``2 x - 1`` of the [0, 1] photo (black, -1, outside the field of view), the vessel
    channel ``2 p - 1`` of the U-net's probability p, or with ``vessel_threshold`` t a binary
    map, 1 where p > t and -1 elsewhere (Beers' group's qtim_ROP prepare_GAN.py: vessel masks
    thresholded at 0.4 for the GAN). The preprocessing settings must be those
    the U-net was trained with (else InputError naming the checkpoint).

    meta.tsv, one row per photo: ``image`` (id), ``source`` (file), ``laterality`` and
    ``laterality_source`` (``table`` from ``laterality_table``, ``phantom`` from a phantom's
    truth file, else ``estimated``), ``laterality_estimated`` and ``laterality_confidence``
    (always computed), ``disc_row``/``disc_col`` (estimated disc centre, px of the prepared
    image), ``fov_source`` (``file``/``estimated``) and ``vessel_auc`` (U-net vs the manual
    mask inside the FOV when the photo has one, else empty). ``on_bad_case="skip"`` leaves
    out an unreadable photo (listed in ``skipped_cases``). Returns the dataset.json content.
    """
    if not isinstance(resolution, numbers.Integral) or isinstance(resolution, bool) \
            or resolution < 16:
        raise ValueError(f"resolution must be an integer >= 16, got {resolution!r}")
    if aspect not in ASPECTS:
        raise ValueError(f"aspect must be one of {ASPECTS}, got {aspect!r}")
    resolution = int(resolution)
    if vessel_threshold is not None and not (
            isinstance(vessel_threshold, numbers.Real) and 0 < vessel_threshold < 1):
        raise ValueError(f"vessel_threshold must be null or in (0, 1), got {vessel_threshold!r}")
    model, ckpt = load_vessel_unet(unet_checkpoint)
    settings = {"gamma": float(gamma), "clahe_clip": float(clahe_clip),
                "clahe_kernel": clahe_kernel}
    trained = ckpt["preprocessing"]
    _check_unet_settings(unet_checkpoint, settings, trained)
    records = discover_fundus_images(root, laterality_table=laterality_table)
    info = {
        "kind": "fundus",
        "source": str(root),
        "n_subjects": len(records),
        "rgb_scaling": "2 * x - 1 of the photo in [0, 1]; -1 outside the field of view",
        "vessel_scaling": ("2 * p - 1 of the U-net's vessel probability p"
                           if vessel_threshold is None else
                           f"1 where the U-net's vessel probability p > {vessel_threshold}, "
                           "else -1"),
        "aspect": aspect,
        "grayscale": "luminance 0.299 R + 0.587 G + 0.114 B",
        "gamma": float(gamma), "gamma_convention": "out = in ** (1 / gamma)",
        "clahe_clip": float(clahe_clip), "clahe_kernel": clahe_kernel,
        "unet_checkpoint": str(unet_checkpoint), "unet_config": ckpt["config"],
        "unet_trained_resolution": trained.get("resolution"),
        "patch_size": int(ckpt["patch_size"]), "patch_overlap": int(overlap),
        "laterality_table": None if laterality_table is None else str(laterality_table),
        "laterality_convention": LATERALITY_CONVENTION,
    }
    info = check_provenance(info, provenance, _WRITER_KEYS | {"skipped_cases"})
    counts = {"table": 0, "phantom": 0, "estimated": 0}

    def prepare_one(record: Any) -> tuple[np.ndarray, list[dict[str, Any]]]:
        images, row = _fundus_photo(record, model, resolution=resolution, aspect=aspect,
                                    settings=settings, patch_size=int(ckpt["patch_size"]),
                                    overlap=overlap, vessel_threshold=vessel_threshold)
        counts[row["laterality_source"]] += 1
        return images, [row]

    return write_subjects(
        out_dir, records, prepare_one, channels=list(CHANNELS), resolution=resolution,
        info=info, names=[r.image_id for r in records], sources=[r.image for r in records],
        on_bad_case=on_bad_case, desc="prepare_fundus",
        finish=lambda progress, written: written.update(laterality_sources=counts))


def _check_unet_settings(checkpoint: str | os.PathLike, settings: dict[str, Any],
                         trained: dict[str, Any]) -> None:
    """InputError naming the checkpoint if the U-net was trained with other settings."""
    differ = {k: (v, trained.get(k)) for k, v in settings.items()
              if trained.get(k) != v and not (isinstance(v, float) and isinstance(
                  trained.get(k), float) and abs(v - trained[k]) < 1e-9)}
    if differ:
        raise InputError(checkpoint, "the U-net was trained with other preprocessing "
                                     "(setting: (asked, trained)): " + ", ".join(
                                         f"{k}: {v}" for k, v in differ.items()))


def _fundus_photo(record: Any, model: Any, *, resolution: int, aspect: str,
                  settings: dict[str, Any], patch_size: int, overlap: int,
                  vessel_threshold: float | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """One photo's (1, 4, R, R) image in [-1, 1] and its meta row."""
    sample = load_fundus_sample(record, resolution=resolution, aspect=aspect)
    seg_input = preprocess_for_vessel_segmentation(sample.image, sample.fov, **settings)
    prob = segment_vessels(model, seg_input, sample.fov, patch_size=patch_size,
                           overlap=overlap)
    disc = locate_optic_disc(sample.image, sample.fov, vessels=prob)
    auc = ""
    if sample.vessels is not None and 0 < sample.vessels[sample.fov].mean() < 1:
        auc = round(vessel_auc(prob, sample.vessels, sample.fov), 5)
    vessels = prob if vessel_threshold is None else (prob > vessel_threshold)
    stack = np.concatenate([sample.image.transpose(2, 0, 1),
                            vessels[None].astype(np.float64)], axis=0)
    return (2.0 * stack - 1.0)[None].astype(np.float32), {
        "image": record.image_id, "source": str(record.image),
        "laterality": record.laterality or disc.side,
        "laterality_source": record.laterality_source or "estimated",
        "laterality_estimated": disc.side,
        "laterality_confidence": round(disc.confidence, 4),
        "disc_row": round(disc.row, 1), "disc_col": round(disc.col, 1),
        "fov_source": sample.fov_source, "vessel_auc": auc}
