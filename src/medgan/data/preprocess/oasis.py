"""Turn an OASIS-1 release (or any folder of skull-stripped T1 volumes) into a prepared 2-D
slice dataset, as Delplace 2019 (section 3.1) trained on: single-channel 256x256 brain
slices scaled to [-1, 1].

The paper says no more than that. Its 11328 images are the size of the University of
Queensland's ``keras_png_slices_data`` set of OASIS-1 axial slices (9664 train + 1120
validate + 544 test PNGs named ``case_NNN_slice_K.nii.png``), which Delplace's code reads and
maps with ``(x - 127.5) / 127.5``. 11328 = 354 x 32, i.e. (our inference, not stated
anywhere) 32 slices per scan, hence the default central band ``0.41 <= z / n_z < 0.59``:
32 of OASIS' 176 axial slices. How the PNGs were cut and scaled is not published; here each
volume is scaled on its own (see :func:`scale_volume`).

For every volume found by :func:`discover_oasis_subjects`: read it (Analyze 7.5 or NIfTI,
LPS canonical), scale it to [-1, 1], take the slices of ``plane`` in the range, drop those
whose brain covers less than ``min_foreground`` of the slice, pad each to a square with the
background and resize it to ``resolution`` px, and append them, one volume at a time, to a
:class:`~medgan.data.prepared.PreparedDatasetWriter` with one channel, ``"T1"``.
"""

from __future__ import annotations

import functools
import numbers
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from medgan.data.preprocess.mri import (
    PLANES,
    background_value,
    extract_slices,
    resize_slices,
    slice_indices,
)
from medgan.data.preprocess.pool import Progress, check_provenance, write_subjects
from medgan.data.readers.analyze import analyze_pair, read_volume, volume_suffix
from medgan.errors import InputError

CHANNEL = "T1"
DEFAULT_PATTERN = "**/*_masked_gfc.img"
_SESSION_ID = re.compile(r"OAS\d_\d{4}_MR\d+")
# keys PreparedDatasetWriter itself puts in dataset.json
_WRITER_KEYS = {"channels", "n_images", "shape", "resolution", "value_range", "channel_stats",
                "medgan_version", "subjects_without_slices"}


def subject_id(path: Path, root: Path) -> str:
    """The subject (session) id of ``path`` under ``root``: an ``OAS1_XXXX_MRn`` name in its
    folders or file name; else the first folder below ``root``; else the file name without
    its suffix."""
    relative = path.relative_to(root)
    match = _SESSION_ID.search(relative.as_posix())
    if match:
        return match.group(0)
    if len(relative.parts) > 1:
        return relative.parts[0]
    return path.name[: -len(volume_suffix(path) or path.suffix)]


def _glob_files(root: Path, pattern: str) -> list[Path]:
    return sorted(p for p in root.glob(pattern) if p.is_file() and not any(
        part.startswith(".") for part in p.relative_to(root).parts))


def _partner_pattern(pattern: str) -> str | None:
    """The pattern of the other half of an Analyze pair (``*.img`` <-> ``*.hdr``), if any."""
    for this, other in ((".img", ".hdr"), (".hdr", ".img")):
        if pattern.lower().endswith(this):
            return pattern[:-4] + (other.upper() if pattern[-4:].isupper() else other)
    return None


def discover_oasis_subjects(root: str | os.PathLike, *,
                            pattern: str = DEFAULT_PATTERN) -> list[tuple[str, Path]]:
    """``(subject_id, path)`` of every file under ``root`` matching the glob ``pattern``
    (relative to ``root``; ``**`` spans folders), sorted by subject id.

    The default matches OASIS-1's skull-stripped, atlas-registered image
    (``.../PROCESSED/MPRAGE/T88_111/*_t88_masked_gfc.img``) and not the ``FSL_SEG``
    segmentation nor the unmasked ``*_t88_gfc.img``. NIfTI works the same way, e.g.
    ``"**/*.nii.gz"``. Hidden files and folders (names starting with ".", e.g. macOS ``._``
    files) are skipped. Subject ids come from :func:`subject_id`.

    Raises :class:`~medgan.errors.InputError` when ``root`` is not a folder, nothing
    matches, a match is not an Analyze/NIfTI file, or two matches share a subject id.
    """
    root = Path(root)
    if not isinstance(pattern, str) or not pattern or Path(pattern).is_absolute():
        raise ValueError(f"pattern must be a glob relative to the root, got {pattern!r}")
    if not root.exists():
        raise InputError(root, "OASIS root folder not found")
    if not root.is_dir():
        raise InputError(root, "OASIS root is not a folder")
    found = _glob_files(root, pattern)
    partner = _partner_pattern(pattern)
    if partner is not None:  # an Analyze half whose other half is missing is an error
        for orphan in _glob_files(root, partner):
            other = analyze_pair(orphan)[0 if orphan.suffix.lower() == ".hdr" else 1]
            if not other.exists():
                kind = "image (.img)" if other.suffix.lower() == ".img" else "header (.hdr)"
                raise InputError(other, f"missing: {orphan.name} has no Analyze 7.5 {kind} "
                                        f"file beside it")
    if not found:
        raise InputError(root, f"no file matches the pattern {pattern!r} under this folder")
    by_subject: dict[str, list[Path]] = {}
    for path in found:
        if volume_suffix(path) is None:
            raise InputError(path, f"matches the pattern {pattern!r} but is not an Analyze "
                                   f"7.5 (.img/.hdr) or NIfTI (.nii, .nii.gz) file")
        by_subject.setdefault(subject_id(path, root), []).append(path)
    for subject, paths in by_subject.items():
        if len(paths) > 1:
            names = ", ".join(str(p.relative_to(root)) for p in paths)
            raise InputError(root, f"the pattern {pattern!r} matches {len(paths)} files of "
                                   f"subject {subject} ({names}); make it match one per subject")
    return sorted(((s, p[0]) for s, p in by_subject.items()), key=lambda item: item[0])


def scale_volume(volume: np.ndarray, *, background: float,
                 max_percentile: float = 100.0) -> np.ndarray:
    """Map a volume linearly to [-1, 1], per volume: ``background`` to -1 and the
    ``max_percentile`` percentile of the brain (the voxels differing from ``background``;
    100 = their maximum) to +1; values outside are clipped. Returns float32.

    The background maps to -1 exactly, so it stays the darkest value and CSF stays
    distinguishable from it. Raises ``ValueError`` when the brain is empty or not brighter
    than the background.
    """
    volume = np.asarray(volume, dtype=np.float32)
    brain = volume[volume != background]
    if brain.size == 0:
        raise ValueError("no brain voxels: every voxel equals the background")
    top = float(np.percentile(brain, max_percentile))
    if top <= background:
        raise ValueError(f"the brain is not brighter than the background ({background:g}): "
                         f"its {max_percentile:g}th percentile is {top:g}")
    scaled = (volume - np.float32(background)) / np.float32(top - background)
    return np.clip(scaled * 2.0 - 1.0, -1.0, 1.0).astype(np.float32)


def pad_slices_to_square(slices: np.ndarray, *, value: float) -> np.ndarray:
    """Pad ``(n, H, W)`` slices with ``value`` on both sides of the shorter axis to square."""
    n, h, w = slices.shape
    size = max(h, w)
    top, left = (size - h) // 2, (size - w) // 2
    out = np.full((n, size, size), value, dtype=slices.dtype)
    out[:, top:top + h, left:left + w] = slices
    return out


def prepare_oasis_volume(path: str | os.PathLike, *, subject: str, plane: str = "axial",
                         slice_start: float = 0.41, slice_stop: float = 0.59,
                         slice_units: str = "fraction", resolution: int = 256,
                         min_foreground: float = 0.05, pad_to_square: bool = True,
                         max_percentile: float = 100.0
                         ) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """One volume's ``(n, 1, resolution, resolution)`` float32 slices in [-1, 1] and their
    meta rows (``subject, slice, plane, source, foreground_fraction``); ``n`` may be 0
    when every slice in the range is (nearly) empty."""
    path = Path(path)
    volume, _ = read_volume(path)
    try:
        background = background_value(volume)
    except ValueError as err:
        raise InputError(path, "no constant background (its 8 corner voxels differ); expected "
                               "a skull-stripped image whose background is one value, such "
                               "as OASIS' *_masked_gfc") from err
    try:
        scaled = scale_volume(volume, background=background, max_percentile=max_percentile)
    except ValueError as err:
        raise InputError(path, str(err)) from err
    brain = volume != background
    del volume

    axis = PLANES.index(plane)
    try:
        indices = slice_indices(scaled.shape[axis], start=slice_start, stop=slice_stop,
                                units=slice_units)
    except ValueError as err:
        raise InputError(path, f"{err} (volume shape {scaled.shape}, {plane} plane)") from err
    fractions = extract_slices(brain, plane=plane, indices=indices).mean(axis=(1, 2))
    keep = fractions >= min_foreground
    indices, fractions = indices[keep], fractions[keep]
    if indices.size == 0:
        return np.zeros((0, 1, resolution, resolution), np.float32), []

    slices = extract_slices(scaled, plane=plane, indices=indices)
    if pad_to_square:
        slices = pad_slices_to_square(slices, value=-1.0)
    images = np.clip(resize_slices(slices, resolution), -1.0, 1.0)[:, np.newaxis]
    rows = [{"subject": subject, "slice": int(i), "plane": plane, "source": str(path),
             "foreground_fraction": round(float(f), 4)}
            for i, f in zip(indices, fractions, strict=True)]
    return images, rows


def prepare_oasis(root: str | os.PathLike, out_dir: str | os.PathLike, *,
                  pattern: str = DEFAULT_PATTERN, plane: str = "axial",
                  slice_start: float = 0.41, slice_stop: float = 0.59,
                  slice_units: str = "fraction", resolution: int = 256,
                  min_foreground: float = 0.05, pad_to_square: bool = True,
                  max_percentile: float = 100.0, provenance: dict[str, Any] | None = None,
                  workers: int = 1, on_bad_case: str = "stop") -> dict[str, Any]:
    """Write ``images.npy`` (N, 1, resolution, resolution), ``meta.tsv`` and ``dataset.json``
    of OASIS slices to ``out_dir``; return the dataset.json content.

    * ``pattern``: glob (relative to ``root``) of the volumes, one per subject
      (:func:`discover_oasis_subjects`); Analyze 7.5 or NIfTI.
    * ``plane``: "axial" (Delplace), "coronal" or "sagittal", of the LPS-canonical volume.
    * ``slice_start``, ``slice_stop``, ``slice_units``: slices ``start <= i < stop`` as
      fractions of the axis ("fraction") or indices ("index"); axial fractions count from
      the inferior end. Default: the central 18 %, 32 of OASIS' 176 axial slices.
    * ``min_foreground``: drop slices whose brain (voxels differing from the background)
      covers less than this fraction of the slice, measured before padding and resizing.
    * ``resolution``: output size in px (Delplace: 256).
    * ``pad_to_square``: pad each slice with the background to a square before resizing,
      keeping the anatomy's aspect ratio (False: stretch it to the square).
    * ``max_percentile``: scaling is per volume (the paper does not say; Delplace's PNGs
      are 8-bit images mapped linearly to [-1, 1]): the background is -1 and this
      percentile of the brain's intensities +1 (100: the brain's maximum), clipped.

    meta.tsv has one row per image: ``subject, slice, plane, source`` (the volume's file)
    and ``foreground_fraction``. dataset.json records the settings, the number of subjects,
    ``subjects_without_slices`` (those whose every slice in the range was dropped) and
    ``provenance``. Bad input raises :class:`~medgan.errors.InputError` naming the file,
    and nothing is left under ``out_dir`` (``on_bad_case="skip"``: the volume is left out and
    listed in ``skipped_cases``). ``workers`` processes read the volumes
    (:mod:`medgan.data.preprocess.pool`); the output is the same for any number.
    """
    root = Path(root)
    _check_settings(plane, slice_units, resolution, min_foreground, max_percentile)
    resolution = int(resolution)
    subjects = discover_oasis_subjects(root, pattern=pattern)
    info: dict[str, Any] = {
        "kind": "oasis",
        "source": str(root),
        "pattern": pattern,
        "n_subjects": len(subjects),
        "orientation": "LPS",
        "plane": plane,
        "slice_range": {"start": slice_start, "stop": slice_stop, "units": slice_units,
                        "stop_exclusive": True},
        "min_foreground": float(min_foreground),
        "pad_to_square": bool(pad_to_square),
        "scaling": {"per": "volume", "to": [-1.0, 1.0], "low": "background (-1)",
                    "high": f"brain intensity percentile {float(max_percentile):g} (+1)",
                    "max_percentile": float(max_percentile), "clipped": True},
    }
    info = check_provenance(info, provenance, _WRITER_KEYS | {"skipped_cases"})
    prepare_one = functools.partial(
        _prepare_subject, plane=plane, slice_start=slice_start, slice_stop=slice_stop,
        slice_units=slice_units, resolution=resolution, min_foreground=min_foreground,
        pad_to_square=pad_to_square, max_percentile=max_percentile)

    def finish(progress: Progress, written: dict[str, Any]) -> None:
        if progress.n_images == 0 and not progress.skipped:
            raise InputError(root, f"no slice of any volume in the range "
                                   f"[{slice_start}, {slice_stop}) ({slice_units}) has "
                                   f"brain covering >= {min_foreground:g} of it")
        written["subjects_without_slices"] = progress.without_images

    return write_subjects(out_dir, subjects, prepare_one, channels=[CHANNEL],
                          resolution=resolution, info=info, names=[s for s, _ in subjects],
                          sources=[p for _, p in subjects], workers=workers,
                          on_bad_case=on_bad_case, desc="prepare_oasis", finish=finish)


def _prepare_subject(subject_path: tuple[str, Path], **settings: Any
                     ) -> tuple[np.ndarray, list[dict[str, Any]]]:
    subject, path = subject_path
    return prepare_oasis_volume(path, subject=subject, **settings)


def _check_settings(plane, slice_units, resolution, min_foreground, max_percentile) -> None:
    if plane not in PLANES:
        raise ValueError(f"plane must be one of {PLANES}, got {plane!r}")
    if slice_units not in ("index", "fraction"):
        raise ValueError(f"slice_units must be 'index' or 'fraction', got {slice_units!r}")
    if not isinstance(resolution, numbers.Integral) or isinstance(resolution, bool) \
            or resolution <= 0:
        raise ValueError(f"resolution must be a positive integer, got {resolution!r}")
    if not isinstance(min_foreground, numbers.Real) or not 0.0 <= min_foreground <= 1.0:
        raise ValueError(f"min_foreground must be a fraction in [0, 1], got {min_foreground!r}")
    if not isinstance(max_percentile, numbers.Real) or not 50.0 < max_percentile <= 100.0:
        raise ValueError(f"max_percentile must be in (50, 100], got {max_percentile!r}")
