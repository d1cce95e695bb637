"""BraTS-like phantoms: skull-stripped 4-sequence brain MRI with a glioma, seeded.

Each subject is written the way a BraTS 2017-2021 training release lays it out::

    <out_dir>/BraTS20_Training_001/BraTS20_Training_001_{t1,t1ce,t2,flair,seg}.nii.gz

and, with grades (``n_lgg`` low-grade cases), either in BRATS 2015-2018's grade folders
(``<out_dir>/HGG/<case>/``, ``<out_dir>/LGG/<case>/``) or with BraTS 2019-2020's
``<out_dir>/name_mapping.csv`` (``grade_layout``). :func:`make_brats2021_phantoms` names the
cases as BraTS 2021 does, ``<out_dir>/BraTS2021_00000/BraTS2021_00000_t1.nii.gz`` and on.

Volumes are float32 on a 1 mm grid with the "LPS" affine of the real files (axis 0 runs
right -> left, axis 1 anterior -> posterior, axis 2 inferior -> superior), background exactly
0, and labels 0 (healthy), 1 (necrotic core), 2 (edema), 4 (enhancing tumour).

Anatomy, all from smooth random fields so every subject differs: an ellipsoidal cerebrum
with a noisy surface, a folded cortical ribbon with CSF-filled sulci, an interhemispheric
fissure, crescent-shaped lateral ventricles symmetric about the mid-sagittal plane, a third
ventricle, deep grey nuclei, a cerebellum with folia under a CSF tentorium and a brainstem.
One tumour sits in one hemisphere's white matter. Tissue classes are turned into four MRI
contrasts, then smoothed (partial volume), textured, bias-field modulated and noised.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from medgan.atomic import atomic_dir
from medgan.errors import InputError

SEQUENCES = ("t1", "t1ce", "t2", "flair")
TISSUE_LABELS = {"background": 0, "csf": 1, "gm": 2, "wm": 3}
GRADE_LAYOUTS = ("none", "folders", "name_mapping")
_CSF, _GM, _WM = 1, 2, 3

# Mean intensity per class (background, CSF, GM, WM, necrosis, edema, enhancing rim).
_CONTRAST = {
    "t1": [0.0, 350.0, 700.0, 950.0, 300.0, 760.0, 720.0],
    "t1ce": [0.0, 380.0, 760.0, 1000.0, 260.0, 800.0, 2100.0],
    "t2": [0.0, 2600.0, 1400.0, 950.0, 2300.0, 1900.0, 1500.0],
    "flair": [0.0, 120.0, 640.0, 450.0, 420.0, 1150.0, 750.0],
}
# Amplitude of the multiplicative tissue texture per class (tumour is the most heterogeneous).
_TEXTURE = np.array([0.0, 0.02, 0.04, 0.03, 0.10, 0.06, 0.12], dtype=np.float32)


def _smooth_noise(shape, sigma: float, rng: np.random.Generator, down: int = 1) -> np.ndarray:
    """Unit-variance Gaussian random field with correlation length ~``sigma`` voxels.

    Drawn on a grid ``down`` times coarser, smoothed there and linearly upsampled (cheap).
    """
    coarse = tuple(max(4, -(-int(s) // down)) for s in shape)
    field = rng.standard_normal(coarse, dtype=np.float32)
    field = ndimage.gaussian_filter(field, max(sigma / down, 0.5), mode="wrap")
    field -= field.mean()
    field /= field.std() + 1e-12
    for axis, (n_in, n_out) in enumerate(zip(coarse, shape, strict=True)):
        if n_in == n_out:
            continue
        pos = np.linspace(0.0, n_in - 1.0, int(n_out), dtype=np.float32)  # linear upsampling
        i0 = np.minimum(pos.astype(np.intp), n_in - 2)
        w = (pos - i0).reshape([-1 if a == axis else 1 for a in range(field.ndim)])
        field = np.take(field, i0, axis) * (1 - w) + np.take(field, i0 + 1, axis) * w
    return field


def _ellipsoid_depth(x, y, z, axes, surface=1.0) -> np.ndarray:
    """Approximate signed distance (voxels, >0 inside) to the surface r == ``surface``."""
    ax, ay, az = axes
    r = np.sqrt((x / ax) ** 2 + (y / ay) ** 2 + (z / az) ** 2)
    grad = np.sqrt((x / ax**2) ** 2 + (y / ay**2) ** 2 + (z / az**2) ** 2) / np.maximum(r, 1e-6)
    grad = np.clip(grad, 1.0 / max(np.max(a) for a in axes), 1.0 / min(np.min(a) for a in axes))
    return ((surface - r) / grad).astype(np.float32)


def _inside(x, y, z, axes) -> np.ndarray:
    return (x / axes[0]) ** 2 + (y / axes[1]) ** 2 + (z / axes[2]) ** 2 < 1.0


def brats_phantom_labels(shape: tuple[int, int, int],
                         rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Healthy tissue map (:data:`TISSUE_LABELS`, uint8) and BraTS label map (uint8, {0,1,2,4}).

    :func:`brats_phantom_subject` calls this first with the same generator, so the tissue map
    of a subject is ``brats_phantom_labels(shape, rng)[0]`` for an identically seeded ``rng``.
    """
    nx, ny, nz = shape = _check_shape(shape)
    cx, cy = nx // 2, (ny - 1) / 2.0  # the mid-sagittal plane is the voxel slice x == nx // 2
    x = (np.arange(nx, dtype=np.float32) - cx)[:, None, None]
    y = (np.arange(ny, dtype=np.float32) - cy)[None, :, None]
    z = np.arange(nz, dtype=np.float32)[None, None, :]
    jit = rng.uniform(0.93, 1.04, size=3)

    # Cerebrum: ellipsoid, wider posteriorly, flatter at the base, noisy surface.
    ax, ay, az = 0.34 * nx * jit[0], 0.37 * ny * jit[1], 0.42 * nz * jit[2]
    zc = 0.5 * nz
    size = float(np.mean([ax, ay, 0.84 * az]))  # mean semi-axis, voxels
    zz = z - zc
    low = az * np.minimum(0.55 + 0.35 * (x / ax) ** 2, 0.8)  # temporal lobes hang lower
    axes = (ax * (1.0 + 0.08 * y / ay), ay, np.where(zz < 0, low, az))
    surface = 1.0 + 0.035 * _smooth_noise(shape, 0.25 * size, rng, down=4)
    d1 = _ellipsoid_depth(x, y, zz, axes, surface)
    cerebrum = d1 > 0

    # Lateral ventricles: crescents arched in the sagittal plane, mirror images at +-x with a
    # thin septum between them. The corpus callosum caps them and, with the diencephalon,
    # joins the hemispheres; elsewhere the wavy interhemispheric fissure is a second surface
    # (the medial cortex).
    zv = zc + 0.1 * az  # level of the lateral ventricles
    vs = rng.uniform(0.75, 1.35)
    u = (y + 0.05 * ay) / (0.55 * ay)
    arch = z - (zv - 0.35 * az * u**2)
    half_z = 0.11 * az * vs * (1.0 - 0.45 * u**2)
    wx = 0.08 * ax * vs
    callosum = ((u / 1.12) ** 2 + (arch / (half_z + 0.07 * az)) ** 2 < 1.0) & (arch > -0.5 * half_z)
    joined = callosum | _inside(0.0, y + 0.02 * ay, z - (zv - 0.42 * az),
                                (1.0, 0.3 * ay, 0.4 * az))
    wave = _smooth_noise((ny, nz), 0.15 * size, rng, down=2)[None]
    medial = np.where(joined, np.float32(np.inf), np.abs(x - wave) - 0.35)
    depth = np.minimum(d1, medial)

    # Cortex (ribbon and sulci, from the outer and medial surfaces), ventricles, deep grey
    # nuclei (thalami, lentiform nuclei).
    ctx = max(1.3, 0.055 * size * rng.uniform(0.9, 1.1))  # cortical thickness
    sulcal = 0.22 * size  # sulcal depth
    fold = np.abs(_smooth_noise(shape, max(1.2, 0.06 * size), rng, down=2))
    gm = (depth < ctx) | ((depth < sulcal + ctx) & (fold < 0.55))
    csf = (d1 < 0.8) | (medial < 0) | ((depth < sulcal) & (fold < 0.12))
    for side in (-1.0, 1.0):
        offset = 0.6 + wx + 0.2 * ax * np.maximum(u, 0.0) ** 2  # horns diverge posteriorly
        csf |= ((x - side * offset) / wx) ** 2 + u**2 + (arch / half_z) ** 2 < 1.0
    csf |= (np.abs(x) < 0.6) & _inside(0.0, y - 0.05 * ay, z - (zv - 0.3 * az),
                                       (1.0, 0.14 * ay, 0.1 * az))  # third ventricle

    for side in (-1.0, 1.0):
        gm |= _inside(x - side * 0.15 * ax, y - 0.08 * ay, z - (zv - 0.3 * az),
                      (0.13 * ax, 0.17 * ay, 0.15 * az))
        gm |= _inside(x - side * 0.36 * ax, y + 0.12 * ay, z - (zv - 0.18 * az),
                      (0.07 * ax, 0.2 * ay, 0.16 * az))

    tissue = np.zeros(shape, dtype=np.uint8)
    tissue[cerebrum] = _WM
    tissue[cerebrum & gm] = _GM
    tissue[cerebrum & csf] = _CSF

    _add_hindbrain(tissue, (x, y, z), cerebrum, d1, fold, jit, size, rng)

    seg = _tumour(tissue, d1, cerebrum, x, wave, size, rng)
    return tissue, seg


def _add_hindbrain(tissue: np.ndarray, grid: tuple[np.ndarray, np.ndarray, np.ndarray],
                   cerebrum: np.ndarray, d1: np.ndarray, fold: np.ndarray, jit: np.ndarray,
                   size: float, rng: np.random.Generator) -> None:
    """Paint the brainstem and the cerebellum into ``tissue`` (in place), below the cerebrum;
    ``grid``: the voxel coordinates ``(x, y, z)`` of :func:`brats_phantom_labels`, whose ``d1``
    (depth below the cerebral surface), ``fold`` and ``jit`` it shares. Draws from ``rng``
    once (the folia's noise)."""
    x, y, z = grid
    nx, ny, nz = shape = tissue.shape
    zc = 0.5 * nz
    # Brainstem, tilted and tapering, with the pons, down to the bottom of the field of view.
    taper = 0.8 + 0.2 * np.minimum(z / zc, 1.0)
    stem = _inside(x, y - 0.35 * (0.25 * nz - z), 0.0, (0.075 * nx * taper, 0.07 * ny * taper, 1.0))
    stem = (stem & (z < zc)) | _inside(x, y + 0.02 * ny, z - 0.22 * nz,
                                       (0.09 * nx, 0.09 * ny, 0.09 * nz))
    stem &= ~cerebrum & (z >= 0.04 * nz)
    # Cerebellum under a CSF tentorium, with folia and branching white matter.
    cb_axes = (0.3 * nx * jit[0], 0.16 * ny * jit[1], 0.15 * nz * jit[2])
    yc, zb = 0.2 * ny, 0.2 * nz
    d2 = _ellipsoid_depth(x, y - yc, z - zb, cb_axes)
    cb = (d2 > 0) & ~cerebrum & ~stem
    r2 = np.sqrt((x / cb_axes[0]) ** 2 + ((y - yc) / cb_axes[1]) ** 2
                 + ((z - zb) / cb_axes[2]) ** 2)
    folia = np.mod(r2 * 6.0 + 0.7 * _smooth_noise(shape, 0.12 * size, rng, down=2), 1.0)
    tissue[cb] = _GM
    tissue[cb & ((r2 < 0.4) | ((r2 < 0.8) & (fold < 0.2)))] = _WM
    fissures = ((folia < 0.16) | (fold < 0.08)) & (r2 > 0.35)
    tissue[cb & (fissures | (d2 < 0.8) | (d1 > -1.5))] = _CSF
    tissue[stem] = _WM
    tissue[stem & ~ndimage.binary_erosion(stem)] = _CSF
    fourth = _inside(x, y - (yc - 0.95 * cb_axes[1]), z - zb, (0.03 * nx, 0.03 * ny, 0.05 * nz))
    tissue[(cb | stem) & fourth] = _CSF


def _tumour(tissue, depth, cerebrum, x, wave, size, rng) -> np.ndarray:
    """Label map with one glioma (core 1, enhancing rim 4, edema 2) in cerebral white matter.

    ``x`` is the coordinate from the mid-sagittal plane, ``wave`` the fissure's offset from it.
    """
    shape = tissue.shape
    cx = int(np.argmin(np.abs(x)))
    seg = np.zeros(shape, dtype=np.uint8)
    r_core = max(4.0, rng.uniform(0.1, 0.24) * size)
    side = rng.choice([-1.0, 1.0])
    for _ in range(200):  # rejection-sample a centre deep in one hemisphere's white matter
        c = np.array([cx + side * rng.uniform(0.2, 0.65) * size,
                      rng.uniform(0.2, 0.8) * shape[1],
                      rng.uniform(0.4, 0.8) * shape[2]]).round().astype(int)
        c = np.clip(c, 0, np.array(shape) - 1)
        if (tissue[tuple(c)] == _WM and depth[tuple(c)] > r_core + 2
                and abs(c[0] - cx) > r_core + 2):
            break
    else:  # tiny volumes: take the deepest white-matter voxel of that hemisphere
        ok = (tissue == _WM) & (side * x > 1)
        c = np.array(np.unravel_index(np.argmax(np.where(ok, depth, -np.inf)), shape))
    r_edema = r_core * rng.uniform(1.3, 1.8)
    r_nec = max(2.5, min(r_core * rng.uniform(0.5, 0.75), r_core - 1.5))
    half = int(np.ceil(1.5 * r_edema)) + 2
    lo, hi = np.maximum(c - half, 0), np.minimum(c + half + 1, shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    stretch = rng.uniform(0.8, 1.25, size=3)
    g = [(np.arange(a, b, dtype=np.float32) - cc) / s
         for a, b, cc, s in zip(lo, hi, c, stretch, strict=True)]
    dist = np.sqrt(g[0][:, None, None] ** 2 + g[1][None, :, None] ** 2 + g[2][None, None, :] ** 2)
    sub = dist.shape

    def blob(radius, rough, corr):
        return dist < radius * (1.0 + rough * _smooth_noise(sub, max(1.0, corr * radius), rng))

    local = tissue[box]
    hemi = (side * (x[box[0]] - wave[:, box[1], box[2]]) > 0.5) & cerebrum[box]
    edema = blob(r_edema, 0.4, 0.25) & hemi & ((local == _WM) | (local == _GM))
    core = blob(r_core, 0.18, 0.4) & hemi
    nec = blob(r_nec, 0.25, 0.5)
    centre = tuple(c - lo)
    core[centre] = nec[centre] = True
    core = _component_at(core, centre)  # noise can split a blob: keep the piece at the centre
    nec &= ndimage.binary_erosion(core)  # the enhancing rim surrounds the necrosis
    nec[centre] = True
    edema = _component_at(edema | core, centre) & ~core
    out = seg[box]
    out[edema] = 2
    out[core] = 4
    out[nec] = 1
    return seg


def _component_at(mask: np.ndarray, point) -> np.ndarray:
    labels, _ = ndimage.label(mask)
    return labels == labels[point]


def brats_phantom_subject(shape: tuple[int, int, int], rng: np.random.Generator, *,
                          enhancing: bool = True) -> dict[str, np.ndarray]:
    """Return {'t1','t1ce','t2','flair': float32 volumes, 'seg': uint8 label map} of the given
    shape (axes x: right -> left, y: anterior -> posterior, z: inferior -> superior).

    ``enhancing=False`` (a low-grade glioma) turns the enhancing rim into non-enhancing tumour
    core (label 1, dark in T1c like the necrosis); the random draws are the same either way.
    """
    tissue, seg = brats_phantom_labels(shape, rng)
    if not enhancing:
        seg[seg == 4] = 1
    shape = tissue.shape
    brain = tissue > 0
    cls = tissue.copy()
    cls[seg == 1], cls[seg == 2], cls[seg == 4] = 4, 5, 6

    gain = rng.uniform(0.8, 1.25)
    # Partial volume: smooth each contrast, renormalised at the brain edge so that the edge
    # does not darken; then texture (shared: it is anatomy) and per-sequence bias and noise.
    weight = ndimage.gaussian_filter(brain.astype(np.float32), 0.5, truncate=3.0)
    scale = np.where(brain, 1.0 / np.maximum(weight, 1e-3), 0.0).astype(np.float32)
    scale *= 1.0 + _TEXTURE[cls] * _smooth_noise(shape, 1.0, rng)
    out: dict[str, np.ndarray] = {}
    for name in SEQUENCES:
        table = np.asarray(_CONTRAST[name], dtype=np.float32) * np.float32(gain)
        table[1:] *= rng.uniform(0.94, 1.06, size=6).astype(np.float32)
        vol = ndimage.gaussian_filter(table[cls], 0.5, truncate=3.0)
        vol *= scale
        for axis, n in enumerate(shape):  # smooth multiplicative bias field, separable
            curve = np.exp(0.1 * _smooth_noise((n,), 0.3 * n, rng))
            vol *= curve.reshape([-1 if a == axis else 1 for a in range(3)])
        vol += rng.standard_normal(shape, dtype=np.float32) * (0.02 * table[_WM])
        np.maximum(vol, 1.0, out=vol)
        vol[~brain] = 0.0
        out[name] = vol
    out["seg"] = seg
    return out


def _check_shape(shape) -> tuple[int, int, int]:
    try:
        dims = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be three integers, got {shape!r}") from None
    if len(dims) != 3 or any(d < 16 for d in dims) or dims != tuple(shape):
        raise ValueError(f"shape must be three integers >= 16, got {shape!r}")
    return dims


def _affine(shape) -> np.ndarray:
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    affine[1, 3] = shape[1] - 1
    return affine


def _write_nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> None:
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm")
    img.set_data_dtype(data.dtype)
    nib.save(img, path)


def make_brats_phantoms(out_dir: str | os.PathLike, *, n_subjects: int = 10,
                        shape=(120, 120, 78), seed: int = 0,
                        prefix: str = "BraTS20_Training", n_lgg: int = 0,
                        grade_layout: str = "none", n_distinct: int | None = None) -> list[Path]:
    """Write n_subjects subjects under out_dir (atomically: the whole out_dir appears complete
    or not at all); return the subject folders, ``<out_dir>/<prefix>_001`` and on.

    Subject number ``i`` (1-based) is drawn from ``SeedSequence([seed, i])`` only, so adding
    subjects never changes existing ones. The last ``n_lgg`` subjects are low-grade gliomas
    (no enhancing tumour; as in BraTS 2020, whose LGG cases follow the HGG ones), the others
    high-grade. ``grade_layout`` says how the grades are written (:data:`GRADE_LAYOUTS`):
    ``"none"`` not at all; ``"folders"`` as BRATS 2015-2018, the cases inside
    ``<out_dir>/HGG/`` and ``<out_dir>/LGG/``; ``"name_mapping"`` as BraTS 2019-2020, a
    ``<out_dir>/name_mapping.csv`` with columns ``Grade`` and ``BraTS_2020_subject_ID``.

    ``n_distinct`` (a large release in little time, e.g. for a dry run that reads no voxels):
    only that many subjects are drawn, subject ``i`` from ``SeedSequence([seed, 1 + (i - 1) %
    n_distinct])`` with its own grade, and the files of a repeat are hard links to (or, where
    the file system has none, copies of) those of the first subject drawn the same way.
    """
    _check_release_args(n_subjects=n_subjects, n_lgg=n_lgg, seed=seed, n_distinct=n_distinct)
    if not isinstance(prefix, str) or not prefix or "/" in prefix or os.sep in prefix:
        raise ValueError(f"prefix must be a non-empty file-name stem, got {prefix!r}")
    names = [f"{prefix}_{i:03d}" for i in range(1, n_subjects + 1)]
    return _write_release(out_dir, names=names, n_lgg=n_lgg, shape=shape, seed=seed,
                          grade_layout=grade_layout, id_column="BraTS_2020_subject_ID",
                          n_distinct=n_distinct)


def make_brats2021_phantoms(out_dir: str | os.PathLike, *, n_subjects: int = 1251,
                            shape=(240, 240, 155), seed: int = 0, n_lgg: int = 0,
                            grade_layout: str = "name_mapping",
                            n_distinct: int | None = None) -> list[Path]:
    """A BraTS 2021 training release (1,251 cases): as :func:`make_brats_phantoms`, but the
    cases are named as BraTS 2021 names them, five digits from zero::

        <out_dir>/BraTS2021_00000/BraTS2021_00000_{t1,t1ce,t2,flair,seg}.nii.gz

    (the real release skips some numbers; these run 00000 to ``n_subjects - 1``). BraTS 2021
    records no grade; ``grade_layout="name_mapping"`` (the default) still writes one, a
    ``<out_dir>/name_mapping.csv`` with columns ``Grade`` and ``BraTS_2021_subject_ID`` as
    BraTS 2019-2020 ship it, so that a grade filter (Han 2018's ``grades: [HGG]``) can run on
    it; ``"none"`` writes no grades. The last ``n_lgg`` cases are the low-grade ones.
    """
    if grade_layout not in ("none", "name_mapping"):
        raise ValueError(f"grade_layout of a BraTS 2021 release must be 'none' or "
                         f"'name_mapping', got {grade_layout!r}")
    _check_release_args(n_subjects=n_subjects, n_lgg=n_lgg, seed=seed, n_distinct=n_distinct)
    names = [f"BraTS2021_{i:05d}" for i in range(n_subjects)]
    return _write_release(out_dir, names=names, n_lgg=n_lgg, shape=shape, seed=seed,
                          grade_layout=grade_layout, id_column="BraTS_2021_subject_ID",
                          n_distinct=n_distinct)


def _is_int(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, np.integer))


def _check_release_args(*, n_subjects, n_lgg, seed, n_distinct) -> None:
    if not _is_int(n_subjects) or n_subjects < 1:
        raise ValueError(f"n_subjects must be an integer >= 1, got {n_subjects!r}")
    if not _is_int(n_lgg) or not 0 <= n_lgg <= n_subjects:
        raise ValueError(f"n_lgg must be an integer in [0, n_subjects], got {n_lgg!r}")
    if not _is_int(seed) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if n_distinct is not None and (not _is_int(n_distinct) or not 1 <= n_distinct <= n_subjects):
        raise ValueError(f"n_distinct must be None or an integer in [1, n_subjects], "
                         f"got {n_distinct!r}")


def _write_release(out_dir, *, names: list[str], n_lgg: int, shape, seed: int,
                   grade_layout: str, id_column: str, n_distinct: int | None) -> list[Path]:
    """Write the cases ``names`` (the last ``n_lgg`` low-grade) atomically to ``out_dir``."""
    if grade_layout not in GRADE_LAYOUTS:
        raise ValueError(f"grade_layout must be one of {GRADE_LAYOUTS}, got {grade_layout!r}")
    shape = _check_shape(shape)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(out_dir, "exists and is not a directory; cannot write phantoms there")
    n = len(names)
    affine = _affine(shape)
    grades = ["HGG" if i <= n - n_lgg else "LGG" for i in range(1, n + 1)]
    parents = grades if grade_layout == "folders" else [""] * n
    period = n if n_distinct is None else n_distinct
    drawn: dict[tuple[int, str], Path] = {}  # (seed index, grade) -> the folder drawn first
    with atomic_dir(out_dir) as tmp:
        for i, (name, grade, parent) in enumerate(zip(names, grades, parents, strict=True), 1):
            folder = tmp / parent / name
            folder.mkdir(parents=True)
            key = (1 + (i - 1) % period, grade)
            if key in drawn:
                _link_case(drawn[key], folder)
                continue
            rng = np.random.default_rng(np.random.SeedSequence([int(seed), key[0]]))
            vols = brats_phantom_subject(shape, rng, enhancing=grade == "HGG")
            for k in (*SEQUENCES, "seg"):
                _write_nifti(folder / f"{name}_{k}.nii.gz", vols[k], affine)
            drawn[key] = folder
        if grade_layout == "name_mapping":
            lines = [f"Grade,{id_column}"]
            lines += [f"{g},{c}" for g, c in zip(grades, names, strict=True)]
            (tmp / "name_mapping.csv").write_text("\n".join(lines) + "\n")
    return [out_dir / parent / name for name, parent in zip(names, parents, strict=True)]


def _link_case(source: Path, folder: Path) -> None:
    """The files of case folder ``source`` under ``folder``, renamed to its case id: hard
    links where the file system allows them, else copies (a NIfTI file holds no case id)."""
    for k in (*SEQUENCES, "seg"):
        src, dst = source / f"{source.name}_{k}.nii.gz", folder / f"{folder.name}_{k}.nii.gz"
        try:
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)
