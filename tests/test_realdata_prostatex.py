"""ProstateX preparation on the real sample ../shared/data/ProstateX (one patient, one finding).

The sample has no Ktrans volume, so it is prepared with ``ktrans_substitute="highb"``.

How T2/ADC alignment is checked on real data (the two series have different grids: T2
384x384 at 0.5 mm, ADC 84x128 at 2 mm, origins ~12, 30 and 10 mm apart, both tilted ~18.5
degrees about the left-right axis):

1. Geometry, independently of SimpleITK: every series is re-read with pydicom, its slices
   sorted along the normal of ImageOrientationPatient, and its voxel -> world map rebuilt
   from ImagePositionPatient, ImageOrientationPatient and PixelSpacing. The world positions
   of the patch pixels (``centre_mm`` from meta.tsv plus the T2 row/column directions at
   1 mm) are mapped into each series' index space: all lie inside both volumes, and
   trilinear interpolation of the raw pixel data there (scipy ``map_coordinates``) equals the
   prepared T2, ADC and high-b channels. So every channel is sampled at the same world points.
2. Image content: the modalities differ and the diffusion images carry EPI distortion, so
   the check is loose. The ADC is sampled on a 110 mm, 2 mm-pitch neighbourhood of the patch
   centre in the T2 plane and compared (normalised cross-correlation of gradient magnitudes)
   with the T2 sampled on the same grid shifted in-plane by up to +-12 mm in 1 mm steps. The
   best shift must be within 2 mm (one ADC voxel) of zero, and the correlation at zero shift
   must beat every shift of 6 mm or more. A negative control displaces the ADC grid by 8 mm
   and must fail that check (its best shift moves by ~8 mm).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import require_real_data
from scipy import ndimage

from medgan.data.prepared import load_prepared
from medgan.data.preprocess.prostatex import DEFAULT_SCALE, prepare_prostatex, resample_patch
from medgan.data.readers.dicom import read_dicom_series
from medgan.data.readers.prostatex import discover_prostatex_patient, read_findings

pytestmark = pytest.mark.realdata

PATIENT = "ProstateX-0000"


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    root = require_real_data("ProstateX")
    out = tmp_path_factory.mktemp("realdata") / "prostatex"
    info = prepare_prostatex(root, out, ktrans_substitute="highb")
    return root, info, load_prepared(out)


def _pydicom_volume(folder: Path):
    """(volume (k, j, i) float64, world_to_index(points) -> (i, j, k)) from raw headers."""
    slices = [pydicom.dcmread(f) for f in sorted(folder.glob("*.dcm"))]
    iop = np.array([float(v) for v in slices[0].ImageOrientationPatient])
    row_dir, col_dir = iop[:3], iop[3:]
    normal = np.cross(row_dir, col_dir)
    slices.sort(key=lambda ds: float(np.dot([float(v) for v in ds.ImagePositionPatient],
                                            normal)))
    ipp = np.array([[float(v) for v in ds.ImagePositionPatient] for ds in slices])
    row_spacing, col_spacing = (float(v) for v in slices[0].PixelSpacing)
    step = (ipp[-1] - ipp[0]) / (len(slices) - 1)
    # world = ipp0 + i * col_spacing * row_dir + j * row_spacing * col_dir + k * step
    matrix = np.stack([col_spacing * row_dir, row_spacing * col_dir, step], axis=1)
    volume = np.stack([ds.pixel_array.astype(np.float64) * float(ds.get("RescaleSlope", 1))
                       + float(ds.get("RescaleIntercept", 0)) for ds in slices])

    def world_to_index(points):
        return np.linalg.solve(matrix, (np.asarray(points) - ipp[0]).reshape(-1, 3).T).T

    return volume, world_to_index, (row_dir, col_dir)


def test_sample_prepares_one_patch_with_the_high_b_substitute_recorded(sample):
    root, info, data = sample
    findings = read_findings(root / "ProstateX-Findings.csv")
    assert len(findings) == 1 and data.images.shape == (1, 3, 16, 16)
    assert info["ktrans_substitute"] == "highb"
    assert info["ktrans_sources"] == {"file": 0, "highb": 1, "zeros": 0}
    assert info["patients_substituted"] == {PATIENT: "highb"}
    row = data.meta.iloc[0]
    assert row.ProxID == PATIENT and row.fid == 1 and row.zone == "PZ" and bool(row.ClinSig)
    assert row.ktrans_source == "highb" and Path(row.Ktrans_path).name == "calc_bval"
    assert Path(row.T2_series).name == "t2_tse_tra" and Path(row.ADC_series).name == "adc"
    assert row.outside_px == 0
    assert np.all(data.images >= 0) and data.images.max() < 1.5


def test_patch_lies_inside_both_volumes_and_matches_independent_resampling(sample):
    root, info, data = sample
    row = data.meta.iloc[0]
    centre = np.array([float(v) for v in row.centre_mm.split()])
    pos = np.array([float(v) for v in row.pos.split()])
    t2_vol, t2_index, (u, v) = _pydicom_volume(Path(row.T2_series))
    # the centre was moved along the T2 slice normal only, onto a T2 slice plane
    normal = np.cross(u, v)
    assert np.linalg.norm(np.cross(centre - pos, normal)) < 1e-3
    assert abs(t2_index(centre)[0, 2] - round(t2_index(centre)[0, 2])) < 1e-3
    n = info["patch_px"]
    offsets = (np.arange(n) - (n - 1) / 2) * info["spacing_mm"]
    points = centre + offsets[None, :, None] * u + offsets[:, None, None] * v  # (row, col, 3)
    scales = {"T2": DEFAULT_SCALE["T2"], "ADC": DEFAULT_SCALE["ADC"],
              "Ktrans": DEFAULT_SCALE["highb"]}
    for channel, folder in (("T2", row.T2_series), ("ADC", row.ADC_series),
                            ("Ktrans", row.Ktrans_path)):
        vol, to_index, _ = (t2_vol, t2_index, None) if channel == "T2" \
            else _pydicom_volume(Path(folder))
        idx = to_index(points.reshape(-1, 3))  # (i, j, k)
        upper = np.array(vol.shape[::-1]) - 1
        assert np.all(idx >= 0) and np.all(idx <= upper), channel  # inside, no extrapolation
        expected = ndimage.map_coordinates(vol, idx[:, ::-1].T, order=1).reshape(n, n)
        got = data.images[0, data.channels.index(channel)] / scales[channel]
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3 * expected.max())


def _gradient_ncc_by_shift(t2_image, adc_image, centre, axes, *, adc_shift=(0.0, 0.0),
                           max_shift=12):
    """{(dx, dy) mm: NCC} of ADC gradients with T2 gradients shifted in-plane by (dx, dy)."""
    n_small, pitch = 55, 2.0  # 110 mm at 2 mm; offsets -54..54 mm, integer mm
    n_big = n_small * 2 + 1 + 2 * max_shift  # T2 at 1 mm, wide enough for every shift
    u, v = axes[:, 0], axes[:, 1]
    adc_centre = centre + adc_shift[0] * u + adc_shift[1] * v
    adc = resample_patch(adc_image, adc_centre, axes, size_px=n_small, spacing_mm=pitch)
    big = resample_patch(t2_image, centre, axes, size_px=n_big, spacing_mm=1.0)
    half = n_big // 2
    g_adc = ndimage.gaussian_gradient_magnitude(adc.astype(np.float64), 1.0)
    g_adc = (g_adc - g_adc.mean()) / g_adc.std()
    scores = {}
    for dy in range(-max_shift, max_shift + 1):
        for dx in range(-max_shift, max_shift + 1):
            r0, c0 = half + dy - (n_small - 1), half + dx - (n_small - 1)
            t2 = big[r0:r0 + 2 * n_small - 1:2, c0:c0 + 2 * n_small - 1:2]
            g = ndimage.gaussian_gradient_magnitude(t2.astype(np.float64), 1.0)
            scores[(dx, dy)] = float(np.mean(g_adc * (g - g.mean()) / g.std()))
    return scores


def _alignment_verdict(scores):
    best = max(scores, key=scores.get)
    far = max(s for (dx, dy), s in scores.items() if max(abs(dx), abs(dy)) >= 6)
    return best, scores[(0, 0)], far


def test_adc_and_t2_content_agree_at_zero_shift(sample):
    root, _, data = sample
    patient = discover_prostatex_patient(root, PATIENT)
    t2 = read_dicom_series(patient.series["T2"])
    adc = read_dicom_series(patient.series["ADC"])
    centre = np.array([float(v) for v in data.meta.iloc[0].centre_mm.split()])
    axes = np.asarray(t2.GetDirection()).reshape(3, 3)

    best, at_zero, far = _alignment_verdict(_gradient_ncc_by_shift(t2, adc, centre, axes))
    assert max(abs(best[0]), abs(best[1])) <= 2, best
    assert at_zero > far + 0.03, (at_zero, far)

    # negative control: an ADC grid displaced by 8 mm is caught
    shifted = _gradient_ncc_by_shift(t2, adc, centre, axes, adc_shift=(8.0, 0.0))
    best_c, at_zero_c, far_c = _alignment_verdict(shifted)
    assert abs(best_c[0] - 8) <= 2 and abs(best_c[1]) <= 2, best_c
    assert at_zero_c < far_c
