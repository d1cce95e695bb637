"""SPIE ProstateX: the findings CSV, a patient's DICOM series and its Ktrans MetaImage.

Layout (the TCIA download, optionally with the Ktrans archive merged in)::

    <root>/ProstateX-Findings-Train.csv           ProxID,fid,pos,zone,ClinSig
    <root>/ProstateX-0000/<study>/<series>/*.dcm  one folder per DICOM series (any depth)
    <root>/ProstateX-0000/ProstateX-0000-Ktrans.mhd (+ .zraw)

``pos`` is a point in scanner (LPS) millimetres written as three space-separated numbers.
Series are picked by their DICOM SeriesDescription with regular expressions
(:data:`DEFAULT_SERIES_PATTERNS`, searched anywhere in the description, case-sensitive).
When several series of a patient match one pattern (a repeated acquisition), the one with
the highest SeriesNumber is taken (the last acquired, usually the repeat after motion), ties
broken by the last folder path; the candidates are returned so callers can record the choice.
"""

from __future__ import annotations

import csv
import glob
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from medgan.data.readers.dicom import DicomSeries, find_dicom_series, itk_error_summary
from medgan.errors import InputError

FINDINGS_COLUMNS = ("ProxID", "fid", "pos", "zone")  # required; ClinSig is optional (test set)
FINDINGS_GLOB = "ProstateX-Findings*.csv"
DEFAULT_SERIES_PATTERNS = {"T2": r"t2_tse_tra", "ADC": r"ADC|adc", "highb": r"calc_bval|BVAL"}
DEFAULT_KTRANS_PATTERN = "{patient}/**/{patient}-Ktrans.mhd"
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


# --- findings CSV ----------------------------------------------------------------------


def read_findings(path: str | os.PathLike):
    """Read and validate a ProstateX findings CSV; return a :class:`pandas.DataFrame`.

    Columns: ``ProxID`` (str), ``fid`` (int), ``pos`` (the original text), ``x, y, z``
    (float, LPS mm), ``zone`` (str), ``ClinSig`` (bool, or None when the column is absent
    or the cell is empty) and ``line`` (1-based line of the row in the file). Raises
    :class:`~medgan.errors.InputError` naming the file (and the line) when a required
    column is missing, a row has the wrong number of fields, ``pos`` is not three finite
    numbers, ``fid`` is not an integer, ``ClinSig`` is not TRUE/FALSE, a (ProxID, fid) pair
    repeats, or there are no findings.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "findings CSV not found" if not path.exists() else "not a file")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = [h.strip() for h in next(reader, [])]
            missing = [c for c in FINDINGS_COLUMNS if c not in header]
            if missing:
                raise InputError(path, f"missing column(s) {missing}; the header is {header} "
                                       f"(expected {list(FINDINGS_COLUMNS)} and ClinSig)")
            col = {name: header.index(name) for name in (*FINDINGS_COLUMNS, "ClinSig")
                   if name in header}
            rows, seen = [], {}
            for fields in reader:
                line = reader.line_num
                if not any(f.strip() for f in fields):
                    continue
                rows.append(_parse_finding(path, line, fields, header, col, seen))
    except UnicodeDecodeError as err:
        raise InputError(path, f"not a text CSV file ({err})") from err
    except csv.Error as err:
        raise InputError(path, f"malformed CSV ({err})") from err
    if not rows:
        raise InputError(path, "has no findings (only a header)")
    return pd.DataFrame(rows, columns=["ProxID", "fid", "pos", "x", "y", "z", "zone",
                                       "ClinSig", "line"])


def _parse_finding(path, line, fields, header, col, seen) -> dict:
    if len(fields) != len(header):
        raise InputError(path, f"line {line}: expected {len(header)} fields ({','.join(header)}),"
                               f" got {len(fields)}")
    prox = fields[col["ProxID"]].strip()
    if not prox or prox in (".", "..") or "/" in prox or "\\" in prox:
        raise InputError(path, f"line {line}: ProxID {prox!r} is not a patient folder name")
    try:
        fid = int(fields[col["fid"]].strip())
    except ValueError:
        raise InputError(path, f"line {line}: fid {fields[col['fid']]!r} is not an "
                               f"integer") from None
    pos_text = fields[col["pos"]].strip()
    try:
        xyz = [float(v) for v in pos_text.split()]
    except ValueError:
        xyz = []
    if len(xyz) != 3 or not all(math.isfinite(v) for v in xyz):
        raise InputError(path, f"line {line}: pos {pos_text!r} is not three space-separated "
                               f"numbers (LPS mm)")
    zone = fields[col["zone"]].strip()
    if not zone:
        raise InputError(path, f"line {line}: empty zone")
    clinsig = None
    if "ClinSig" in col:
        text = fields[col["ClinSig"]].strip().lower()
        if text in _TRUE:
            clinsig = True
        elif text in _FALSE:
            clinsig = False
        elif text:
            raise InputError(path, f"line {line}: ClinSig {fields[col['ClinSig']]!r} is not "
                                   f"TRUE or FALSE")
    if (prox, fid) in seen:
        raise InputError(path, f"line {line}: finding {prox} fid {fid} repeats line "
                               f"{seen[(prox, fid)]}")
    seen[(prox, fid)] = line
    return {"ProxID": prox, "fid": fid, "pos": pos_text, "x": xyz[0], "y": xyz[1], "z": xyz[2],
            "zone": zone, "ClinSig": clinsig, "line": line}


def find_findings_csv(root: str | os.PathLike, findings_csv: str | os.PathLike | None = None
                      ) -> Path:
    """The findings CSV: ``findings_csv`` (relative to ``root`` unless absolute), or the one
    file in ``root`` matching :data:`FINDINGS_GLOB` when it is None."""
    root = Path(root)
    if findings_csv is not None:
        path = Path(findings_csv)
        path = path if path.is_absolute() else root / path
        if not path.is_file():
            raise InputError(path, "findings CSV not found")
        return path
    if not root.is_dir():
        raise InputError(root, "ProstateX root folder not found")
    matches = sorted(p for p in root.glob(FINDINGS_GLOB) if p.is_file())
    if len(matches) != 1:
        names = ", ".join(p.name for p in matches) or "none"
        raise InputError(root, f"expected one findings CSV matching {FINDINGS_GLOB!r}, found "
                               f"{names}; name it with findings_csv")
    return matches[0]


# --- series and Ktrans -------------------------------------------------------------------


def resolve_series_patterns(series_patterns: Mapping[str, str] | None = None) -> dict[str, str]:
    """:data:`DEFAULT_SERIES_PATTERNS` updated with ``series_patterns``; every pattern must be
    a valid regular expression and the keys among ``T2``, ``ADC``, ``highb``."""
    patterns = dict(DEFAULT_SERIES_PATTERNS)
    for key, pattern in dict(series_patterns or {}).items():
        if key not in DEFAULT_SERIES_PATTERNS:
            raise ValueError(f"series_patterns has unknown key {key!r}; keys are "
                             f"{list(DEFAULT_SERIES_PATTERNS)}")
        if not isinstance(pattern, str) or not pattern:
            raise ValueError(f"series pattern for {key!r} must be a non-empty string")
        try:
            re.compile(pattern)
        except re.error as err:
            raise ValueError(f"series pattern for {key!r} is not a regular expression: "
                             f"{pattern!r} ({err})") from None
        patterns[key] = pattern
    return patterns


def select_series(series: list[DicomSeries], pattern: str, *, channel: str,
                  folder: str | os.PathLike) -> tuple[DicomSeries, list[DicomSeries]]:
    """The series whose SeriesDescription matches ``pattern`` (``re.search``) and all matches.

    Several matches: the highest SeriesNumber wins, ties broken by the last folder path.
    None: :class:`~medgan.errors.InputError` naming ``folder`` and the descriptions found.
    """
    regex = re.compile(pattern)
    matches = [s for s in series if regex.search(s.description)]
    if not matches:
        found = sorted({s.description for s in series})
        raise InputError(folder, f"no DICOM series for {channel}: no SeriesDescription matches "
                                 f"{pattern!r} (found {found or 'no DICOM series at all'})")
    best = max(matches, key=lambda s: (-1 if s.series_number is None else s.series_number,
                                       str(s.folder)))
    return best, matches


@dataclass(frozen=True)
class ProstatexPatient:
    """A patient folder: the series chosen per channel, all candidates, the Ktrans file."""

    patient_id: str
    folder: Path
    series: dict[str, DicomSeries] = field(default_factory=dict)
    candidates: dict[str, list[DicomSeries]] = field(default_factory=dict)
    ktrans: Path | None = None


def find_ktrans(root: str | os.PathLike, patient_id: str,
                pattern: str = DEFAULT_KTRANS_PATTERN) -> Path | None:
    """The Ktrans ``.mhd`` of a patient: the glob ``pattern`` relative to ``root`` with
    ``{patient}`` replaced by the ProxID; None when nothing matches, an error when several do."""
    concrete = pattern.replace("{patient}", glob.escape(patient_id))
    if Path(concrete).is_absolute():
        matches = sorted(Path(p) for p in glob.glob(concrete, recursive=True))
    else:
        matches = sorted(Path(root).glob(concrete))
    matches = [p for p in matches if p.is_file()]
    if len(matches) > 1:
        raise InputError(root, f"Ktrans pattern {pattern!r} matches {len(matches)} files for "
                               f"{patient_id} ({', '.join(map(str, matches))}); make it match one")
    return matches[0] if matches else None


def discover_prostatex_patient(root: str | os.PathLike, patient_id: str, *,
                               series_patterns: Mapping[str, str] | None = None,
                               channels: tuple[str, ...] = ("T2", "ADC"),
                               optional: tuple[str, ...] = ("highb",),
                               ktrans_pattern: str | None = DEFAULT_KTRANS_PATTERN
                               ) -> ProstatexPatient:
    """Find a patient's series: one per ``channels`` (required) and per ``optional`` channel
    (when some series matches), plus the Ktrans file (None if absent or no pattern).

    The patient folder is ``root/patient_id``. Raises :class:`~medgan.errors.InputError`
    naming the folder when it is missing, holds no DICOM series or lacks a required one.
    """
    patterns = resolve_series_patterns(series_patterns)
    folder = Path(root) / patient_id
    if not folder.is_dir():
        raise InputError(folder, "patient folder not found")
    found = find_dicom_series(folder)
    if not found:
        raise InputError(folder, "patient folder holds no DICOM series (empty or no DICOM files)")
    chosen: dict[str, DicomSeries] = {}
    candidates: dict[str, list[DicomSeries]] = {}
    for channel in (*channels, *optional):
        try:
            chosen[channel], candidates[channel] = select_series(
                found, patterns[channel], channel=channel, folder=folder)
        except InputError:
            if channel in channels:
                raise
    ktrans = None if ktrans_pattern is None else find_ktrans(root, patient_id, ktrans_pattern)
    return ProstatexPatient(patient_id=patient_id, folder=folder, series=chosen,
                            candidates=candidates, ktrans=ktrans)


def read_ktrans(path: str | os.PathLike):
    """Read a Ktrans MetaImage (``.mhd`` + ``.raw``/``.zraw``) as a float32 SimpleITK image.

    Checks that the header parses, that the data file it names exists and, for compressed
    data, has the ``CompressedDataSize`` the header promises, that the image is 3-D and that
    SimpleITK reads it; otherwise :class:`~medgan.errors.InputError` naming the ``.mhd``.
    """
    import SimpleITK as sitk

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "Ktrans file not found")
    header = _metaimage_header(path)
    data_name = header.get("ElementDataFile")
    if not data_name:
        raise InputError(path, "MetaImage header has no ElementDataFile")
    if data_name.upper() != "LOCAL":
        data_file = path.parent / data_name
        if not data_file.is_file():
            raise InputError(path, f"the data file {data_name} named by ElementDataFile is "
                                   f"missing")
        _check_metaimage_data(path, header, data_file)
    reader = sitk.ImageFileReader()
    reader.SetImageIO("MetaImageIO")
    reader.SetFileName(str(path))
    try:
        image = reader.Execute()
    except RuntimeError as err:
        raise InputError(path, f"SimpleITK cannot read the MetaImage, its data is truncated or "
                               f"corrupt ({itk_error_summary(err)})") from err
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(path, f"expected a 3-D scalar Ktrans volume, got "
                               f"{image.GetDimension()}-D with "
                               f"{image.GetNumberOfComponentsPerPixel()} components")
    return sitk.Cast(image, sitk.sitkFloat32)


_MET_BYTES = {"MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4,
              "MET_UINT": 4, "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8,
              "MET_ULONG_LONG": 8, "MET_FLOAT": 4, "MET_DOUBLE": 8}


def _check_metaimage_data(path: Path, header: dict[str, str], data_file: Path) -> None:
    """The data file holds exactly DimSize x channels x element-size bytes (after inflating
    ``.zraw``): ITK would silently read a truncated file with zeros at the end."""
    import zlib

    try:
        dims = [int(v) for v in header.get("DimSize", "").split()]
        n_bytes = _MET_BYTES[header.get("ElementType", "")]
        channels = int(header.get("ElementNumberOfChannels", "1"))
    except (ValueError, KeyError):
        return  # unusual header: leave the verdict to SimpleITK
    expected = math.prod(dims) * n_bytes * channels
    data_name = data_file.name
    size = data_file.stat().st_size
    if header.get("CompressedData", "False").strip().lower() != "true":
        if size < expected:
            raise InputError(path, f"the data file {data_name} has {size} bytes but DimSize "
                                   f"{dims} x {header.get('ElementType')} needs {expected}: "
                                   f"truncated")
        return
    declared = header.get("CompressedDataSize", "")
    if declared.isdigit() and size != int(declared):
        raise InputError(path, f"the data file {data_name} is {size} bytes but the header says "
                               f"CompressedDataSize = {declared}: truncated or corrupt")
    inflater = zlib.decompressobj(wbits=47)  # zlib or gzip header
    try:
        n_out = len(inflater.decompress(data_file.read_bytes()))
        n_out += len(inflater.flush())
    except zlib.error as err:
        raise InputError(path, f"the compressed data file {data_name} is corrupt ({err})") from err
    if not inflater.eof or n_out != expected:
        raise InputError(path, f"the compressed data file {data_name} inflates to {n_out} bytes "
                               f"(stream {'complete' if inflater.eof else 'cut short'}) but "
                               f"DimSize {dims} x {header.get('ElementType')} needs {expected}: "
                               f"truncated or corrupt")


def _metaimage_header(path: Path) -> dict[str, str]:
    try:
        raw = path.read_bytes()[:65536]
    except OSError as err:
        raise InputError(path, f"cannot read ({err})") from err
    if raw.upper().find(b"ELEMENTDATAFILE") < 0:
        raise InputError(path, "not a MetaImage header (no ElementDataFile line)")
    text = raw.decode("latin1")
    header = {}
    for ln in text.splitlines():
        key, sep, value = ln.partition("=")
        if sep:
            header[key.strip()] = value.strip()
        if key.strip() == "ElementDataFile":
            break  # LOCAL data follows
    return header
