"""ProstateX-like phantoms: multi-parametric prostate MRI with lesions, in the release's formats.

Each subject is written the way the TCIA ProstateX download lays it out (with the Ktrans
archive merged into the patient folders)::

    <out_dir>/ProstateX-Findings-Train.csv            ProxID,fid,pos,zone,ClinSig
    <out_dir>/ProstateX-0000/01-01-2012-NA-MR prostate phantom-00000/
        2.000000-t2tsesag-NNNNN/1-01.dcm ...          sagittal T2 (a distractor series)
        3.000000-t2tsetra-NNNNN/1-01.dcm ...          axial T2, 0.5 x 0.5 x 3 mm, uint16
        7.000000-ep2ddifftraDYNDISTADC-NNNNN/...      ADC (1e-6 mm^2/s), 2 x 2 x 3 mm, uint16
        8.000000-ep2ddifftraDYNDISTCALCBVAL-NNNNN/... computed high-b image, ADC grid, uint16
    <out_dir>/ProstateX-0000/ProstateX-0000-Ktrans.mhd (+ .zraw)   float32 /min, 1.5x1.5x3 mm

The anatomy is a continuous scene in scanner (LPS) millimetres, sampled at the voxel centres
of every grid, so the series agree in world coordinates while their grids differ: the axial
T2 and the diffusion series share an oblique orientation (tilted about the left-right axis,
as the real scans are) and their slice planes, but the ADC grid has another in-plane origin
(off by multiples of 0.25 mm, so its voxel centres interleave with the T2 ones), extent and
matrix; the Ktrans grid is axis-aligned. The scene: soft
tissue, an ellipsoidal gland with a peripheral zone (bright on T2, high ADC) around an
anterior transition zone, 1-2 spherical lesions (dark on T2 and ADC, bright on high-b and
Ktrans), a shared tissue texture, partial-volume edges and per-series noise. The findings
CSV lists the lesion centres in LPS mm with their zone.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from medgan.atomic import atomic_dir
from medgan.errors import InputError

FINDINGS_NAME = "ProstateX-Findings-Train.csv"
T2_GRID = {"shape": (128, 128, 10), "spacing": (0.5, 0.5, 3.0)}  # (x, y, z) voxels, mm
ADC_GRID = {"shape": (56, 44, 12), "spacing": (2.0, 2.0, 3.0)}
KTRANS_GRID = {"shape": (64, 64, 14), "spacing": (1.5, 1.5, 3.0)}
SAG_GRID = {"shape": (32, 32, 3), "spacing": (2.0, 2.0, 6.0)}

# Intensity per tissue: background soft tissue, peripheral zone, transition zone, lesion.
_CONTRAST = {
    "T2": (280.0, 600.0, 380.0, 160.0),
    "ADC": (1400.0, 1800.0, 1300.0, 780.0),
    "highb": (8.0, 14.0, 18.0, 48.0),
    "Ktrans": (0.05, 0.10, 0.18, 0.75),
}
_NOISE = {"T2": 12.0, "ADC": 45.0, "highb": 1.5, "Ktrans": 0.015}
_SERIES = {  # channel: (SeriesNumber, SeriesDescription, folder tag, ImageType)
    "sag": (2, "t2_tse_sag", "t2tsesag", ["ORIGINAL", "PRIMARY", "M", "NORM", "DIS2D"]),
    "T2": (3, "t2_tse_tra", "t2tsetra", ["ORIGINAL", "PRIMARY", "M", "NORM", "DIS2D"]),
    "ADC": (7, "ep2d_diff_tra_DYNDIST_ADC", "ep2ddifftraDYNDISTADC",
            ["DERIVED", "PRIMARY", "DIFFUSION", "ADC", "DIS2D"]),
    "highb": (8, "ep2d_diff_tra_DYNDISTCALC_BVAL", "ep2ddifftraDYNDISTCALCBVAL",
              ["DERIVED", "PRIMARY", "DIFFUSION", "CALC_BVALUE", "TRACEW", "DIS2D"]),
}


# --- geometry -------------------------------------------------------------------------


def grid_points(shape, spacing, origin, direction) -> np.ndarray:
    """World (LPS mm) coordinates of the voxel centres, array ``(nz, ny, nx, 3)``.

    ``shape``/``spacing`` are (x, y, z) as in SimpleITK; ``direction`` is the 3x3 matrix
    whose columns are the directions of the x, y, z index axes.
    """
    nx, ny, nz = (int(s) for s in shape)
    axes = np.asarray(direction, dtype=np.float64) * np.asarray(spacing, dtype=np.float64)
    k, j, i = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    idx = np.stack([i, j, k], axis=-1).astype(np.float64)
    return np.asarray(origin, dtype=np.float64) + idx @ axes.T


def _tilt(angle_deg: float) -> np.ndarray:
    """Axial orientation tilted about the left-right axis (columns: row, column, normal)."""
    a = np.deg2rad(angle_deg)
    return np.array([[1.0, 0.0, 0.0], [0.0, np.cos(a), -np.sin(a)], [0.0, np.sin(a), np.cos(a)]])


def _origin_for_centre(centre, shape, spacing, direction) -> np.ndarray:
    half = (np.asarray(shape, dtype=np.float64) - 1) / 2 * np.asarray(spacing)
    return np.asarray(centre) - np.asarray(direction) @ half


# --- scene ----------------------------------------------------------------------------


def _soft_inside(q: np.ndarray, axes, width: float) -> np.ndarray:
    """~1 inside the ellipsoid with semi-axes ``axes`` (mm), ~0 outside, edge ``width`` mm."""
    a = np.asarray(axes, dtype=np.float32)
    r = np.sqrt(np.sum((q / a) ** 2, axis=-1))
    dist = (1.0 - r) * (float(np.min(a)) / max(width, 1e-3))  # distance to the surface / width
    return 1.0 / (1.0 + np.exp(-np.clip(dist, -40, 40)))


def prostatex_phantom_scene(rng: np.random.Generator) -> dict:
    """Draw one subject's anatomy: gland centre/axes, zones, lesions, texture, gains, tilt."""
    centre = np.array([rng.uniform(-8, 8), rng.uniform(15, 35), rng.uniform(-45, -25)])
    axes = np.array([rng.uniform(19, 23), rng.uniform(14, 17), rng.uniform(13, 16)])
    side = rng.choice([-1.0, 1.0])
    lesions = [{"offset": np.array([side * 0.45 * axes[0], 0.6 * axes[1],
                                    rng.uniform(-0.2, 0.2) * axes[2]]),
                "radius": rng.uniform(4.5, 6.0), "zone": "PZ"}]
    if rng.random() < 0.6:
        lesions.append({"offset": np.array([-side * 0.38 * axes[0], -0.35 * axes[1],
                                            rng.uniform(-0.2, 0.2) * axes[2]]),
                        "radius": rng.uniform(4.5, 5.5), "zone": "TZ"})
    n_waves = 8
    wave_dirs = rng.standard_normal((n_waves, 3))
    wave_dirs /= np.linalg.norm(wave_dirs, axis=1, keepdims=True)
    wavelengths = rng.uniform(3.0, 10.0, n_waves)
    return {
        "centre": centre, "axes": axes, "lesions": lesions,
        "tz_offset": np.array([0.0, -0.3 * axes[1], 0.0]), "tz_scale": rng.uniform(0.5, 0.6),
        "waves": wave_dirs * (2 * np.pi / wavelengths)[:, None],
        "phases": rng.uniform(0, 2 * np.pi, n_waves),
        "gain": {"T2": rng.uniform(0.8, 1.2), "ADC": rng.uniform(0.95, 1.05),
                 "highb": rng.uniform(0.8, 1.2), "Ktrans": rng.uniform(0.85, 1.15)},
        "lesion_gain": rng.uniform(0.85, 1.15, size=(len(lesions), 4)),
        "tilt_deg": rng.uniform(-20.0, 5.0),
        "shift": rng.integers(-24, 25, size=(3, 2)) * 0.25,  # grid-centre offsets, mm
    }


def render_scene(scene: dict, points: np.ndarray, channel: str, *, edge_mm: float,
                 rng: np.random.Generator) -> np.ndarray:
    """The ``channel`` intensity of ``scene`` at world ``points`` (..., 3), float32, noised."""
    bg, pz, tz, lesion = _CONTRAST[channel]
    points = np.asarray(points, dtype=np.float32)
    q = points - scene["centre"].astype(np.float32)
    gland = _soft_inside(q, scene["axes"], edge_mm)
    inner = _soft_inside(q - scene["tz_offset"], scene["axes"] * scene["tz_scale"], edge_mm)
    value = bg + gland * ((pz + inner * (tz - pz)) - bg)
    for n, les in enumerate(scene["lesions"]):
        m = _soft_inside(q - les["offset"], (les["radius"],) * 3, edge_mm)
        target = lesion * scene["lesion_gain"][n, list(_CONTRAST).index(channel)]
        value = value + m * (target - value)
    texture = np.sin(points @ scene["waves"].T.astype(np.float32)
                     + scene["phases"].astype(np.float32)).sum(axis=-1)
    value = value * (1.0 + 0.05 * texture / np.sqrt(len(scene["phases"])))
    value = value * scene["gain"][channel]
    value = value + rng.standard_normal(value.shape, dtype=np.float32) * _NOISE[channel]
    return np.maximum(value, 0.0).astype(np.float32)


# --- writers --------------------------------------------------------------------------


def write_dicom_series(folder: str | os.PathLike, volume: np.ndarray, *, origin, spacing,
                       direction, description: str, series_number: int, patient_id: str,
                       uid_seed: str, image_type=("ORIGINAL", "PRIMARY", "M"),
                       study_uid: str | None = None, frame_uid: str | None = None
                       ) -> list[Path]:
    """Write ``volume`` (nz, ny, nx) as an MR DICOM series, one file per slice (``1-01.dcm``).

    ``origin`` is the world position of voxel (0, 0, 0), ``spacing`` (x, y, z) mm and
    ``direction`` the 3x3 matrix whose columns are the x (row), y (column) and z (slice)
    directions, all in LPS. Values are rounded to uint16. UIDs derive from ``uid_seed``,
    so the same call writes byte-identical files.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vol = np.asarray(volume)
    if vol.ndim != 3:
        raise ValueError(f"volume must be (nz, ny, nx), got shape {vol.shape}")
    data = np.clip(np.rint(vol), 0, 65535).astype("<u2")
    d = np.asarray(direction, dtype=np.float64)
    sx, sy, sz = (float(s) for s in spacing)
    origin = np.asarray(origin, dtype=np.float64)
    study_uid = study_uid or generate_uid(entropy_srcs=[uid_seed, "study"])
    frame_uid = frame_uid or generate_uid(entropy_srcs=[uid_seed, "frame"])
    series_uid = generate_uid(entropy_srcs=[uid_seed, description, "series"])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()  # one dataset, its per-slice elements updated before each write
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = list(image_type)
    ds.SOPClassUID = MRImageStorage
    ds.StudyDate = ds.SeriesDate = "20120101"
    ds.Modality = "MR"
    ds.Manufacturer = "medgan phantom"
    ds.SeriesDescription = description
    ds.PatientName = ds.PatientID = patient_id
    ds.BodyPartExamined = "PROSTATE"
    ds.SliceThickness = ds.SpacingBetweenSlices = f"{sz:g}"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = frame_uid
    ds.SeriesNumber = int(series_number)
    ds.ImageOrientationPatient = [f"{v:.10g}" for v in (*d[:, 0], *d[:, 1])]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(data.shape[1]), int(data.shape[2])
    ds.PixelSpacing = [f"{sy:g}", f"{sx:g}"]  # row spacing (along y), column spacing
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    files = []
    for k in range(data.shape[0]):
        sop_uid = generate_uid(entropy_srcs=[uid_seed, description, str(k)])
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = sop_uid
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [f"{v:.10g}" for v in origin + k * sz * d[:, 2]]
        ds.PixelData = data[k].tobytes()
        path = folder / f"1-{k + 1:02d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return files


def write_metaimage(path: str | os.PathLike, volume: np.ndarray, *, origin, spacing,
                    direction) -> Path:
    """Write ``volume`` (nz, ny, nx) float32 as a compressed MetaImage ``.mhd`` + ``.zraw``."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.asarray(volume, dtype=np.float32))
    image.SetOrigin(tuple(float(v) for v in origin))
    image.SetSpacing(tuple(float(v) for v in spacing))
    image.SetDirection(tuple(float(v) for v in np.asarray(direction, dtype=np.float64).ravel()))
    sitk.WriteImage(image, str(path), useCompression=True)
    return Path(path)


def _series_volume(scene, grid, origin, direction, channel, rng) -> np.ndarray:
    pts = grid_points(grid["shape"], grid["spacing"], origin, direction)
    return render_scene(scene, pts, channel, edge_mm=0.5 * max(grid["spacing"][:2]), rng=rng)


def write_prostatex_subject(folder: Path, patient_id: str, index: int, seed: int) -> list[dict]:
    """Write one phantom patient into ``folder``; return its findings (rows of the CSV)."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))
    scene = prostatex_phantom_scene(rng)
    tilt = _tilt(scene["tilt_deg"])
    c = scene["centre"]
    shift = scene["shift"]  # in-plane offsets (mm) of the T2, ADC and Ktrans grid centres
    t2_origin = _origin_for_centre(c + tilt @ np.r_[shift[0], 0.0], T2_GRID["shape"],
                                   T2_GRID["spacing"], tilt)
    # ADC: other in-plane origin and extent, the same slice planes plus one more each side.
    adc_origin = _origin_for_centre(c + tilt @ np.r_[shift[1], 0.0], ADC_GRID["shape"],
                                    ADC_GRID["spacing"], tilt)
    t2_first = tilt.T @ (t2_origin - c)
    adc_local = tilt.T @ (adc_origin - c)
    adc_local[2] = t2_first[2] - ADC_GRID["spacing"][2]
    adc_origin = c + tilt @ adc_local
    k_origin = _origin_for_centre(c + np.r_[shift[2], 1.0], KTRANS_GRID["shape"],
                                  KTRANS_GRID["spacing"], np.eye(3))
    sag_dir = np.array([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    sag_origin = _origin_for_centre(c, SAG_GRID["shape"], SAG_GRID["spacing"], sag_dir)

    study = folder / f"01-01-2012-NA-MR prostate phantom-{index:05d}"
    uid_seed = f"medgan-prostatex-{seed}-{index}"
    from pydicom.uid import generate_uid

    study_uid = generate_uid(entropy_srcs=[uid_seed, "study"])
    frame_uid = generate_uid(entropy_srcs=[uid_seed, "frame"])
    for key, grid, origin, direction in (("sag", SAG_GRID, sag_origin, sag_dir),
                                         ("T2", T2_GRID, t2_origin, tilt),
                                         ("ADC", ADC_GRID, adc_origin, tilt),
                                         ("highb", ADC_GRID, adc_origin, tilt)):
        number, description, tag, image_type = _SERIES[key]
        channel = "T2" if key == "sag" else key
        vol = _series_volume(scene, grid, origin, direction, channel, rng)
        uid_tail = int(rng.integers(0, 100000))
        write_dicom_series(study / f"{number}.000000-{tag}-{uid_tail:05d}", vol, origin=origin,
                           spacing=grid["spacing"], direction=direction,
                           description=description, series_number=number,
                           patient_id=patient_id, uid_seed=uid_seed, image_type=image_type,
                           study_uid=study_uid, frame_uid=frame_uid)
    ktrans = _series_volume(scene, KTRANS_GRID, k_origin, np.eye(3), "Ktrans", rng)
    write_metaimage(folder / f"{patient_id}-Ktrans.mhd", ktrans, origin=k_origin,
                    spacing=KTRANS_GRID["spacing"], direction=np.eye(3))
    return [{"ProxID": patient_id, "fid": fid,
             "pos": " ".join(f"{v:.4f}" for v in c + les["offset"]), "zone": les["zone"],
             "ClinSig": "TRUE" if rng.random() < 0.5 else "FALSE"}
            for fid, les in enumerate(scene["lesions"], start=1)]


def make_prostatex_phantoms(out_dir: str | os.PathLike, *, n_subjects: int = 4,
                            seed: int = 0) -> list[Path]:
    """Write ``n_subjects`` ProstateX-like patients and the findings CSV under ``out_dir``
    (atomically); return the patient folders ``<out_dir>/ProstateX-0000`` and on.

    Patient ``i`` (0-based, as ProxIDs count) is drawn from ``SeedSequence([seed, i])`` only,
    so adding subjects never changes existing ones.
    """
    if isinstance(n_subjects, bool) or not isinstance(n_subjects, int | np.integer) \
            or n_subjects < 1:
        raise ValueError(f"n_subjects must be an integer >= 1, got {n_subjects!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(out_dir, "exists and is not a directory; cannot write phantoms there")
    names = [f"ProstateX-{i:04d}" for i in range(n_subjects)]
    with atomic_dir(out_dir) as tmp:
        findings = []
        for i, name in enumerate(names):
            (tmp / name).mkdir()
            findings.extend(write_prostatex_subject(tmp / name, name, i, int(seed)))
        lines = ["ProxID,fid,pos,zone,ClinSig"]
        lines += [f"{f['ProxID']},{f['fid']},{f['pos']},{f['zone']},{f['ClinSig']}"
                  for f in findings]
        (tmp / FINDINGS_NAME).write_text("\n".join(lines) + "\n")
    return [out_dir / name for name in names]
