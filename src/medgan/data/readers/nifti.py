"""Read one NIfTI volume as a float32 array in a canonical orientation, with its affine.

The canonical orientation defaults to LPS as nibabel's ``aff2axcodes`` names it (array axis 0
runs towards the patient's Left, axis 1 towards Posterior, axis 2 towards Superior). That is
how every BraTS release lies on disk, so a BraTS slice index (Han 2018's sagittal #80-#149)
keeps its meaning; a volume stored in any other orientation (e.g. RAS) is flipped/permuted
into it and its affine updated, so the same scan reads back identical however it was saved.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medgan.errors import InputError

CANONICAL_ORIENTATION = ("L", "P", "S")


def read_nifti(path: str | os.PathLike, *,
               orientation: Sequence[str] = CANONICAL_ORIENTATION) -> tuple[np.ndarray, np.ndarray]:
    """Read a 3-D NIfTI file (``.nii`` or ``.nii.gz``).

    Returns ``(volume, affine)``: the voxel data (scaling applied) as float32, reoriented so
    that its axes follow ``orientation`` (nibabel axis codes, default ``("L", "P", "S")``),
    and the 4x4 voxel-to-world affine of the reoriented array. Trailing axes of length 1
    (``240x240x155x1``) are dropped.

    Raises :class:`~medgan.errors.InputError` naming the file when it is missing, truncated
    or not NIfTI, not 3-D, or holds NaN or infinite values.
    """
    import nibabel as nib
    from nibabel.orientations import (
        apply_orientation,
        axcodes2ornt,
        inv_ornt_aff,
        io_orientation,
        ornt_transform,
    )

    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found")
    if not path.is_file():
        raise InputError(path, "is not a file")
    try:
        img = nib.load(path)
    except Exception as err:  # nibabel raises many types for unreadable headers
        raise InputError(path, f"not a readable NIfTI file: truncated, corrupt or another "
                               f"format ({type(err).__name__}: {err})") from err
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise InputError(path, f"not a NIfTI file (nibabel reads it as {type(img).__name__})")

    shape = tuple(int(s) for s in img.shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3:
        raise InputError(path, f"expected a 3-D volume, got shape {tuple(img.shape)}")
    try:
        data = np.asarray(img.get_fdata(dtype=np.float32)).reshape(shape)
    except Exception as err:  # truncated gzip: EOFError, zlib.error, OSError, ValueError
        raise InputError(path, f"cannot read the voxel data, the file is truncated or corrupt "
                               f"({type(err).__name__}: {err})") from err
    n_bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
    if n_bad:
        raise InputError(path, f"{n_bad} voxels are NaN or infinite")

    affine = np.asarray(img.affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise InputError(path, f"has a degenerate affine {affine[:3].tolist()}")
    transform = ornt_transform(io_orientation(affine), axcodes2ornt(tuple(orientation)))
    data = np.ascontiguousarray(apply_orientation(data, transform), dtype=np.float32)
    affine = affine @ inv_ornt_aff(transform, shape)
    return data, affine
