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
from typing import Any

# nibabel with the module, not per call: a preparation's forked workers inherit it instead of
# importing it each (0.2-0.4 s)
import nibabel as nib
import numpy as np
from nibabel.arrayproxy import ArrayProxy
from nibabel.orientations import (
    apply_orientation,
    axcodes2ornt,
    inv_ornt_aff,
    io_orientation,
    ornt_transform,
)

from medgan.errors import InputError

CANONICAL_ORIENTATION = ("L", "P", "S")

try:  # Intel ISA-L's inflate, zlib's API at 2-3x its speed (issue 18: reading is most of
    # preparing a BraTS case); the standard zlib where the wheel is missing
    from isal import isal_zlib as _zlib
except ImportError:  # pragma: no cover - isal is a dependency
    import zlib as _zlib


def read_nifti(path: str | os.PathLike, *,
               orientation: Sequence[str] = CANONICAL_ORIENTATION,
               integers: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Read a 3-D NIfTI file (``.nii`` or ``.nii.gz``).

    Returns ``(volume, affine)``: the voxel data (scaling applied) as float32, reoriented so
    that its axes follow ``orientation`` (nibabel axis codes, default ``("L", "P", "S")``),
    and the 4x4 voxel-to-world affine of the reoriented array. Trailing axes of length 1
    (``240x240x155x1``) are dropped. The array keeps the file's memory layout (NIfTI stores
    Fortran order; a C-order copy would cost as much as decompressing): index it, do not rely
    on ``.ravel()`` order.

    ``integers=True`` (label maps): a file that stores integers without scaling is returned
    in its own integer type, skipping the float conversion; any other file as float32.

    Raises :class:`~medgan.errors.InputError` naming the file when it is missing, truncated
    or not NIfTI, not 3-D, or holds NaN or infinite values.
    """
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
    raw_ints = integers and np.issubdtype(img.get_data_dtype(), np.integer) and _unscaled(img)
    try:
        data = _voxels(img, path, raw_ints).reshape(shape, order="A")
    except InputError:
        raise
    except Exception as err:  # truncated gzip: EOFError, zlib.error, OSError, ValueError
        raise InputError(path, f"cannot read the voxel data, the file is truncated or corrupt "
                               f"({type(err).__name__}: {err})") from err
    if not raw_ints:
        n_bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
        if n_bad:
            raise InputError(path, f"{n_bad} voxels are NaN or infinite")

    affine = np.asarray(img.affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise InputError(path, f"has a degenerate affine {affine[:3].tolist()}")
    transform = ornt_transform(io_orientation(affine), axcodes2ornt(tuple(orientation)))
    data = apply_orientation(data, transform)
    if not raw_ints:
        data = np.asarray(data, dtype=np.float32)
    affine = affine @ inv_ornt_aff(transform, shape)
    return data, affine


def _unscaled(img: Any) -> bool:
    """Whether ``img``'s voxels need no scaling (slope 1 or unset, intercept 0 or unset)."""
    slope, inter = getattr(img.dataobj, "slope", 1.0), getattr(img.dataobj, "inter", 0.0)
    return (np.isnan(slope) or slope == 1.0) and (np.isnan(inter) or inter == 0.0)


def _voxels(img: Any, path: Path, raw_ints: bool) -> np.ndarray:
    """The voxel array of ``img`` (as stored when ``raw_ints``, else float32, writable).

    An unscaled file is decompressed in one call (ISA-L's inflate where installed: 2-3x
    zlib's speed) and viewed in place (the file's order); nibabel's streamed gzip reading and
    its copies cost a third more than inflating with zlib.
    Scaled files go through nibabel's ``get_fdata``.
    """
    proxy = img.dataobj
    if not (isinstance(proxy, ArrayProxy) and _unscaled(img)):
        return np.asarray(img.get_fdata(dtype=np.float32))
    data = _file_bytes(path)
    count = int(np.prod(proxy.shape))
    dtype = np.dtype(proxy.dtype)
    if len(data) < proxy.offset + count * dtype.itemsize:
        raise InputError(path, f"truncated: the header promises {count} voxels of "
                               f"{dtype.itemsize} bytes after byte {proxy.offset}, the file "
                               f"holds {len(data)} bytes")
    stored = np.frombuffer(data, dtype=dtype, count=count, offset=proxy.offset)
    stored = stored.reshape(proxy.shape, order=proxy.order)
    return stored.astype(dtype.newbyteorder("=") if raw_ints else np.float32)  # a copy


def _file_bytes(path: Path) -> bytes:
    """A file's bytes, gunzipped (every member) when it is gzip-compressed."""
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    parts = []
    while raw:
        inflater = _zlib.decompressobj(31)
        try:
            parts.append(inflater.decompress(raw))
        except _zlib.error as err:
            raise InputError(path, f"cannot read the voxel data, the file is truncated or "
                                   f"corrupt (inflate: {err})") from err
        if not inflater.eof:
            raise InputError(path, "cannot read the voxel data, the file is truncated or "
                                   "corrupt (the gzip stream ends early)")
        raw = inflater.unused_data
    return parts[0] if len(parts) == 1 else b"".join(parts)
