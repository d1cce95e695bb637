"""BraTS releases: file-naming presets, case discovery and reading one case.

A BraTS release is a folder of case folders, one per patient, each holding one NIfTI file
per MRI sequence (and, in the training sets, a tumour label map). The releases name the
files differently; a *naming* maps channel names to glob patterns relative to the case
folder, in which ``{case}`` stands for the case folder's name:

* ``"brats2017"`` (BraTS 2017-2021): ``{case}_t1.nii.gz``, ``{case}_t1ce.nii.gz``,
  ``{case}_t2.nii.gz``, ``{case}_flair.nii.gz``, label ``{case}_seg.nii.gz``;
* ``"brats2023"``: ``{case}-t1n.nii.gz``, ``{case}-t1c.nii.gz``, ``{case}-t2w.nii.gz``,
  ``{case}-t2f.nii.gz``, label ``{case}-seg.nii.gz``;
* a dict ``{channel: pattern}`` for anything else, e.g. BraTS 2015::

      {"T1c": "T1c_*.nii.gz", "FLAIR": "Flair_*.nii.gz", "seg": "OTMultiClass.nii.gz",
       "mask": "brainmask.nii.gz"}

  A dict with a ``"preset"`` key starts from that preset and overrides the keys it gives:
  ``{"preset": "brats2017", "seg": "{case}_Segm.nii.gz"}``.

Channel names are ``T1``, ``T1c``, ``T2``, ``FLAIR`` (the MRI sequences), ``seg`` (the label
map) and ``mask`` (an optional brain-mask file, as BraTS 2015 ships; the ``mask`` argument
of :func:`discover_brats_cases` gives the same and takes precedence).

Each preset implies the label scheme of its releases (:func:`implied_label_scheme`, see
:mod:`medgan.data.labels`): ``brats2017`` -> ``"brats2017"`` (labels 0, 1, 2, 4), ``brats2023`` ->
``"brats2023"`` (0, 1, 2, 3); a custom dict implies its ``"preset"``'s scheme, or none.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medgan.data.readers.brats_grades import case_grades, check_grades, grade_folders
from medgan.data.readers.nifti import read_nifti
from medgan.errors import InputError

BRATS_SEQUENCES = ("T1", "T1c", "T2", "FLAIR")
LABEL_KEY = "seg"
MASK_KEY = "mask"

NAMING_PRESETS: dict[str, dict[str, str]] = {
    "brats2017": {
        "T1": "{case}_t1.nii.gz",
        "T1c": "{case}_t1ce.nii.gz",
        "T2": "{case}_t2.nii.gz",
        "FLAIR": "{case}_flair.nii.gz",
        "seg": "{case}_seg.nii.gz",
    },
    "brats2023": {
        "T1": "{case}-t1n.nii.gz",
        "T1c": "{case}-t1c.nii.gz",
        "T2": "{case}-t2w.nii.gz",
        "FLAIR": "{case}-t2f.nii.gz",
        "seg": "{case}-seg.nii.gz",
    },
}

# label scheme (medgan.data.labels.LABEL_SCHEMES) each naming preset implies
PRESET_LABEL_SCHEMES: dict[str, str] = {"brats2017": "brats2017", "brats2023": "brats2023"}

_AFFINE_ATOL_MM = 1e-3


@dataclass(frozen=True)
class BratsCase:
    """One case folder: its id (the folder name) and the files found for each channel."""

    case_id: str
    folder: Path
    files: dict[str, Path] = field(default_factory=dict)
    label: Path | None = None
    mask: Path | None = None
    grade: str | None = None


def resolve_naming(naming: str | Mapping[str, str]) -> dict[str, str]:
    """The channel -> glob-pattern dict a preset name or a custom naming dict stands for."""
    if isinstance(naming, str):
        if naming not in NAMING_PRESETS:
            raise ValueError(f"unknown BraTS naming preset {naming!r}; presets are "
                             f"{sorted(NAMING_PRESETS)} (or give a dict channel -> pattern)")
        return dict(NAMING_PRESETS[naming])
    if not isinstance(naming, Mapping):
        raise ValueError(f"naming must be a preset name or a dict, got {type(naming).__name__}")
    custom = dict(naming)
    resolved = resolve_naming(custom.pop("preset")) if "preset" in custom else {}
    allowed = (*BRATS_SEQUENCES, LABEL_KEY, MASK_KEY)
    unknown = [k for k in custom if k not in allowed]
    if unknown:
        raise ValueError(f"naming has unknown key(s) {unknown}; keys are {list(allowed)} "
                         f"and 'preset'")
    for key, pattern in custom.items():
        if not isinstance(pattern, str) or not pattern:
            raise ValueError(f"naming pattern for {key!r} must be a non-empty string")
        resolved[key] = pattern
    return resolved


def implied_label_scheme(naming: str | Mapping[str, str]) -> str | None:
    """The label scheme a naming implies: its preset's (:data:`PRESET_LABEL_SCHEMES`), else None.

    A custom dict implies the scheme of its ``"preset"`` key, if it has one.
    """
    preset = naming if isinstance(naming, str) else dict(naming).get("preset")
    return PRESET_LABEL_SCHEMES.get(preset) if isinstance(preset, str) else None


def _check_sequences(sequences: Sequence[str]) -> list[str]:
    sequences = list(sequences)
    if not sequences:
        raise ValueError("no sequences requested")
    bad = [s for s in sequences if s not in BRATS_SEQUENCES]
    if bad:
        raise ValueError(f"unknown sequence(s) {bad}; BraTS sequences are {list(BRATS_SEQUENCES)}")
    if len(set(sequences)) != len(sequences):
        raise ValueError(f"sequences listed twice in {sequences}")
    return sequences


def _match_one(folder: Path, pattern: str, what: str, *, required: bool) -> Path | None:
    """The single file in ``folder`` matching ``pattern`` ({case} = folder name)."""
    concrete = pattern.replace("{case}", glob.escape(folder.name))
    matches = sorted(p for p in folder.glob(concrete) if p.is_file())
    if len(matches) > 1:
        names = ", ".join(p.name for p in matches)
        raise InputError(folder, f"{what} pattern {pattern!r} matches {len(matches)} files "
                                 f"({names}); make it match exactly one")
    if not matches:
        if required:
            raise InputError(folder, f"case has no {what} file matching {pattern!r}")
        return None
    return matches[0]


def discover_brats_cases(root: str | os.PathLike, *, naming: str | Mapping[str, str] = "brats2017",
                         sequences: Sequence[str] = BRATS_SEQUENCES, label: bool = False,
                         mask: str | None = None, grades: Sequence[str] | None = None,
                         grade_file: str | os.PathLike | None = None) -> list[BratsCase]:
    """Find the cases under ``root``: every non-hidden subfolder, sorted by name.

    A root laid out as ``HGG/`` and ``LGG/`` (BRATS 2015-2018) has its cases inside those
    folders, and each case carries that grade. ``grades`` (e.g. ``["HGG"]``, Han 2018) keeps
    only the cases of those grades, read from the grade folders, from ``grade_file`` (a
    ``name_mapping.csv``-style table or a plain case list) or from ``root/name_mapping.csv``
    (BraTS 2019-2020); see :mod:`medgan.data.readers.brats_grades`.

    Each case must hold exactly one file per requested sequence. The label map (the
    naming's ``seg`` pattern) is looked up in every case; it is required when ``label`` is
    true, otherwise a case without one has ``label=None``. ``mask`` (or the naming's
    ``mask`` key) is a glob pattern for a brain-mask file; when given, every case needs one.
    Raises :class:`~medgan.errors.InputError` naming the folder or file at fault.
    """
    root = Path(root)
    patterns = resolve_naming(naming)
    sequences = _check_sequences(sequences)
    missing = [s for s in sequences if s not in patterns]
    if missing:
        raise InputError(root, f"the naming has no pattern for sequence(s) {missing}; "
                               f"it names {sorted(patterns)}")
    if label and LABEL_KEY not in patterns:
        raise InputError(root, "labels requested but the naming has no 'seg' pattern")
    mask_pattern = mask if mask is not None else patterns.get(MASK_KEY)

    if not root.exists():
        raise InputError(root, "BraTS root folder not found")
    if not root.is_dir():
        raise InputError(root, "BraTS root is not a folder")
    folders, grade_of = _case_folders(root, grades=grades, grade_file=grade_file)

    cases = []
    for folder in folders:
        files = {s: _match_one(folder, patterns[s], s, required=True) for s in sequences}
        label_file = None
        if LABEL_KEY in patterns:
            label_file = _match_one(folder, patterns[LABEL_KEY], "label (seg)", required=label)
        mask_file = None
        if mask_pattern is not None:
            mask_file = _match_one(folder, mask_pattern, "brain-mask", required=True)
        cases.append(BratsCase(case_id=folder.name, folder=folder, files=files,
                               label=label_file, mask=mask_file,
                               grade=grade_of.get(folder.name)))
    return cases


def _subfolders(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: p.name)


def _case_folders(root: Path, *, grades: Sequence[str] | None,
                  grade_file: str | os.PathLike | None) -> tuple[list[Path], dict[str, str]]:
    """The case folders to read (those of ``grades`` when given) and the grades known."""
    by_grade = grade_folders(root)
    if by_grade is None:
        folders, folder_grades = _subfolders(root), None
    else:
        folders, folder_grades = [], {}
        for grade, parent in by_grade.items():
            for folder in _subfolders(parent):
                if folder.name in folder_grades:
                    raise InputError(folder, f"case {folder.name} is in two grade folders "
                                             f"({folder_grades[folder.name]} and {grade})")
                folders.append(folder)
                folder_grades[folder.name] = grade
        folders.sort(key=lambda p: p.name)
    if not folders:
        raise InputError(root, "has no case folders (expected one subfolder per case)")
    if grades is None:
        return folders, folder_grades or {}
    wanted = check_grades(grades)
    grade_of = case_grades(root, [f.name for f in folders], folder_grades=folder_grades,
                           grade_file=grade_file)
    kept = [f for f in folders if grade_of[f.name] in wanted]
    if not kept:
        counts = {g: sum(v == g for v in grade_of.values()) for g in sorted(set(grade_of.values()))}
        raise InputError(root, f"has no case of grade(s) {wanted} (it has {counts})")
    return kept, grade_of


def read_brats_case(case: BratsCase, *, sequences: Sequence[str] | None = None,
                    label: bool = False) -> dict[str, Any]:
    """Read a case's volumes (via :func:`read_nifti`, LPS-canonical float32).

    Returns ``{sequence: volume, ..., "affine": 4x4}`` plus ``"seg"`` (int16 label map) when
    ``label`` is true and ``"mask"`` (bool, voxels > 0.5) when the case has a mask file.
    ``sequences`` defaults to all of ``case.files``, in order. Every file must have the same
    shape and affine as the first one; otherwise an :class:`~medgan.errors.InputError`
    names both files.
    """
    sequences = list(case.files) if sequences is None else _check_sequences(sequences)
    to_read: list[tuple[str, Path]] = []
    for s in sequences:
        if s not in case.files:
            raise InputError(case.folder, f"case has no {s} file (it has {sorted(case.files)})")
        to_read.append((s, case.files[s]))
    if label:
        if case.label is None:
            raise InputError(case.folder, "labels requested but the case has no label file")
        to_read.append((LABEL_KEY, case.label))
    if case.mask is not None:
        to_read.append((MASK_KEY, case.mask))

    out: dict[str, Any] = {}
    ref_path: Path | None = None
    ref_affine: np.ndarray | None = None
    for key, path in to_read:
        volume, affine = read_nifti(path, integers=key == LABEL_KEY)
        if ref_path is None:
            ref_path, ref_affine, ref_shape = path, affine, volume.shape
        elif volume.shape != ref_shape:
            raise InputError(path, f"shape {volume.shape} differs from {ref_shape} of {ref_path}")
        elif not np.allclose(affine, ref_affine, rtol=0, atol=_AFFINE_ATOL_MM):
            raise InputError(path, f"affine {np.round(affine[:3], 3).tolist()} differs from "
                                   f"{np.round(ref_affine[:3], 3).tolist()} of {ref_path}")
        if key == LABEL_KEY:
            volume = _as_label_map(volume, path)
        elif key == MASK_KEY:
            volume = volume > 0.5
        out[key] = volume
    out["affine"] = ref_affine
    return out


def _as_label_map(volume: np.ndarray, path: Path) -> np.ndarray:
    """The volume of a label file as int16, checked to hold integers (a float ``volume`` is
    used as scratch space: it holds the rounding error afterwards)."""
    if np.issubdtype(volume.dtype, np.integer):  # stored as integers: only the range to check
        if volume.size and (volume.min() < 0 or volume.max() > np.iinfo(np.int16).max):
            raise InputError(path, f"label values out of range [{volume.min()}, "
                                   f"{volume.max()}]; BraTS labels are small non-negative "
                                   f"integers")
        return volume.astype(np.int16, copy=False)
    rounded = np.rint(volume)
    error = np.subtract(volume, rounded, out=volume)
    if error.size and max(error.max(), -error.min()) > 1e-3:
        worst = int(np.argmax(np.abs(error)))
        example = rounded.flat[worst] + error.flat[worst]
        raise InputError(path, f"label map has non-integer values (e.g. {example:g}); "
                               f"a label map holds integer class labels")
    if rounded.size and (rounded.min() < 0 or rounded.max() > np.iinfo(np.int16).max):
        raise InputError(path, f"label values out of range [{rounded.min():g}, "
                               f"{rounded.max():g}]; BraTS labels are small non-negative "
                               f"integers")
    return rounded.astype(np.int16)
