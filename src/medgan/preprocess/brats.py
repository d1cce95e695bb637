"""Turn a BraTS release into a prepared 2-D slice dataset (Han 2018 section 3.2.1).

For every case: read the requested sequences (LPS-canonical), z-score each inside the brain
mask, take slices ``slice_start <= i < slice_stop`` of one plane (Han: sagittal #80-#149),
resize them to ``resolution`` x ``resolution`` and append them, one case at a time, to a
:class:`~medgan.prepared.PreparedDatasetWriter` with one channel per sequence.
"""

from __future__ import annotations

import json
import numbers
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medgan.errors import InputError
from medgan.prepared import INFO, PreparedDatasetWriter
from medgan.preprocess.mri import (
    PLANES,
    brain_mask,
    extract_slices,
    resize_slices,
    slice_indices,
    zscore_in_mask,
)
from medgan.readers.brats import (
    BRATS_SEQUENCES,
    BratsCase,
    discover_brats_cases,
    read_brats_case,
    resolve_naming,
)

NORMALIZATIONS = ("zscore", "none")
# keys PreparedDatasetWriter itself puts in dataset.json
_WRITER_KEYS = {"channels", "n_images", "shape", "resolution", "value_range", "channel_stats",
                "medgan_version"}


def prepare_brats(root: str | os.PathLike, out_dir: str | os.PathLike, *,
                  naming: str | Mapping[str, str] = "brats2017",
                  sequences: Sequence[str] = BRATS_SEQUENCES, mask: str | None = None,
                  plane: str = "sagittal", slice_start: float = 80, slice_stop: float = 150,
                  slice_units: str = "index", resolution: int = 64, normalize: str = "zscore",
                  background: str = "min",
                  provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``images.npy``, ``meta.tsv`` and ``dataset.json`` of BraTS slices to ``out_dir``.

    ``root`` holds one folder per case, named as ``naming`` says (see
    :mod:`medgan.readers.brats`). Channels are ``sequences``, in order. The brain mask is the
    case's mask file when ``mask`` (a glob pattern, or the naming's ``mask`` key) is given,
    else every voxel where some sequence differs from its background
    (:func:`~medgan.preprocess.mri.brain_mask`). ``normalize="zscore"`` z-scores each sequence
    inside the mask (outside: ``background`` "min" or "zero"); ``"none"`` keeps raw
    intensities. Slices ``slice_start <= i < slice_stop`` (``slice_units`` "index" or
    "fraction") of ``plane`` are resized to ``resolution`` px square.

    meta.tsv has one row per image: ``subject, slice, plane, source`` (the case folder) and
    ``tumour_px``, the number of labelled (> 0) pixels of the slice before resizing, empty
    when the case has no label file. dataset.json records the settings and ``provenance``.
    Bad input raises :class:`~medgan.errors.InputError` naming the file, and nothing is left
    under the output names. Returns the dataset.json content.
    """
    root = Path(root)
    sequences = list(sequences)
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
    resolution = int(resolution)

    patterns = resolve_naming(naming)
    cases = discover_brats_cases(root, naming=naming, sequences=sequences, label=False, mask=mask)
    mask_pattern = mask if mask is not None else patterns.get("mask")
    info = {
        "kind": "brats",
        "source": str(root),
        "naming": naming if isinstance(naming, str) else dict(naming),
        "naming_patterns": patterns,
        "n_subjects": len(cases),
        "plane": plane,
        "slice_range": {"start": slice_start, "stop": slice_stop, "units": slice_units,
                        "stop_exclusive": True},
        "normalize": normalize,
        "background": background,
        "brain_mask": (None if normalize == "none" else f"file {mask_pattern}"
                       if mask_pattern is not None
                       else "voxels differing from the background in any sequence"),
        "n_labelled_subjects": sum(c.label is not None for c in cases),
    }
    clash = sorted(set(provenance or {}) & (set(info) | _WRITER_KEYS))
    if clash:
        raise ValueError(f"provenance key(s) {clash} would overwrite dataset.json's own")
    info.update(provenance or {})

    from tqdm import tqdm

    with PreparedDatasetWriter(out_dir, channels=sequences, resolution=resolution,
                               info=info) as writer:
        for case in tqdm(cases, desc="prepare_brats", unit="case", disable=None):
            images, rows = prepare_brats_case(
                case, sequences=sequences, plane=plane, slice_start=slice_start,
                slice_stop=slice_stop, slice_units=slice_units, resolution=resolution,
                normalize=normalize, background=background)
            try:
                writer.append(images, rows)
            except ValueError as err:
                raise InputError(case.folder, str(err)) from err
    return json.loads((Path(out_dir) / INFO).read_text())


def prepare_brats_case(case: BratsCase, *, sequences: Sequence[str], plane: str = "sagittal",
                       slice_start: float = 80, slice_stop: float = 150,
                       slice_units: str = "index", resolution: int = 64,
                       normalize: str = "zscore",
                       background: str = "min") -> tuple[np.ndarray, list[dict[str, Any]]]:
    """One case's ``(n, C, resolution, resolution)`` float32 slices and their meta rows."""
    sequences = list(sequences)
    has_label = case.label is not None
    data = read_brats_case(case, sequences=sequences, label=has_label)
    first_file = case.files[sequences[0]]

    volumes = {s: data[s] for s in sequences}
    if normalize == "zscore":
        if "mask" in data:
            mask, mask_file = data["mask"], case.mask
        else:
            mask = np.zeros(volumes[sequences[0]].shape, dtype=bool)
            for s in sequences:
                try:
                    mask |= brain_mask([volumes[s]])
                except ValueError as err:
                    raise InputError(case.files[s], str(err)) from err
            mask_file = first_file
        if not mask.any():
            raise InputError(mask_file, "the brain mask is empty (no brain voxels)")
        for s in sequences:
            try:
                volumes[s] = zscore_in_mask(volumes[s], mask, background=background)
            except ValueError as err:
                raise InputError(case.files[s], str(err)) from err

    shape = volumes[sequences[0]].shape
    axis = PLANES.index(plane)
    try:
        indices = slice_indices(shape[axis], start=slice_start, stop=slice_stop, units=slice_units)
    except ValueError as err:
        raise InputError(first_file, f"{err} (volume shape {shape}, {plane} plane)") from err

    channels = [resize_slices(extract_slices(volumes[s], plane=plane, indices=indices),
                              resolution) for s in sequences]
    images = np.stack(channels, axis=1)
    if has_label:
        label_slices = extract_slices(data["seg"], plane=plane, indices=indices)
        tumour = [int(n) for n in np.count_nonzero(label_slices > 0, axis=(1, 2))]
    else:
        tumour = [""] * len(indices)
    rows = [{"subject": case.case_id, "slice": int(i), "plane": plane, "source": str(case.folder),
             "tumour_px": t} for i, t in zip(indices, tumour, strict=True)]
    return images, rows
