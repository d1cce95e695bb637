"""Readers and BraTS preparation on the real samples in ../shared/data (see its README).

Skipped when the data is absent, failed instead when MEDGAN_REQUIRE_REAL_DATA=1.
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from medgan.data.preprocess import (
    brain_mask,
    extract_slices,
    prepare_brats,
    resize_slices,
    slice_indices,
    zscore_in_mask,
)
from medgan.data.readers import discover_brats_cases, read_brats_case, read_nifti
from medgan.errors import InputError

pytestmark = pytest.mark.realdata

SEQUENCES = ["T1", "T1c", "T2", "FLAIR"]
BRATS2015_NAMING = {"T1c": "T1c_*.nii.gz", "FLAIR": "Flair_*.nii.gz",
                    "seg": "OTMultiClass.nii.gz"}
BRATS2015_CASES = [f"brats_2013_pat000{i}_1" for i in (3, 4, 5, 6)]


def real_data(*parts: str) -> Path:
    """Path of a file or folder under the shared real data; skip (or fail) when absent."""
    base = Path(os.environ.get("MEDGAN_SHARED_DATA")
                or Path(__file__).resolve().parents[2] / "shared" / "data")
    path = base.joinpath(*parts)
    if not path.exists():
        message = f"real data not found: {path}"
        if os.environ.get("MEDGAN_REQUIRE_REAL_DATA") == "1":
            pytest.fail(message + " (MEDGAN_REQUIRE_REAL_DATA=1)")
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def brats2023_case():
    root = real_data("BraTS2023")
    (case,) = discover_brats_cases(root, naming="brats2023", sequences=SEQUENCES)
    return case, read_brats_case(case, sequences=SEQUENCES)


def test_brats2023_read_canonical(brats2023_case):
    case, data = brats2023_case
    assert case.case_id == "BraTS-GLI-00001-000" and case.label is None
    assert set(data) == {*SEQUENCES, "affine"}
    for s in SEQUENCES:
        assert data[s].shape == (240, 240, 155) and data[s].dtype == np.float32
        assert data[s].min() == 0.0 and data[s].max() > 100  # int16 intensities, zero background
    assert nib.aff2axcodes(data["affine"]) == ("L", "P", "S")
    # reading in RAS flips the two in-plane axes back
    ras, ras_affine = read_nifti(case.files["T1"], orientation=("R", "A", "S"))
    np.testing.assert_array_equal(ras, data["T1"][::-1, ::-1, :])
    assert nib.aff2axcodes(ras_affine) == ("R", "A", "S")


def test_brats2023_zscore_and_sagittal_slices(brats2023_case):
    _, data = brats2023_case
    mask = brain_mask([data[s] for s in SEQUENCES])
    assert 0.05 < mask.mean() < 0.5
    z = zscore_in_mask(data["FLAIR"], mask)
    inside = z[mask].astype(np.float64)
    assert abs(inside.mean()) < 1e-5 and abs(inside.std() - 1.0) < 1e-5
    assert np.all(z[~mask] == inside.min())
    idx = slice_indices(240, start=80, stop=150)
    slices = extract_slices(z, plane="sagittal", indices=idx)
    assert slices.shape == (70, 155, 240)
    # superior up: the top rows of a mid-sagittal slice are background, brain lies below
    mid = extract_slices(mask, plane="sagittal", indices=[120])[0]
    assert not mid[:3].any() and mid[40:80].any()
    assert resize_slices(slices[:2], 64).shape == (2, 64, 64)


def test_brats2023_prepare(tmp_path):
    root = real_data("BraTS2023")
    info = prepare_brats(root, tmp_path / "out", naming="brats2023", resolution=64,
                         provenance={"dataset": "BraTS2023 sample"})
    images = np.load(tmp_path / "out" / "images.npy", mmap_mode="r")
    assert images.shape == (70, 4, 64, 64) and images.dtype == np.float32
    assert np.all(np.isfinite(images))
    assert info["channels"] == SEQUENCES and info["dataset"] == "BraTS2023 sample"
    meta = pd.read_csv(tmp_path / "out" / "meta.tsv", sep="\t", keep_default_na=False)
    assert meta["slice"].tolist() == list(range(80, 150))
    assert set(meta["tumour_px"]) == {""}  # no label file in this release sample


def test_brats2015_prepare_with_labels_and_brainmask(tmp_path):
    root = real_data("BraTS2015")
    for case in BRATS2015_CASES:
        real_data("BraTS2015", case)
    info = prepare_brats(root, tmp_path / "out", naming=BRATS2015_NAMING,
                         sequences=["T1c", "FLAIR"], mask="brainmask.nii.gz", resolution=64)
    images = np.load(tmp_path / "out" / "images.npy", mmap_mode="r")
    assert images.shape == (4 * 70, 2, 64, 64) and np.all(np.isfinite(images))
    assert info["channels"] == ["T1c", "FLAIR"]
    assert info["brain_mask"] == "file brainmask.nii.gz"
    meta = pd.read_csv(tmp_path / "out" / "meta.tsv", sep="\t")
    assert meta["subject"].unique().tolist() == BRATS2015_CASES
    assert meta["tumour_px"].dtype.kind == "i" and (meta["tumour_px"] > 0).sum() > 100
    assert meta["tumour_px"].max() < 155 * 240


def test_brats2015_brainmask_file_is_used(tmp_path):
    """Replace one case's brainmask by its left half: the right half must come out black."""
    src = real_data("BraTS2015", BRATS2015_CASES[0])
    case_dir = tmp_path / "root" / src.name
    case_dir.mkdir(parents=True)
    for name in ("T1c_subtrMeanDivStd.nii.gz", "Flair_subtrMeanDivStd.nii.gz",
                 "OTMultiClass.nii.gz"):
        (case_dir / name).symlink_to(src / name)
    mask_img = nib.load(str(src / "brainmask.nii.gz"))
    half = np.asarray(mask_img.dataobj) > 0.5
    half[:120] = False  # LPS: axis 0 runs towards Left, so this drops the right half
    nib.save(nib.Nifti1Image(half.astype(np.uint8), mask_img.affine), str(case_dir / "half.nii.gz"))

    prepare_brats(tmp_path / "root", tmp_path / "out", naming=BRATS2015_NAMING,
                  sequences=["T1c", "FLAIR"], mask="half.nii.gz", resolution=32)
    images = np.load(tmp_path / "out" / "images.npy")
    slices = pd.read_csv(tmp_path / "out" / "meta.tsv", sep="\t")["slice"].to_numpy()
    right = images[slices < 120]
    left = images[slices >= 125]
    assert right.std(axis=(2, 3)).max() < 1e-5  # constant background
    assert left.std(axis=(2, 3)).min() > 0.1

    # and the z-scores equal a by-hand pipeline using that mask
    (case,) = discover_brats_cases(tmp_path / "root", naming=BRATS2015_NAMING,
                                   sequences=["FLAIR"], mask="half.nii.gz")
    data = read_brats_case(case, sequences=["FLAIR"])
    z = zscore_in_mask(data["FLAIR"], data["mask"])
    expected = resize_slices(extract_slices(z, plane="sagittal", indices=slices), 32)
    np.testing.assert_allclose(images[:, 1], expected, atol=1e-5)


def test_brats2015_label_channels_scheme_and_tumour_slices(tmp_path):
    """Beers 2018's label channels from real BraTS 2015 labels (1 necrosis, 2 edema,
    3 non-enhancing, 4 enhancing): non-enhancing joins necrosis; tumour slices only."""
    root = tmp_path / "root"  # two of the cases, to keep the test quick
    for case in BRATS2015_CASES[:2]:
        src = real_data("BraTS2015", case)
        (root / case).mkdir(parents=True)
        for name in ("T1c_subtrMeanDivStd.nii.gz", "Flair_subtrMeanDivStd.nii.gz",
                     "OTMultiClass.nii.gz", "brainmask.nii.gz"):
            (root / case / name).symlink_to(src / name)
    info = prepare_brats(root, tmp_path / "out", naming=BRATS2015_NAMING,
                         sequences=["T1c", "FLAIR"], mask="brainmask.nii.gz", resolution=32,
                         label_channels=True, label_scheme="brats2015", min_tumour_px=100)
    assert info["channels"] == ["T1c", "FLAIR", "edema", "necrosis", "enhancing"]
    assert info["label_channel_values"]["necrosis"] == [1, 3]
    images = np.load(tmp_path / "out" / "images.npy")
    meta = pd.read_csv(tmp_path / "out" / "meta.tsv", sep="\t")
    assert (meta["tumour_px"] >= 100).all() and 0 < len(meta) < 2 * 70
    assert set(np.unique(images[:, 2:])) == {0.0, 1.0}
    assert images[:, 2:].sum(axis=1).max() == 1.0  # the resized channels stay disjoint
    np.testing.assert_array_equal(
        meta["tumour_px"], meta[["edema_px", "necrosis_px", "enhancing_px"]].sum(axis=1))

    # by hand for one case: necrosis = labels 1 and 3 of the sagittal slices
    case = BRATS2015_CASES[1]
    seg = read_nifti(root / case / "OTMultiClass.nii.gz")[0]
    rows = meta[meta["subject"] == case]
    slices = extract_slices(seg, plane="sagittal", indices=rows["slice"].to_numpy())
    np.testing.assert_array_equal(rows["necrosis_px"],
                                  np.isin(slices, [1, 3]).sum(axis=(1, 2)))
    np.testing.assert_array_equal(rows["enhancing_px"], (slices == 4).sum(axis=(1, 2)))
    assert rows["necrosis_px"].sum() > (slices == 1).sum() > 0  # label 3 counted too


def test_brats2015_labels_rejected_under_the_brats2017_scheme(tmp_path):
    src = real_data("BraTS2015", BRATS2015_CASES[0])
    case_dir = tmp_path / "root" / src.name
    case_dir.mkdir(parents=True)
    for name in ("Flair_subtrMeanDivStd.nii.gz", "OTMultiClass.nii.gz", "brainmask.nii.gz"):
        (case_dir / name).symlink_to(src / name)
    with pytest.raises(InputError, match=r"\[3\] are not in the brats2017 .* brats2015") as err:
        prepare_brats(tmp_path / "root", tmp_path / "out", naming=BRATS2015_NAMING,
                      sequences=["FLAIR"], mask="brainmask.nii.gz", label_channels=True,
                      label_scheme="brats2017")
    assert err.value.path == str(case_dir / "OTMultiClass.nii.gz")
    assert not (tmp_path / "out").exists()
