"""Turn a BraTS release into a prepared 2-D slice dataset (Han 2018 section 3.2.1, Beers 2018).

For every case: read the requested sequences (LPS-canonical), z-score each inside the brain
mask, take slices ``slice_start <= i < slice_stop`` of one plane (Han: sagittal #80-#149),
optionally keep only those with a tumour (``min_tumour_px``), resize them to ``resolution`` x
``resolution`` and append them, one case at a time, to a
:class:`~medgan.data.prepared.PreparedDatasetWriter` with one channel per sequence, followed by
Beers 2018's three binary label channels ``edema, necrosis, enhancing`` when
``label_channels`` is true (:mod:`medgan.data.labels`).

Memory is bounded by one case: nothing but the meta rows is kept from one case to the next.
"""

from __future__ import annotations

import functools
import numbers
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medgan.data.labels import LABEL_CHANNELS, LABEL_SCHEMES, check_label_values
from medgan.data.labels import label_channels as label_channel_masks
from medgan.data.preprocess.mri import (
    PLANES,
    apply_zscore,
    brain_mask,
    extract_slices,
    resize_masks,
    resize_slices,
    slice_indices,
    zscore_stats,
)
from medgan.data.preprocess.pool import Progress, check_provenance, write_subjects
from medgan.data.readers.brats import (
    BRATS_SEQUENCES,
    BratsCase,
    discover_brats_cases,
    implied_label_scheme,
    read_brats_case,
    resolve_naming,
)
from medgan.errors import InputError

NORMALIZATIONS = ("zscore", "none")
LABEL_RESIZE = ("each binary label channel is resized like the images (anti-aliased bilinear, "
                "i.e. the fraction of the pixel it covers) and thresholded at > 0.5: values "
                "stay in {0, 1}")
# keys PreparedDatasetWriter itself puts in dataset.json
_WRITER_KEYS = {"channels", "n_images", "shape", "resolution", "value_range", "channel_stats",
                "medgan_version"}


def _check_settings(*, plane, normalize, background, resolution, slice_units, label_channels,
                    label_scheme, min_tumour_px, naming) -> str | None:
    """ValueError for a bad setting; else the label scheme (given, or the naming's)."""
    if plane not in PLANES:
        raise ValueError(f"plane must be one of {PLANES}, got {plane!r}")
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
    if background not in ("min", "zero"):
        raise ValueError(f"background must be 'min' or 'zero', got {background!r}")
    if not isinstance(resolution, numbers.Integral) or isinstance(resolution, bool) \
            or resolution <= 0:
        raise ValueError(f"resolution must be a positive integer, got {resolution!r}")
    if slice_units not in ("index", "fraction"):
        raise ValueError(f"slice_units must be 'index' or 'fraction', got {slice_units!r}")
    if not isinstance(label_channels, bool):
        raise ValueError(f"label_channels must be true or false, got {label_channels!r}")
    if label_scheme is not None and label_scheme not in LABEL_SCHEMES:
        raise ValueError(f"label_scheme must be one of {sorted(LABEL_SCHEMES)} or null, "
                         f"got {label_scheme!r}")
    if not isinstance(min_tumour_px, numbers.Integral) or isinstance(min_tumour_px, bool) \
            or min_tumour_px < 0:
        raise ValueError(f"min_tumour_px must be a non-negative integer, got {min_tumour_px!r}")
    scheme = label_scheme if label_scheme is not None else implied_label_scheme(naming)
    if label_channels and scheme is None:
        raise ValueError("label_channels needs a label_scheme (brats2015, brats2017 or "
                         "brats2023): a custom naming does not imply one")
    return scheme


def prepare_brats(root: str | os.PathLike, out_dir: str | os.PathLike, *,
                  naming: str | Mapping[str, str] = "brats2017",
                  sequences: Sequence[str] = BRATS_SEQUENCES, mask: str | None = None,
                  plane: str = "sagittal", slice_start: float = 80, slice_stop: float = 150,
                  slice_units: str = "index", resolution: int = 64, normalize: str = "zscore",
                  background: str = "min", label_channels: bool = False,
                  label_scheme: str | None = None, min_tumour_px: int = 0,
                  provenance: dict[str, Any] | None = None, workers: int = 1,
                  on_bad_case: str = "stop", **case_filter) -> dict[str, Any]:
    """Write ``images.npy``, ``meta.tsv`` and ``dataset.json`` of BraTS slices to ``out_dir``.

    ``root`` holds one folder per case, named as ``naming`` says (see
    :mod:`medgan.data.readers.brats`). Channels are ``sequences``, in order. The brain mask is the
    case's mask file when ``mask`` (a glob pattern, or the naming's ``mask`` key) is given,
    else every voxel where some sequence differs from its background
    (:func:`~medgan.data.preprocess.mri.brain_mask`). ``normalize="zscore"`` z-scores each sequence
    inside the mask (outside: ``background`` "min" or "zero"); ``"none"`` keeps raw
    intensities. Slices ``slice_start <= i < slice_stop`` (``slice_units`` "index" or
    "fraction") of ``plane`` are resized to ``resolution`` px square.

    Labels (Beers 2018): ``label_channels=True`` appends the channels ``edema``,
    ``necrosis`` (necrosis or non-enhancing tumour) and ``enhancing`` (0/1 each, resized
    without inventing labels: see :func:`~medgan.data.preprocess.mri.resize_masks`); every case
    then needs a label map. ``label_scheme`` (``brats2015|brats2017|brats2023``, see
    :mod:`medgan.data.labels`) says what the label values mean; ``None`` takes the scheme the
    naming preset implies and is an error with a custom naming when label channels are
    asked. Whenever a scheme is known, every label map read is checked against it.
    ``min_tumour_px > 0`` keeps only the slices with at least that many tumour (label > 0)
    pixels before resizing; every case then needs a label map, and selecting no slice at all
    is an error naming ``root``.

    meta.tsv has one row per image: ``subject, slice, plane, source`` (the case folder) and
    ``tumour_px``, the number of labelled (> 0) pixels of the slice before resizing, empty
    when the case has no label file; with label channels also ``edema_px, necrosis_px,
    enhancing_px``. dataset.json records the settings (the label scheme included) and
    ``provenance``. Bad input raises :class:`~medgan.errors.InputError` naming the file, and
    nothing is left under the output names; with ``on_bad_case="skip"`` the case is left out
    instead and listed in dataset.json's ``skipped_cases``. ``workers`` processes prepare the
    cases (:mod:`medgan.data.preprocess.pool`); the output is the same for any number.
    ``case_filter`` (``grades``, ``grade_file``: which tumour grades to keep) goes to
    :func:`discover_brats_cases`. Returns the dataset.json content.
    """
    root = Path(root)
    sequences = list(sequences)
    scheme = _check_settings(plane=plane, normalize=normalize, background=background,
                             resolution=resolution, slice_units=slice_units,
                             label_channels=label_channels, label_scheme=label_scheme,
                             min_tumour_px=min_tumour_px, naming=naming)
    resolution, min_tumour_px = int(resolution), int(min_tumour_px)
    cases = discover_brats_cases(root, naming=naming, sequences=sequences,
                                 label=label_channels or min_tumour_px > 0, mask=mask,
                                 **case_filter)  # grades, grade_file
    info = _brats_info(root, cases, naming=naming, mask=mask, plane=plane,
                       slice_range={"start": slice_start, "stop": slice_stop,
                                    "units": slice_units, "stop_exclusive": True},
                       normalize=normalize, background=background,
                       label_channels=label_channels, label_scheme=label_scheme,
                       scheme=scheme, min_tumour_px=min_tumour_px)
    info = check_provenance(info, provenance, _WRITER_KEYS | {"n_subjects_with_images",
                                                              "skipped_cases"})
    prepare_one = functools.partial(
        prepare_brats_case, sequences=sequences, plane=plane, slice_start=slice_start,
        slice_stop=slice_stop, slice_units=slice_units, resolution=resolution,
        normalize=normalize, background=background, label_channels=label_channels,
        label_scheme=scheme, min_tumour_px=min_tumour_px)

    def finish(progress: Progress, written: dict[str, Any]) -> None:
        if progress.n_images == 0 and not progress.skipped:
            raise InputError(root, f"min_tumour_px={min_tumour_px} selects no slice: the "
                                   f"{plane} slices in the slice range of the {len(cases)} "
                                   f"case(s) have too few tumour pixels; nothing written")
        written["n_subjects_with_images"] = len(progress.with_images)

    return write_subjects(
        out_dir, cases, prepare_one,
        channels=sequences + (list(LABEL_CHANNELS) if label_channels else []),
        resolution=resolution, info=info, names=[c.case_id for c in cases],
        sources=[c.folder for c in cases], workers=workers, on_bad_case=on_bad_case,
        desc="prepare_brats", finish=finish)


def _brats_info(root: Path, cases: list[BratsCase], *, naming, mask, plane, slice_range,
                normalize, background, label_channels, label_scheme, scheme,
                min_tumour_px) -> dict[str, Any]:
    """dataset.json's description of a BraTS preparation's settings."""
    patterns = resolve_naming(naming)
    mask_pattern = mask if mask is not None else patterns.get("mask")
    info = {
        "kind": "brats",
        "source": str(root),
        "naming": naming if isinstance(naming, str) else dict(naming),
        "naming_patterns": patterns,
        "n_subjects": len(cases),
        "plane": plane,
        "slice_range": slice_range,
        "normalize": normalize,
        "background": background,
        "brain_mask": (None if normalize == "none" else f"file {mask_pattern}"
                       if mask_pattern is not None
                       else "voxels differing from the background in any sequence"),
        "n_labelled_subjects": sum(c.label is not None for c in cases),
        "label_channels": label_channels,
        "label_scheme": scheme,
        "label_scheme_source": ("label_scheme" if label_scheme is not None
                                else "naming preset" if scheme is not None else None),
        "min_tumour_px": min_tumour_px,
    }
    if label_channels:
        info["label_channel_values"] = {c: list(LABEL_SCHEMES[scheme].channels[c])
                                        for c in LABEL_CHANNELS}
        info["label_resize"] = LABEL_RESIZE
    return info


def prepare_brats_case(case: BratsCase, *, sequences: Sequence[str], plane: str = "sagittal",
                       slice_start: float = 80, slice_stop: float = 150,
                       slice_units: str = "index", resolution: int = 64,
                       normalize: str = "zscore", background: str = "min",
                       label_channels: bool = False, label_scheme: str | None = None,
                       min_tumour_px: int = 0) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """One case's ``(n, C, resolution, resolution)`` float32 slices and their meta rows.

    ``C`` is ``len(sequences)``, plus 3 label channels when ``label_channels`` is true
    (which needs ``label_scheme``). ``label_scheme``, when given, checks the case's label
    map; ``min_tumour_px > 0`` keeps only slices with that many tumour pixels (``n`` may be
    0). See :func:`prepare_brats`.
    """
    sequences = list(sequences)
    if label_channels and label_scheme is None:
        raise ValueError("label_channels needs a label_scheme")
    has_label = case.label is not None
    if not has_label and (label_channels or min_tumour_px > 0):
        why = "label channels" if label_channels else f"min_tumour_px={min_tumour_px}"
        raise InputError(case.folder, f"{why} requested but the case has no label (seg) file")
    data = read_brats_case(case, sequences=sequences, label=has_label)
    first_file = case.files[sequences[0]]
    shape = data[sequences[0]].shape
    axis = PLANES.index(plane)
    try:
        indices = slice_indices(shape[axis], start=slice_start, stop=slice_stop, units=slice_units)
    except ValueError as err:
        raise InputError(first_file, f"{err} (volume shape {shape}, {plane} plane)") from err

    label_slices = None
    if has_label:
        seg = data.pop("seg")
        if label_scheme is not None:
            try:
                check_label_values(seg, label_scheme)
            except ValueError as err:
                raise InputError(case.label, str(err)) from err
        label_slices = extract_slices(seg, plane=plane, indices=indices)
        del seg
        tumour = np.count_nonzero(label_slices > 0, axis=(1, 2))
        if min_tumour_px > 0:
            keep = tumour >= min_tumour_px
            indices, tumour, label_slices = indices[keep], tumour[keep], label_slices[keep]

    volumes = {s: data.pop(s) for s in sequences}
    mask = data.pop("mask", None)
    del data
    mask_slices = None
    if normalize == "zscore":
        mask = _case_brain_mask(case, volumes, mask, sequences)
        mask_slices = extract_slices(mask, plane=plane, indices=indices)

    n_channels = len(sequences) + (len(LABEL_CHANNELS) if label_channels else 0)
    images = np.empty((len(indices), n_channels, resolution, resolution), dtype=np.float32)
    for c, s in enumerate(sequences):  # one volume at a time, released once sliced
        volume = volumes.pop(s)
        slices = extract_slices(volume, plane=plane, indices=indices)
        if normalize == "zscore":  # statistics of the whole volume, applied to its slices
            try:
                stats = zscore_stats(volume, mask, background=background)
            except ValueError as err:
                raise InputError(case.files[s], str(err)) from err
            slices = apply_zscore(slices, mask_slices, stats)
        del volume
        images[:, c] = resize_slices(slices, resolution)
    rows = [{"subject": case.case_id, "slice": int(i), "plane": plane,
             "source": str(case.folder), "tumour_px": int(tumour[k]) if has_label else ""}
            for k, i in enumerate(indices)]
    if label_channels:
        masks = label_channel_masks(label_slices, label_scheme)
        for k, name in enumerate(LABEL_CHANNELS):
            images[:, len(sequences) + k] = resize_masks(masks[k], resolution)
            for row, n_px in zip(rows, np.count_nonzero(masks[k], axis=(1, 2)), strict=True):
                row[f"{name}_px"] = int(n_px)
    return images, rows


def _case_brain_mask(case: BratsCase, volumes: dict[str, np.ndarray],
                     mask: np.ndarray | None, sequences: list[str]) -> np.ndarray:
    """The case's mask file if it has one, else the voxels off the background anywhere."""
    if mask is not None:
        mask_file = case.mask
    else:
        mask = np.zeros_like(volumes[sequences[0]], dtype=bool)  # the volumes' layout
        for s in sequences:
            try:
                mask |= brain_mask([volumes[s]])
            except ValueError as err:
                raise InputError(case.files[s], str(err)) from err
        mask_file = case.files[sequences[0]]
    if not mask.any():
        raise InputError(mask_file, "the brain mask is empty (no brain voxels)")
    return mask
