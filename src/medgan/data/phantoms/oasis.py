"""OASIS-1-like phantoms: skull-stripped, atlas-registered T1-weighted brains of an ageing
cohort, written as Analyze 7.5 pairs in the OASIS-1 cross-sectional release's layout::

    <out_dir>/OAS1_0001_MR1/PROCESSED/MPRAGE/T88_111/
        OAS1_0001_MR1_mpr_n4_anon_111_t88_masked_gfc.img  (+ .hdr)
    <out_dir>/OAS1_0001_MR1/FSL_SEG/
        OAS1_0001_MR1_mpr_n4_anon_111_t88_masked_gfc_fseg.img  (+ .hdr)

The image is int16, big-endian, with the trailing singleton 4th axis of the real files
(``nx x ny x nz x 1``); the voxel size is chosen so that the field of view is OASIS' atlas
grid (176x208x176 mm at 1 mm), e.g. 2 mm for the default 88x104x88. The data are stored in
the Analyze convention nibabel assumes (axis codes L, A, S), so
:func:`medgan.data.readers.analyze.read_volume` returns them in LPS. The FSL_SEG image holds the
tissue classes 0 background, 1 CSF, 2 grey matter, 3 white matter (uint8). The header's
``descrip`` field records the subject's atrophy factor (``atrophy=0.512``).

Anatomy is the healthy tissue map of :func:`medgan.data.phantoms.brats.brats_phantom_labels`
(no tumour), aged by a per-subject atrophy factor in [0, 1]: the ventricles dilate into the
surrounding tissue and the sulci widen into the cortex. T1 contrast: white matter bright,
grey matter darker, CSF dark, background exactly 0 (skull-stripped), with partial-volume
blur, tissue texture, a weak residual bias field (the images are gain-field corrected) and
noise.
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from medgan.atomic import atomic_dir
from medgan.data.phantoms.brats import TISSUE_LABELS, brats_phantom_labels
from medgan.errors import InputError

OASIS_ATLAS_FOV_MM = (176.0, 208.0, 176.0)  # T88_111: 176x208x176 voxels of 1 mm
IMAGE_SUFFIX = "_mpr_n4_anon_111_t88_masked_gfc"
_CSF, _GM, _WM = TISSUE_LABELS["csf"], TISSUE_LABELS["gm"], TISSUE_LABELS["wm"]
# T1-weighted (MPRAGE) mean intensity per class: background, CSF, GM, WM.
_T1 = np.array([0.0, 280.0, 640.0, 1000.0], dtype=np.float32)


def oasis_session_id(index: int) -> str:
    """``OAS1_0001_MR1`` for subject ``index`` 1 (first session, as the release names it)."""
    return f"OAS1_{int(index):04d}_MR1"


def oasis_image_path(session: str) -> Path:
    """The skull-stripped atlas-registered image of ``session``, relative to the release root."""
    return Path(session, "PROCESSED", "MPRAGE", "T88_111", f"{session}{IMAGE_SUFFIX}.img")


def oasis_segmentation_path(session: str) -> Path:
    """The FSL FAST tissue segmentation of ``session``, relative to the release root."""
    return Path(session, "FSL_SEG", f"{session}{IMAGE_SUFFIX}_fseg.img")


def ventricle_mask(tissue: np.ndarray, *, depth: np.ndarray | None = None) -> np.ndarray:
    """The ventricles of a tissue map (:data:`~medgan.data.phantoms.brats.TISSUE_LABELS`): the
    CSF of thick pieces (at least 3 voxels across, unlike sulci and the fissure) lying more
    than a quarter of the brain's largest depth below its surface. Returns a bool array;
    it is empty when the grid is too coarse for the ventricles to be 3 voxels wide.
    ``depth`` is the brain's distance map, ``distance_transform_edt(tissue > 0)``, if known.
    """
    brain = tissue > 0
    csf = tissue == _CSF
    if depth is None:
        depth = ndimage.distance_transform_edt(brain)
    deep = depth > 0.25 * depth.max()
    core = (ndimage.distance_transform_edt(csf) >= 2.0) & deep
    labels, n = ndimage.label(core)
    if n:
        sizes = np.bincount(labels.ravel())
        keep = sizes >= max(2.0, 2e-4 * np.count_nonzero(brain))
        keep[0] = False
        core = keep[labels]
    return (ndimage.distance_transform_edt(~core) <= 2.0) & csf & deep


def apply_atrophy(tissue: np.ndarray, atrophy: float, rng: np.random.Generator) -> np.ndarray:
    """Age a tissue map: ``atrophy`` 0 leaves it as it is, 1 is a strongly atrophic brain.

    The ventricles (:func:`ventricle_mask`) grow by up to 10 % of the brain's largest depth
    into the surrounding white and deep grey matter, and grey matter touching the other CSF
    (sulci, fissure, brain surface) turns to CSF in patches covering up to half of it,
    thinning the cortex by a voxel there. Returns a new uint8 map.
    """
    atrophy = float(atrophy)
    if not 0.0 <= atrophy <= 1.0:
        raise ValueError(f"atrophy must be in [0, 1], got {atrophy!r}")
    tissue = np.array(tissue, dtype=np.uint8)
    patches = _smooth_field(tissue.shape, 1.5, rng)  # drawn always: same stream for any atrophy
    if atrophy == 0.0:
        return tissue
    brain = tissue > 0
    depth = ndimage.distance_transform_edt(brain)
    scale = float(depth.max())
    ventricles = ventricle_mask(tissue, depth=depth)
    outer_csf = (tissue == _CSF) & ~ventricles
    if ventricles.any():
        grown = ndimage.distance_transform_edt(~ventricles) <= atrophy * 0.10 * scale
        tissue[grown & brain & (depth > 0.15 * scale)] = _CSF
    rim = ndimage.binary_dilation(outer_csf) & (tissue == _GM)
    if rim.any():
        cut = np.quantile(patches[rim], 0.5 * atrophy)
        tissue[rim & (patches < cut)] = _CSF
    return tissue


def _smooth_field(shape, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, unit-variance Gaussian random field with correlation length ~``sigma``."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma)
    field -= field.mean()
    field /= field.std() + 1e-12
    return field


def oasis_phantom_subject(shape: tuple[int, int, int], rng: np.random.Generator, *,
                          atrophy: float | None = None) -> dict:
    """One subject: ``{"t1": float32 volume, "tissue": uint8 map, "atrophy": float}`` in
    LPS orientation (axis 0 right -> left, 1 anterior -> posterior, 2 inferior -> superior).

    ``atrophy`` defaults to a draw from U(0, 1) (the cohort spans young adults to the very
    old); the draw is made either way, so fixing it changes nothing else.
    """
    tissue, _ = brats_phantom_labels(shape, rng)  # the tumour label map is not used
    drawn = float(rng.uniform(0.0, 1.0))
    atrophy = drawn if atrophy is None else float(atrophy)
    tissue = apply_atrophy(tissue, atrophy, rng)
    brain = tissue > 0

    table = _T1 * np.float32(rng.uniform(0.9, 1.1))
    table[1:] *= rng.uniform(0.95, 1.05, size=3).astype(np.float32)
    weight = ndimage.gaussian_filter(brain.astype(np.float32), 0.6)
    vol = ndimage.gaussian_filter(table[tissue], 0.6) / np.maximum(weight, 1e-3)
    vol *= 1.0 + 0.03 * _smooth_field(tissue.shape, 1.0, rng)
    coords = np.meshgrid(*(np.linspace(-1.0, 1.0, n, dtype=np.float32) for n in tissue.shape),
                         indexing="ij", sparse=True)
    slope = rng.normal(0.0, 0.04, size=3)
    vol *= np.exp(sum(float(s) * c for s, c in zip(slope, coords, strict=True)))
    vol += rng.standard_normal(tissue.shape, dtype=np.float32) * (0.02 * table[_WM])
    vol = np.where(brain, np.maximum(vol, 1.0), 0.0).astype(np.float32)
    return {"t1": vol, "tissue": tissue, "atrophy": atrophy}


def write_analyze(path: str | os.PathLike, data: np.ndarray, *, zooms, descrip: str = "") -> None:
    """Write ``data`` (LPS orientation) as a big-endian Analyze 7.5 pair ``path`` (.img) and
    its ``.hdr``, stored in the Analyze convention (L, A, S) with a trailing 4th axis of 1."""
    stored = np.ascontiguousarray(data[:, ::-1, :])[..., np.newaxis]  # LPS -> LAS, 4-D
    header = nib.AnalyzeHeader(endianness=">")
    header.set_data_dtype(stored.dtype)
    header.set_data_shape(stored.shape)
    header.set_zooms((*(float(z) for z in zooms), 1.0))
    header["descrip"] = descrip[:79].encode("ascii")
    nib.save(nib.AnalyzeImage(stored, None, header), str(path))


def make_oasis_phantoms(out_dir: str | os.PathLike, *, n_subjects: int = 8,
                        shape=(88, 104, 88), seed: int = 0) -> list[Path]:
    """Write ``n_subjects`` OASIS-1 sessions under ``out_dir`` (atomically: the whole folder
    appears complete or not at all); return the session folders ``<out_dir>/OAS1_0001_MR1``
    and on.

    Subject ``i`` (1-based) is drawn from ``SeedSequence([seed, i])`` only, so adding
    subjects never changes existing ones.
    """
    if isinstance(n_subjects, bool) or not isinstance(n_subjects, (int, np.integer)) \
            or not 1 <= n_subjects <= 9999:
        raise ValueError(f"n_subjects must be an integer in 1..9999, got {n_subjects!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    try:
        dims = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be three integers, got {shape!r}") from None
    if len(dims) != 3 or any(d < 16 for d in dims) or dims != tuple(shape):
        raise ValueError(f"shape must be three integers >= 16, got {shape!r}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(out_dir, "exists and is not a directory; cannot write phantoms there")
    zooms = tuple(fov / n for fov, n in zip(OASIS_ATLAS_FOV_MM, dims, strict=True))
    sessions = [oasis_session_id(i) for i in range(1, n_subjects + 1)]
    with atomic_dir(out_dir) as tmp:
        for i, session in enumerate(sessions, start=1):
            rng = np.random.default_rng(np.random.SeedSequence([int(seed), i]))
            subject = oasis_phantom_subject(dims, rng)
            note = f"medgan OASIS-1 phantom; atrophy={subject['atrophy']:.3f}"
            image = tmp / oasis_image_path(session)
            image.parent.mkdir(parents=True)
            write_analyze(image, np.rint(subject["t1"]).astype(np.int16), zooms=zooms,
                          descrip=note)
            seg = tmp / oasis_segmentation_path(session)
            seg.parent.mkdir(parents=True)
            write_analyze(seg, subject["tissue"], zooms=zooms, descrip=note)
    return [out_dir / s for s in sessions]
