"""Read one 3-D MRI volume stored as Analyze 7.5 (``.img`` + ``.hdr``) or NIfTI.

OASIS-1 ships its images as Analyze 7.5 pairs, e.g.
``OAS1_0001_MR1/PROCESSED/MPRAGE/T88_111/OAS1_0001_MR1_mpr_n4_anon_111_t88_masked_gfc.img``
with its ``.hdr`` beside it, 176x208x176x1 (a trailing singleton 4th axis); users often
have the same scans as NIfTI (``.nii``, ``.nii.gz``). :func:`read_volume` reads all of them
into one canonical orientation (LPS, as :func:`medgan.data.readers.nifti.read_nifti`), so a slice
index means the same whichever format or storage order a scan came in.

Analyze 7.5 has no orientation field that nibabel trusts: nibabel gives such a file the
conventional "radiological" affine (``diag(-dx, dy, dz)``, axis codes ``L, A, S``; SPM's
origin field and a ``.mat`` file beside the image are honoured), so an Analyze volume is
flipped along axis 1 to become LPS. A NIfTI pair (``.hdr`` with the ``ni1`` magic) is read
with its own qform/sform.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.orientations import (
    apply_orientation,
    axcodes2ornt,
    inv_ornt_aff,
    io_orientation,
    ornt_transform,
)

from medgan.data.readers.nifti import CANONICAL_ORIENTATION, read_nifti
from medgan.errors import InputError

ANALYZE_SUFFIXES = (".img", ".hdr")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
VOLUME_SUFFIXES = (*ANALYZE_SUFFIXES, *NIFTI_SUFFIXES)
_ANALYZE_HEADER_BYTES = 348


def volume_suffix(path: str | os.PathLike) -> str | None:
    """The recognised suffix of ``path`` (lower case: ``.img``, ``.hdr``, ``.nii``,
    ``.nii.gz``), or None when it is none of them."""
    name = Path(path).name.lower()
    for suffix in (".nii.gz", ".nii", ".img", ".hdr"):
        if name.endswith(suffix) and len(name) > len(suffix):
            return suffix
    return None


def analyze_pair(path: str | os.PathLike) -> tuple[Path, Path]:
    """``(image, header)`` paths of the Analyze pair that ``path`` (either file) belongs to.

    The partner keeps the case of the given suffix (``.IMG`` pairs with ``.HDR``).
    """
    path = Path(path)
    if volume_suffix(path) not in ANALYZE_SUFFIXES:
        raise InputError(path, "not an Analyze 7.5 file name (expected .img or .hdr)")
    stem, suffix = path.name[:-4], path.name[-4:]
    upper = suffix.isupper()
    img = path.with_name(stem + (".IMG" if upper else ".img"))
    hdr = path.with_name(stem + (".HDR" if upper else ".hdr"))
    return img, hdr


def read_volume(path: str | os.PathLike, *,
                orientation: Sequence[str] = CANONICAL_ORIENTATION
                ) -> tuple[np.ndarray, np.ndarray]:
    """Read a 3-D volume from an Analyze 7.5 pair (either ``.img`` or ``.hdr`` may be given)
    or a NIfTI file (``.nii``, ``.nii.gz``).

    Returns ``(volume, affine)``: the voxel data as float32 with trailing singleton axes
    dropped (OASIS' ``176x208x176x1`` becomes ``176x208x176``), reoriented to
    ``orientation`` (nibabel axis codes, default LPS), and the 4x4 voxel-to-world affine of
    the reoriented array.

    Raises :class:`~medgan.errors.InputError` naming the file at fault when: the file or
    the other half of an Analyze pair is missing; the header is not Analyze/NIfTI; the
    ``.img`` is shorter than its header says (truncated); the image is not 3-D; a voxel is
    NaN or infinite; or every voxel has the same value (all zero: an empty image).
    """
    path = Path(path)
    suffix = volume_suffix(path)
    if suffix is None:
        raise InputError(path, "unsupported file type: expected an Analyze 7.5 pair "
                               "(.img + .hdr) or NIfTI (.nii, .nii.gz)")
    if suffix in NIFTI_SUFFIXES:
        volume, affine = read_nifti(path, orientation=orientation)
        if min(volume.shape) < 2:
            raise InputError(path, f"expected a 3-D volume, got shape {volume.shape}")
        _check_not_constant(volume, path)
        return volume, affine
    return _read_analyze(path, orientation)


def _read_analyze(path: Path, orientation: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    img_path, hdr_path = analyze_pair(path)
    if not img_path.exists() and not hdr_path.exists():
        raise InputError(path, "file not found (neither the .img nor the .hdr is there)")
    for this, other in ((img_path, hdr_path), (hdr_path, img_path)):
        if not this.exists():
            kind = "image (.img)" if this is img_path else "header (.hdr)"
            raise InputError(this, f"missing: {other.name} has no Analyze 7.5 {kind} file "
                                   f"beside it")
        if not this.is_file():
            raise InputError(this, "is not a file")
    hdr_bytes = hdr_path.stat().st_size
    if hdr_bytes < _ANALYZE_HEADER_BYTES:
        raise InputError(hdr_path, f"not an Analyze 7.5 header: {hdr_bytes} bytes, a header "
                                   f"has {_ANALYZE_HEADER_BYTES}")
    try:
        img = nib.load(img_path)
    except Exception as err:  # nibabel raises several types for unreadable headers
        detail = str(err).replace(str(img_path), img_path.name)
        raise InputError(hdr_path, f"not a readable Analyze 7.5 header ({type(err).__name__}: "
                                   f"{detail})") from err
    if not isinstance(img, nib.AnalyzeImage):
        raise InputError(hdr_path, f"not an Analyze 7.5 header (nibabel reads it as "
                                   f"{type(img).__name__})")

    header = img.header
    full_shape = tuple(int(s) for s in img.shape)
    shape = full_shape
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3 or min(shape) < 2:
        raise InputError(img_path, f"expected a 3-D volume, got shape {full_shape}")
    expected = int(header.get_data_offset()) + int(np.prod(full_shape)) \
        * header.get_data_dtype().itemsize
    actual = img_path.stat().st_size
    if actual < expected:
        raise InputError(img_path, f"truncated: {hdr_path.name} describes {full_shape} "
                                   f"{header.get_data_dtype().name} voxels ({expected} bytes) but "
                                   f"the file has {actual} bytes")
    try:
        data = np.asarray(img.get_fdata(dtype=np.float32)).reshape(shape)
    except Exception as err:  # OSError, ValueError from nibabel's array proxy
        raise InputError(img_path, f"cannot read the voxel data ({type(err).__name__}: "
                                   f"{err})") from err
    n_bad = int(data.size - np.count_nonzero(np.isfinite(data)))
    if n_bad:
        raise InputError(img_path, f"{n_bad} voxels are NaN or infinite")
    _check_not_constant(data, img_path)

    affine = np.asarray(img.affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise InputError(hdr_path, f"has a degenerate affine {affine[:3].tolist()} "
                                   f"(voxel sizes {header.get_zooms()})")
    return reorient(data, affine, orientation)


def reorient(data: np.ndarray, affine: np.ndarray,
             orientation: Sequence[str] = CANONICAL_ORIENTATION) -> tuple[np.ndarray, np.ndarray]:
    """Flip/permute a 3-D array so its axes follow ``orientation``; return it (float32,
    contiguous) and the affine of the result."""
    transform = ornt_transform(io_orientation(affine), axcodes2ornt(tuple(orientation)))
    out = np.ascontiguousarray(apply_orientation(data, transform), dtype=np.float32)
    return out, affine @ inv_ornt_aff(transform, data.shape)


def _check_not_constant(volume: np.ndarray, path: Path) -> None:
    lo, hi = float(volume.min()), float(volume.max())
    if lo == hi:
        what = "all voxels are 0 (an empty image)" if lo == 0 else \
            f"constant volume: every voxel is {lo:g}"
        raise InputError(path, what)
