"""DICOM series: find them under a folder tree, read one as a SimpleITK image in LPS mm.

A *series folder* is a folder holding DICOM files of one series, as TCIA lays out its
downloads (``<patient>/<study>/<series>/1-01.dcm``) and as the ProstateX sample has it
(``ProstateX-0000/t2_tse_tra/1-01.dcm``). :func:`find_dicom_series` walks a tree and describes
every series folder from the header of its first DICOM file (SeriesDescription, SeriesNumber,
SeriesInstanceUID), so that discovering a patient costs one header per folder, not one per
file. :func:`read_dicom_series` reads one series with SimpleITK's GDCM series reader after
checking from every file's ImagePositionPatient that the slices are evenly spaced: ITK would
silently read a series with a missing slice onto a wrong, averaged grid.

Files that are not DICOM (a ``.DS_Store``, a ``README.txt``) are skipped when discovering, and
GDCM ignores them when reading, so they do no harm in a series folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medgan.errors import InputError

_HEADER_TAGS = ("SeriesDescription", "SeriesNumber", "SeriesInstanceUID", "Modality")
_GEOMETRY_TAGS = ("ImagePositionPatient", "ImageOrientationPatient", "Rows", "Columns")
SLICE_SPACING_RTOL = 0.01  # relative tolerance on the slice spacing before a gap is a gap
_ORIENTATION_ATOL = 1e-4


@dataclass(frozen=True)
class DicomSeries:
    """One series folder, described by the header of its first DICOM file."""

    folder: Path
    description: str
    series_number: int | None
    series_uid: str
    modality: str
    first_file: Path


def is_dicom_file(path: str | os.PathLike) -> bool:
    """True when ``path`` is a DICOM Part 10 file (``DICM`` after the 128-byte preamble)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _read_header(path: Path, tags=_HEADER_TAGS):
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path, stop_before_pixels=True, specific_tags=list(tags))
    except (InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError) as err:
        raise InputError(path, f"unreadable DICOM header ({type(err).__name__}: {err})") from err


def find_dicom_series(root: str | os.PathLike) -> list[DicomSeries]:
    """Every series folder under ``root`` (``root`` included), sorted by path.

    Hidden files and folders are skipped. Raises :class:`~medgan.errors.InputError` when
    ``root`` is not a folder or a file that looks like DICOM has an unreadable header.
    """
    root = Path(root)
    if not root.exists():
        raise InputError(root, "folder not found")
    if not root.is_dir():
        raise InputError(root, "is not a folder")
    found: list[DicomSeries] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(f for f in filenames if not f.startswith(".")):
            path = Path(dirpath) / name
            if not is_dicom_file(path):
                continue
            ds = _read_header(path)
            number = ds.get("SeriesNumber")
            found.append(DicomSeries(
                folder=Path(dirpath),
                description=str(ds.get("SeriesDescription", "") or ""),
                series_number=None if number in (None, "") else int(number),
                series_uid=str(ds.get("SeriesInstanceUID", "") or ""),
                modality=str(ds.get("Modality", "") or ""),
                first_file=path,
            ))
            break
    return sorted(found, key=lambda s: str(s.folder))


def _series_files(folder: Path, series_uid: str | None) -> list[str]:
    import SimpleITK as sitk

    if not folder.exists():
        raise InputError(folder, "series folder not found")
    if not folder.is_dir():
        raise InputError(folder, "is not a folder")
    ids = list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))
    if not ids:
        raise InputError(folder, "holds no readable DICOM series (empty or no DICOM files)")
    if series_uid:
        if series_uid not in ids:
            raise InputError(folder, f"has no DICOM series with SeriesInstanceUID {series_uid}")
        uid = series_uid
    elif len(ids) > 1:
        raise InputError(folder, f"holds {len(ids)} DICOM series; expected one per folder")
    else:
        uid = ids[0]
    files = list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid))
    if not files:
        raise InputError(folder, f"series {uid} has no files")
    if len(ids) == 1:  # GDCM silently drops files it cannot parse: name them
        listed = {os.path.realpath(f) for f in files}
        for path in sorted(folder.iterdir()):
            if path.is_file() and is_dicom_file(path) and os.path.realpath(path) not in listed:
                raise InputError(path, "DICOM file that GDCM cannot read (truncated or corrupt); "
                                       "it would leave a slice missing from the series")
    return files


def slice_positions(files: list[str | os.PathLike]) -> np.ndarray:
    """Positions (mm) of the slices along the slice normal, in the order of ``files``.

    The normal is the cross product of the ImageOrientationPatient row and column
    directions of the first file; every file must have the same orientation and matrix size.
    """
    positions, normal, ref = [], None, None
    for f in files:
        ds = _read_header(Path(f), _GEOMETRY_TAGS)
        for tag in _GEOMETRY_TAGS:
            if ds.get(tag) in (None, ""):
                raise InputError(f, f"DICOM file has no {tag}")
        try:
            ipp = np.asarray([float(v) for v in ds.ImagePositionPatient], dtype=np.float64)
            iop = np.asarray([float(v) for v in ds.ImageOrientationPatient], dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise InputError(f, f"malformed ImagePositionPatient/Orientation ({err})") from err
        if ipp.shape != (3,) or iop.shape != (6,) or not np.all(np.isfinite(ipp)) \
                or not np.all(np.isfinite(iop)):
            raise InputError(f, "ImagePositionPatient needs 3 and ImageOrientationPatient 6 "
                                "finite numbers")
        shape = (int(ds.Rows), int(ds.Columns))
        if normal is None:
            n = np.cross(iop[:3], iop[3:])
            if np.linalg.norm(n) < 0.5:
                raise InputError(f, f"degenerate ImageOrientationPatient {iop.tolist()}")
            normal, ref = n / np.linalg.norm(n), (iop, shape, f)
        elif not np.allclose(iop, ref[0], atol=_ORIENTATION_ATOL):
            raise InputError(f, f"orientation {iop.round(5).tolist()} differs from "
                                f"{ref[0].round(5).tolist()} of {ref[2]}")
        elif shape != ref[1]:
            raise InputError(f, f"matrix {shape[0]}x{shape[1]} differs from "
                                f"{ref[1][0]}x{ref[1][1]} of {ref[2]}")
        positions.append(float(ipp @ normal))
    return np.asarray(positions)


def check_slice_spacing(positions: np.ndarray, *, where: str | os.PathLike,
                        rtol: float = SLICE_SPACING_RTOL) -> float:
    """The uniform slice spacing (mm) of ``positions``; InputError naming ``where`` if not.

    Two slices at the same position, or gaps that differ by more than ``rtol`` of the
    median gap (a missing slice leaves one gap twice as wide), are errors.
    """
    pos = np.sort(np.asarray(positions, dtype=np.float64))
    if pos.size < 2:
        raise InputError(where, f"series has {pos.size} slice(s); a volume needs at least 2")
    gaps = np.diff(pos)
    if gaps.min() < 1e-3:
        i = int(np.argmin(gaps))
        raise InputError(where, f"two slices at the same position {pos[i]:.3f} mm along the "
                                f"slice normal (duplicate or multi-frame series)")
    spacing = float(np.median(gaps))
    if np.max(np.abs(gaps - spacing)) > rtol * spacing + 1e-3:
        expected = int(round((pos[-1] - pos[0]) / spacing)) + 1
        raise InputError(where, f"missing slice(s): slice gaps range from {gaps.min():.3f} to "
                                f"{gaps.max():.3f} mm along the slice normal; {pos.size} slices "
                                f"found where {expected} at {spacing:.3f} mm would fill the "
                                f"extent")
    return spacing


def read_dicom_series(series: DicomSeries | str | os.PathLike):
    """Read one series as a float32 :class:`SimpleITK.Image` (origin/direction in LPS mm).

    ``series`` is a :class:`DicomSeries` or a folder holding exactly one series. The slices
    must be evenly spaced (:func:`check_slice_spacing`), with one orientation and matrix
    size; rescale slope/intercept are applied. Raises :class:`~medgan.errors.InputError`
    naming the series folder (or the file at fault).
    """
    import SimpleITK as sitk

    if isinstance(series, DicomSeries):
        folder, uid = series.folder, series.series_uid
    else:
        folder, uid = Path(series), None
    files = _series_files(folder, uid)
    check_slice_spacing(slice_positions(files), where=folder)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    warnings = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        image = reader.Execute()
    except RuntimeError as err:
        raise InputError(folder, f"SimpleITK cannot read the DICOM series, a file is truncated "
                                 f"or corrupt ({itk_error_summary(err)})") from err
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(warnings)
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(folder, f"expected a 3-D scalar series, got {image.GetDimension()}-D "
                                 f"with {image.GetNumberOfComponentsPerPixel()} components")
    return sitk.Cast(image, sitk.sitkFloat32)


def itk_error_summary(err: Exception, limit: int = 200) -> str:
    """The informative tail of a (multi-line) ITK exception message, one line."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    text = lines[-1] if lines else type(err).__name__
    for ln in lines:  # ITK puts "Description: ..." or the file name on its own line
        if ln.lower().startswith(("description", "itk::error")):
            text = ln
    return text[:limit]
