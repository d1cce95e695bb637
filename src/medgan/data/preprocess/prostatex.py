"""Turn a ProstateX release into aligned lesion patches (Kitchen & Seah 2017, section 5.1).

For every finding of the findings CSV: a ``patch_mm`` x ``patch_mm`` grid at ``spacing_mm``
(16 x 16 px at 1 px/mm by default) is laid in the plane of the patient's axial T2 series,
centred on the finding's ``pos`` (scanner LPS mm), and every channel -- T2, ADC and Ktrans (or
its substitute) -- is resampled onto that same world grid with linear interpolation
(:func:`SimpleITK.Resample`). The series have different grids and origins; alignment comes
only from their world coordinates, never from voxel indices.

Patch geometry: pixel (row ``j``, column ``i``) of a patch centred on ``c`` lies at
``c + (i - (n-1)/2) * spacing_mm * u + (j - (n-1)/2) * spacing_mm * v`` where ``u``, ``v`` are
the T2 row and column directions (image columns run along ``u``, rows along ``v``); ``c`` is
the geometric centre of the patch (with an even ``n`` it falls between four pixels). With
``snap_to_slice`` the centre is first moved along the T2 slice normal onto the nearest T2
slice plane, so a 3 mm-thick T2 slice is sampled as acquired rather than blended with its
neighbour; ``n_slices`` > 1 adds patches at +-1, +-2, ... T2 slice spacings along the normal.
Augmented copies shift the centre in-plane (uniform within +-``jitter_mm`` per axis) and rotate
the grid about the slice normal (uniform within +-``rotation_deg``), drawn from
``SeedSequence([seed, crc32(ProxID), fid, copy])``.

Values are multiplied by per-channel ``scale`` factors so that they lie roughly in [0, 1]:
T2 magnitude (uint16, ~0-1000) x 1/1000, ADC (1e-6 mm^2/s, ~0-3000) x 1/3000, Ktrans
(/min, mostly 0-1) x 1, the computed high-b substitute (~0-100 on the Siemens ProstateX
scans) x 1/100. A patch whose centre lies outside any volume is an error; patch pixels that
fall outside a volume (a lesion near the field-of-view edge) take the nearest voxel's value
and are counted in meta.tsv's ``outside_px``.
"""

from __future__ import annotations

import functools
import math
import numbers
import os
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from medgan.data.preprocess.pool import check_provenance, write_subjects
from medgan.data.readers.dicom import DicomSeries, read_dicom_series
from medgan.data.readers.prostatex import (
    DEFAULT_KTRANS_PATTERN,
    ProstatexPatient,
    discover_prostatex_patient,
    find_findings_csv,
    read_findings,
    read_ktrans,
    resolve_series_patterns,
)
from medgan.errors import InputError

CHANNELS = ("T2", "ADC", "Ktrans")
DEFAULT_SCALE = {"T2": 1.0 / 1000.0, "ADC": 1.0 / 3000.0, "Ktrans": 1.0, "highb": 1.0 / 100.0}
DEFAULT_AUGMENT = {"copies": 0, "jitter_mm": 0.0, "rotation_deg": 0.0}
KTRANS_SUBSTITUTES = ("highb", "zeros")
_WRITER_KEYS = {"channels", "n_images", "shape", "resolution", "value_range", "channel_stats",
                "medgan_version"}


# --- geometry ---------------------------------------------------------------------------


def image_axes(image) -> np.ndarray:
    """3x3 matrix whose columns are the unit directions of ``image``'s x, y, z index axes."""
    return np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)


def continuous_index(image, points: np.ndarray) -> np.ndarray:
    """Continuous (x, y, z) voxel indices of world ``points`` (..., 3) in ``image``."""
    axes = image_axes(image) * np.asarray(image.GetSpacing(), dtype=np.float64)
    rel = np.asarray(points, dtype=np.float64) - np.asarray(image.GetOrigin(), dtype=np.float64)
    return np.linalg.solve(axes, rel.reshape(-1, 3).T).T.reshape(rel.shape)


def inside_volume(image, points: np.ndarray) -> np.ndarray:
    """True where ``points`` lie within the voxels of ``image`` (index in [-0.5, n - 0.5])."""
    idx = continuous_index(image, points)
    size = np.asarray(image.GetSize(), dtype=np.float64)
    return np.all((idx >= -0.5 - 1e-6) & (idx <= size - 0.5 + 1e-6), axis=-1)


def patch_points(centre, axes: np.ndarray, *, size_px: int, spacing_mm: float) -> np.ndarray:
    """World positions (size_px, size_px, 3) of the pixel centres of a patch (rows along
    ``axes[:, 1]``, columns along ``axes[:, 0]``) whose geometric centre is ``centre``."""
    offsets = (np.arange(size_px) - (size_px - 1) / 2.0) * spacing_mm
    u, v = np.asarray(axes)[:, 0], np.asarray(axes)[:, 1]
    return (np.asarray(centre, dtype=np.float64) + offsets[None, :, None] * u
            + offsets[:, None, None] * v)


def resample_patch(image, centre, axes: np.ndarray, *, size_px: int,
                   spacing_mm: float) -> np.ndarray:
    """Linear resampling of ``image`` onto the patch grid of :func:`patch_points`;
    (size_px, size_px) float32. Points outside the volume take the nearest voxel's value."""
    import SimpleITK as sitk

    axes = np.asarray(axes, dtype=np.float64)
    origin = patch_points(centre, axes, size_px=size_px, spacing_mm=spacing_mm)[0, 0]
    out = sitk.Resample(image, [size_px, size_px, 1], sitk.Transform(), sitk.sitkLinear,
                        tuple(float(v) for v in origin), (spacing_mm, spacing_mm, spacing_mm),
                        tuple(float(v) for v in axes.ravel()), 0.0, sitk.sitkFloat32, True)
    return sitk.GetArrayFromImage(out)[0]


def _rotated_axes(axes: np.ndarray, angle_deg: float) -> np.ndarray:
    a = math.radians(angle_deg)
    u, v, n = axes[:, 0], axes[:, 1], axes[:, 2]
    return np.stack([math.cos(a) * u + math.sin(a) * v, -math.sin(a) * u + math.cos(a) * v, n],
                    axis=1)


def _augment_draws(seed: int, prox_id: str, fid: int, copies: int, jitter_mm: float,
                   rotation_deg: float) -> list[tuple[float, float, float]]:
    """(du, dv, angle) per copy; copy 0 is the unaugmented patch."""
    draws = [(0.0, 0.0, 0.0)]
    key = zlib.crc32(prox_id.encode())
    for copy in range(1, copies + 1):
        rng = np.random.default_rng(np.random.SeedSequence([seed, key, fid, copy]))
        du, dv = rng.uniform(-jitter_mm, jitter_mm, size=2) if jitter_mm > 0 else (0.0, 0.0)
        angle = rng.uniform(-rotation_deg, rotation_deg) if rotation_deg > 0 else 0.0
        draws.append((float(du), float(dv), float(angle)))
    return draws


# --- settings ---------------------------------------------------------------------------


def _check_settings(patch_mm, spacing_mm, n_slices, scale, augment, ktrans_substitute, seed
                    ) -> tuple[int, dict[str, float], dict[str, Any]]:
    for name, value in (("patch_mm", patch_mm), ("spacing_mm", spacing_mm)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) \
                or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a positive number, got {value!r}")
    size_px = int(round(patch_mm / spacing_mm))
    if size_px < 2 or abs(size_px * spacing_mm - patch_mm) > 1e-6 * patch_mm:
        raise ValueError(f"patch_mm ({patch_mm}) must be a multiple (>= 2) of spacing_mm "
                         f"({spacing_mm})")
    if isinstance(n_slices, bool) or not isinstance(n_slices, numbers.Integral) \
            or n_slices < 1 or n_slices % 2 == 0:
        raise ValueError(f"n_slices must be an odd integer >= 1, got {n_slices!r}")
    if ktrans_substitute is not None and ktrans_substitute not in KTRANS_SUBSTITUTES:
        raise ValueError(f"ktrans_substitute must be one of {KTRANS_SUBSTITUTES} or None, "
                         f"got {ktrans_substitute!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    scales = dict(DEFAULT_SCALE)
    for key, value in dict(scale or {}).items():
        if key not in DEFAULT_SCALE:
            raise ValueError(f"scale has unknown key {key!r}; keys are {list(DEFAULT_SCALE)}")
        if isinstance(value, bool) or not isinstance(value, numbers.Real) \
                or not math.isfinite(value) or value <= 0:
            raise ValueError(f"scale[{key!r}] must be a positive number, got {value!r}")
        scales[key] = float(value)
    aug = dict(DEFAULT_AUGMENT)
    for key, value in dict(augment or {}).items():
        if key not in DEFAULT_AUGMENT:
            raise ValueError(f"augment has unknown key {key!r}; keys are {list(DEFAULT_AUGMENT)}")
        aug[key] = value
    copies = aug["copies"]
    if isinstance(copies, bool) or not isinstance(copies, numbers.Integral) or copies < 0:
        raise ValueError(f"augment['copies'] must be an integer >= 0, got {copies!r}")
    for key in ("jitter_mm", "rotation_deg"):
        v = aug[key]
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) \
                or v < 0:
            raise ValueError(f"augment[{key!r}] must be a number >= 0, got {v!r}")
    aug = {"copies": int(copies), "jitter_mm": float(aug["jitter_mm"]),
           "rotation_deg": float(aug["rotation_deg"])}
    return size_px, scales, aug


# --- preparation ------------------------------------------------------------------------


def prepare_prostatex(root: str | os.PathLike, out_dir: str | os.PathLike, *,
                      findings_csv: str | os.PathLike | None = None,
                      series_patterns: Mapping[str, str] | None = None,
                      ktrans_pattern: str | None = DEFAULT_KTRANS_PATTERN,
                      ktrans_substitute: str | None = None, patch_mm: float = 16.0,
                      spacing_mm: float = 1.0, n_slices: int = 1, snap_to_slice: bool = True,
                      scale: Mapping[str, float] | None = None,
                      augment: Mapping[str, Any] | None = None, seed: int = 0,
                      provenance: dict[str, Any] | None = None, workers: int = 1,
                      on_bad_case: str = "stop") -> dict[str, Any]:
    """Write ``images.npy`` (N, 3, n, n), ``meta.tsv`` and ``dataset.json`` of lesion patches.

    ``root`` holds one folder per patient (``ProstateX-0000``, DICOM series at any depth) and
    the findings CSV (``findings_csv``, relative to ``root`` unless absolute; None: the one
    ``ProstateX-Findings*.csv`` in ``root``). Series are chosen by SeriesDescription regexes
    (``series_patterns`` over :data:`~medgan.data.readers.prostatex.DEFAULT_SERIES_PATTERNS`);
    Ktrans is the ``.mhd`` matching ``ktrans_pattern`` (glob relative to ``root``,
    ``{patient}`` = ProxID; None: never look for one). Without one, ``ktrans_substitute``
    decides: ``"highb"`` puts the computed high-b DICOM series in the Ktrans channel,
    ``"zeros"`` a zero channel, None (the paper: Ktrans is required) raises. See the module
    docstring for the patch geometry, ``snap_to_slice``, ``n_slices``, ``scale`` and
    ``augment`` (``copies``, ``jitter_mm``, ``rotation_deg``).

    One meta.tsv row per image: ``subject`` (= ProxID), ``ProxID, fid, zone, ClinSig, pos``
    (as in the CSV), ``csv_line``, ``centre_mm`` (patch centre, LPS), ``slice_offset``,
    ``augment_copy`` (0 = original), ``shift_mm``, ``rotation_deg``, ``ktrans_source``
    (``file``/``highb``/``zeros``), the series folders and Ktrans file used, ``outside_px``.
    dataset.json records the settings, the substitutions and any ambiguous series choice.
    Bad input raises :class:`~medgan.errors.InputError` naming the file (and CSV line), and
    nothing is left under ``out_dir`` (``on_bad_case="skip"``: a patient whose series cannot
    be read is left out and listed in ``skipped_cases``). ``workers`` processes prepare the
    patients; the output is the same for any number. Returns the dataset.json content.
    """
    root = Path(root)
    size_px, scales, aug = _check_settings(patch_mm, spacing_mm, n_slices, scale, augment,
                                           ktrans_substitute, seed)
    patterns = resolve_series_patterns(series_patterns)
    csv_path = find_findings_csv(root, findings_csv)
    findings = read_findings(csv_path)
    patients = _discover_patients(root, findings, csv_path, patterns=patterns,
                                  ktrans_pattern=ktrans_pattern,
                                  ktrans_substitute=ktrans_substitute)
    sources = {pid: ("file" if p.ktrans is not None else ktrans_substitute)
               for pid, p in patients.items()}
    offsets = list(range(-(n_slices // 2), n_slices // 2 + 1))
    info = _prostatex_info(
        root, csv_path, findings, patients, sources, patterns=patterns,
        ktrans_pattern=ktrans_pattern, ktrans_substitute=ktrans_substitute,
        patch_mm=patch_mm, spacing_mm=spacing_mm, size_px=size_px, n_slices=n_slices,
        offsets=offsets, snap_to_slice=snap_to_slice, scales=scales, aug=aug, seed=seed)
    info = check_provenance(info, provenance, _WRITER_KEYS | {"skipped_cases"})
    by_patient = list(findings.groupby("ProxID", sort=False))
    groups = [(patients[pid], rows.to_dict("records"), sources[pid]) for pid, rows in by_patient]
    prepare_one = functools.partial(
        _prepare_patient, findings_csv=csv_path, size_px=size_px, spacing_mm=spacing_mm,
        slice_offsets=offsets, snap_to_slice=snap_to_slice, scale=scales, augment=aug,
        seed=int(seed))
    return write_subjects(out_dir, groups, prepare_one, channels=list(CHANNELS),
                          resolution=size_px, info=info,
                          names=[pid for pid, _ in by_patient],
                          sources=[g[0].folder for g in groups], workers=workers,
                          on_bad_case=on_bad_case, desc="prepare_prostatex")


def _prepare_patient(group: tuple[ProstatexPatient, list[dict[str, Any]], str], **settings: Any
                     ) -> tuple[np.ndarray, list[dict[str, Any]]]:
    patient, findings, ktrans_source = group
    return prepare_prostatex_patient(patient, findings, ktrans_source=ktrans_source, **settings)


def _discover_patients(root: Path, findings: Any, csv_path: Path, *, patterns: dict[str, str],
                       ktrans_pattern: str | None, ktrans_substitute: str | None
                       ) -> dict[str, ProstatexPatient]:
    """Each patient of the findings CSV, in CSV order, checked to have what it needs."""
    patients: dict[str, ProstatexPatient] = {}
    for prox_id, first_line in findings.groupby("ProxID", sort=False)["line"].min().items():
        try:
            patients[prox_id] = discover_prostatex_patient(
                root, prox_id, series_patterns=patterns, ktrans_pattern=ktrans_pattern)
        except InputError as err:
            if err.problem == "patient folder not found":
                raise InputError(csv_path, f"line {first_line}: no patient folder "
                                           f"{root / prox_id} for {prox_id}") from err
            raise
        patient = patients[prox_id]
        if patient.ktrans is None:
            if ktrans_substitute is None:
                raise InputError(patient.folder, f"no Ktrans file matching {ktrans_pattern!r} "
                                                 f"and ktrans_substitute is None")
            if ktrans_substitute == "highb" and "highb" not in patient.series:
                raise InputError(patient.folder, f"no Ktrans file and no high-b series to "
                                                 f"substitute: no SeriesDescription matches "
                                                 f"{patterns['highb']!r}")
    return patients


def _prostatex_info(root, csv_path, findings, patients, sources, *, patterns, ktrans_pattern,
                    ktrans_substitute, patch_mm, spacing_mm, size_px, n_slices, offsets,
                    snap_to_slice, scales, aug, seed) -> dict[str, Any]:
    """dataset.json's description of a ProstateX preparation's settings."""
    choices = [{"ProxID": pid, "channel": ch, "chosen": str(p.series[ch].folder),
                "candidates": [str(s.folder) for s in cands]}
               for pid, p in patients.items() for ch, cands in p.candidates.items()
               if len(cands) > 1 and (ch != "highb" or sources[pid] == "highb")]
    return {
        "kind": "prostatex",
        "source": str(root),
        "findings_csv": str(csv_path),
        "n_subjects": len(patients),
        "n_findings": int(len(findings)),
        "series_patterns": patterns,
        "ktrans_pattern": ktrans_pattern,
        "ktrans_substitute": ktrans_substitute,
        "ktrans_sources": {s: sum(v == s for v in sources.values())
                           for s in ("file", *KTRANS_SUBSTITUTES)},
        "patients_substituted": {pid: s for pid, s in sources.items() if s != "file"},
        "patch_mm": float(patch_mm),
        "spacing_mm": float(spacing_mm),
        "patch_px": size_px,
        "n_slices": int(n_slices),
        "slice_offsets": offsets,
        "snap_to_slice": bool(snap_to_slice),
        "scale": scales,
        "augment": aug,
        "seed": int(seed),
        "interpolation": "linear (SimpleITK.Resample) onto one world grid per patch",
        "patch_plane": "T2 series in-plane axes; centre = geometric patch centre",
        "outside_volume": "nearest-voxel extrapolation, pixel count in meta.tsv outside_px",
        "series_choices": choices,
    }


def _read_volumes(patient: ProstatexPatient, ktrans_source: str,
                  scale: Mapping[str, float] | None) -> tuple[dict, dict[str, float]]:
    """The patient's volumes ``{channel: (image, source)}`` and each channel's scale factor;
    ``ktrans_source`` is ``"file"``, ``"highb"`` or ``"zeros"`` (no Ktrans volume, factor 0)."""
    scales = {**DEFAULT_SCALE, **dict(scale or {})}
    volumes = {ch: (read_dicom_series(patient.series[ch]), patient.series[ch])
               for ch in ("T2", "ADC")}
    if ktrans_source == "file":
        volumes["Ktrans"] = (read_ktrans(patient.ktrans), patient.ktrans)
        k_scale = scales["Ktrans"]
    elif ktrans_source == "highb":
        volumes["Ktrans"] = (read_dicom_series(patient.series["highb"]), patient.series["highb"])
        k_scale = scales["highb"]
    elif ktrans_source == "zeros":
        k_scale = 0.0
    else:
        raise ValueError(f"ktrans_source must be 'file', 'highb' or 'zeros', got {ktrans_source!r}")
    return volumes, {"T2": scales["T2"], "ADC": scales["ADC"], "Ktrans": k_scale}


def prepare_prostatex_patient(patient: ProstatexPatient, findings: list[dict[str, Any]], *,
                              findings_csv: str | os.PathLike, ktrans_source: str,
                              size_px: int = 16, spacing_mm: float = 1.0,
                              slice_offsets: list[int] | tuple[int, ...] = (0,),
                              snap_to_slice: bool = True,
                              scale: Mapping[str, float] | None = None,
                              augment: Mapping[str, Any] | None = None, seed: int = 0
                              ) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """One patient's patches ``(n, 3, size_px, size_px)`` float32 and their meta rows.

    ``findings`` are rows of :func:`~medgan.data.readers.prostatex.read_findings` for this
    patient; ``ktrans_source`` is ``"file"``, ``"highb"`` or ``"zeros"``.
    """
    aug = {**DEFAULT_AUGMENT, **dict(augment or {})}
    volumes, factors = _read_volumes(patient, ktrans_source, scale)
    t2 = volumes["T2"][0]
    axes = image_axes(t2)
    normal_step = float(t2.GetSpacing()[2])
    sources = {ch: str(src.folder if isinstance(src, DicomSeries) else src)
               for ch, (_, src) in volumes.items()}

    images, rows = [], []
    for f in findings:
        pos = np.array([f["x"], f["y"], f["z"]], dtype=np.float64)
        where = (f"line {f['line']}: finding {f['ProxID']} fid {f['fid']} at "
                 f"({pos[0]:.2f}, {pos[1]:.2f}, {pos[2]:.2f}) mm")
        _check_inside(findings_csv, where, "T2", volumes["T2"], pos)
        centre0 = pos
        if snap_to_slice:
            idx = continuous_index(t2, pos)
            centre0 = pos + (round(float(idx[2])) - float(idx[2])) * normal_step * axes[:, 2]
        draws = _augment_draws(seed, str(f["ProxID"]), int(f["fid"]), int(aug["copies"]),
                               float(aug["jitter_mm"]), float(aug["rotation_deg"]))
        for offset in slice_offsets:
            centre = centre0 + offset * normal_step * axes[:, 2]
            for ch, vol in volumes.items():
                _check_inside(findings_csv, where, ch, vol, centre,
                              f" (slice offset {offset:+d})" if offset else "")
            for copy, (du, dv, angle) in enumerate(draws):
                c = centre + du * axes[:, 0] + dv * axes[:, 1]
                rot = _rotated_axes(axes, angle)
                pts = patch_points(c, rot, size_px=size_px, spacing_mm=spacing_mm)
                patch = np.zeros((len(CHANNELS), size_px, size_px), dtype=np.float32)
                outside = np.zeros((size_px, size_px), dtype=bool)
                for i, ch in enumerate(CHANNELS):
                    if ch not in volumes:
                        continue
                    image, src = volumes[ch]
                    values = resample_patch(image, c, rot, size_px=size_px,
                                            spacing_mm=spacing_mm)
                    if not np.all(np.isfinite(values)):
                        raise InputError(src.folder if isinstance(src, DicomSeries) else src,
                                         f"non-finite values in the patch of {where}")
                    patch[i] = values * factors[ch]
                    outside |= ~inside_volume(image, pts)
                images.append(patch)
                rows.append({
                    "subject": f["ProxID"], "ProxID": f["ProxID"], "fid": int(f["fid"]),
                    "zone": f["zone"], "ClinSig": "" if f["ClinSig"] is None else f["ClinSig"],
                    "pos": f["pos"], "csv_line": int(f["line"]),
                    "centre_mm": " ".join(f"{v:.4f}" for v in c), "slice_offset": offset,
                    "augment_copy": copy, "shift_mm": f"{du:.3f} {dv:.3f}",
                    "rotation_deg": round(angle, 3), "ktrans_source": ktrans_source,
                    "T2_series": sources["T2"], "ADC_series": sources["ADC"],
                    "Ktrans_path": sources.get("Ktrans", ""),
                    "outside_px": int(outside.sum()),
                })
    return np.stack(images), rows


def _check_inside(findings_csv, where: str, channel: str, volume, point, note: str = "") -> None:
    image, src = volume
    if inside_volume(image, point):
        return
    name = src.folder if isinstance(src, DicomSeries) else src
    idx = np.round(continuous_index(image, point), 1).tolist()
    size = "x".join(str(s) for s in image.GetSize())
    raise InputError(findings_csv, f"{where}{note} lies outside the {channel} volume {name} "
                                   f"(voxel index {idx}, volume {size} voxels)")
