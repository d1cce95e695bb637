"""Tests of the NIfTI/BraTS readers and prepare_brats on small synthetic cases."""

from __future__ import annotations

import gzip
import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from medgan.data.preprocess import prepare_brats
from medgan.data.readers import (
    NAMING_PRESETS,
    BratsCase,
    discover_brats_cases,
    read_brats_case,
    read_nifti,
    resolve_naming,
)
from medgan.errors import InputError

SHAPE = (32, 32, 20)
LPS_AFFINE = np.array([[-1.0, 0, 0, 31], [0, -1.0, 0, 31], [0, 0, 1.0, 0], [0, 0, 0, 1]])
SEQ_SUFFIX = {
    "brats2017": {"T1": "_t1", "T1c": "_t1ce", "T2": "_t2", "FLAIR": "_flair", "seg": "_seg"},
    "brats2023": {"T1": "-t1n", "T1c": "-t1c", "T2": "-t2w", "FLAIR": "-t2f", "seg": "-seg"},
}
CHANNEL_LEVEL = {"T1": 100.0, "T1c": 200.0, "T2": 300.0, "FLAIR": 400.0}


def _save(path, data, affine=LPS_AFFINE, dtype=np.float32):
    img = nib.Nifti1Image(np.asarray(data, dtype=dtype), affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nib.save(img, str(path))
    return path


def _volume(level: float, seed: int, shape=SHAPE) -> np.ndarray:
    """A zero-background 'head': a noisy box whose mean is ``level``."""
    rng = np.random.default_rng(seed)
    vol = np.zeros(shape, np.float32)
    vol[4:-4, 4:-4, 3:-3] = rng.normal(level, level / 10, (shape[0] - 8, shape[1] - 8,
                                                           shape[2] - 6))
    return vol


def _write_case(root, case, *, naming="brats2017", label=True, seed=0, shape=SHAPE,
                sequences=("T1", "T1c", "T2", "FLAIR")):
    folder = root / case
    folder.mkdir(parents=True)
    for i, s in enumerate(sequences):
        _save(folder / f"{case}{SEQ_SUFFIX[naming][s]}.nii.gz",
              _volume(CHANNEL_LEVEL[s], seed * 10 + i, shape))
    if label:
        seg = np.zeros(shape, np.float32)
        seg[10:14, 12:20, 8:12] = 1
        seg[14:16, 12:20, 8:12] = 4
        _save(folder / f"{case}{SEQ_SUFFIX[naming]['seg']}.nii.gz", seg)
    return folder


def _to_ras(data, affine):
    """The same scan stored RAS: flip axes 0 and 1 and adjust the affine."""
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[0, 3] = data.shape[0] - 1
    flip[1, 3] = data.shape[1] - 1
    return data[::-1, ::-1, :].copy(), affine @ flip


# --- read_nifti ----------------------------------------------------------------------


def test_read_nifti_ras_and_lps_read_back_identical(tmp_path):
    data = _volume(50.0, 1)
    data[1, 2, 3] = 7.0  # asymmetric marker
    lps = _save(tmp_path / "lps.nii.gz", data)
    ras_data, ras_affine = _to_ras(data, LPS_AFFINE)
    ras = _save(tmp_path / "ras.nii.gz", ras_data, ras_affine)
    assert nib.aff2axcodes(nib.load(str(ras)).affine) == ("R", "A", "S")

    a, aff_a = read_nifti(lps)
    b, aff_b = read_nifti(ras)
    assert a.dtype == np.float32 and a.shape == SHAPE
    np.testing.assert_array_equal(a, data)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(aff_a, LPS_AFFINE, atol=1e-6)
    np.testing.assert_allclose(aff_b, LPS_AFFINE, atol=1e-6)
    assert nib.aff2axcodes(aff_b) == ("L", "P", "S")


def test_read_nifti_other_orientation_permutes_axes(tmp_path):
    data = _volume(50.0, 2)
    path = _save(tmp_path / "lps.nii.gz", data)
    ras, ras_aff = read_nifti(path, orientation=("R", "A", "S"))
    np.testing.assert_array_equal(ras, data[::-1, ::-1, :])
    assert nib.aff2axcodes(ras_aff) == ("R", "A", "S")


def test_read_nifti_int16_and_float32_agree(tmp_path):
    data = np.rint(_volume(300.0, 3))
    a, _ = read_nifti(_save(tmp_path / "f.nii.gz", data, dtype=np.float32))
    b, _ = read_nifti(_save(tmp_path / "i.nii.gz", data, dtype=np.int16))
    assert b.dtype == np.float32
    np.testing.assert_array_equal(a, b)


def test_read_nifti_missing_file(tmp_path):
    with pytest.raises(InputError, match="not found") as err:
        read_nifti(tmp_path / "nope.nii.gz")
    assert str(tmp_path / "nope.nii.gz") in str(err.value)


def test_read_nifti_truncated_gzip_names_the_file(tmp_path):
    good = _save(tmp_path / "good.nii.gz", _volume(50.0, 4))
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(InputError) as err:
        read_nifti(bad)
    assert str(err.value).startswith(f"{bad}: ")
    assert "\n" not in str(err.value)


def test_read_nifti_not_nifti(tmp_path):
    bad = tmp_path / "text.nii.gz"
    bad.write_bytes(gzip.compress(b"this is not an image" * 40))
    with pytest.raises(InputError, match="NIfTI") as err:
        read_nifti(bad)
    assert err.value.path == str(bad)


@pytest.mark.parametrize("shape", [(8, 8), (8, 8, 4, 2)])
def test_read_nifti_not_3d(tmp_path, shape):
    path = _save(tmp_path / "x.nii.gz", np.ones(shape))
    with pytest.raises(InputError, match="3-D") as err:
        read_nifti(path)
    assert err.value.path == str(path)


def test_read_nifti_drops_trailing_singleton_axis(tmp_path):
    data = _volume(50.0, 5)
    volume, _ = read_nifti(_save(tmp_path / "x.nii.gz", data[..., None]))
    np.testing.assert_array_equal(volume, data)


def test_read_nifti_nan_raises(tmp_path):
    data = _volume(50.0, 6)
    data[5, 5, 5] = np.nan
    data[6, 6, 6] = np.inf
    path = _save(tmp_path / "nan.nii.gz", data)
    with pytest.raises(InputError, match="2 voxels are NaN or infinite") as err:
        read_nifti(path)
    assert err.value.path == str(path)


# --- naming and discovery ------------------------------------------------------------


def test_resolve_naming_presets_and_extension():
    assert resolve_naming("brats2023")["FLAIR"] == "{case}-t2f.nii.gz"
    custom = resolve_naming({"preset": "brats2017", "seg": "{case}_Segm.nii.gz"})
    assert custom == {**NAMING_PRESETS["brats2017"], "seg": "{case}_Segm.nii.gz"}
    with pytest.raises(ValueError, match="preset"):
        resolve_naming("brats1999")
    with pytest.raises(ValueError, match="unknown key"):
        resolve_naming({"Flair": "x.nii.gz"})


@pytest.mark.parametrize("naming", ["brats2017", "brats2023"])
def test_discover_presets(tmp_path, naming):
    _write_case(tmp_path, "case_b", naming=naming, label=False, seed=1)
    _write_case(tmp_path, "case_a", naming=naming, seed=2)
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "survival_info.csv").write_text("x\n")
    cases = discover_brats_cases(tmp_path, naming=naming)
    assert [c.case_id for c in cases] == ["case_a", "case_b"]
    assert list(cases[0].files) == ["T1", "T1c", "T2", "FLAIR"]
    assert cases[0].files["T1c"].name == f"case_a{SEQ_SUFFIX[naming]['T1c']}.nii.gz"
    assert cases[0].label is not None and cases[1].label is None
    assert cases[0].mask is None
    with pytest.raises(InputError, match="case_b.*label"):
        discover_brats_cases(tmp_path, naming=naming, label=True)


def test_discover_custom_patterns_with_mask(tmp_path):
    folder = tmp_path / "pat0003"
    folder.mkdir()
    _save(folder / "T1c_subtrMeanDivStd.nii.gz", _volume(1.0, 1))
    _save(folder / "Flair_subtrMeanDivStd.nii.gz", _volume(1.0, 2))
    _save(folder / "OTMultiClass.nii.gz", np.zeros(SHAPE))
    _save(folder / "brainmask.nii.gz", np.ones(SHAPE))
    naming = {"T1c": "T1c_*.nii.gz", "FLAIR": "Flair_*.nii.gz", "seg": "OTMultiClass.nii.gz"}
    (case,) = discover_brats_cases(tmp_path, naming=naming, sequences=["T1c", "FLAIR"],
                                   label=True, mask="brainmask.nii.gz")
    assert case.files["FLAIR"].name == "Flair_subtrMeanDivStd.nii.gz"
    assert case.mask.name == "brainmask.nii.gz"
    data = read_brats_case(case, sequences=["T1c", "FLAIR"], label=True)
    assert data["mask"].dtype == bool and data["mask"].all()
    assert data["seg"].dtype == np.int16
    with pytest.raises(InputError, match="T1"):  # naming has no T1 pattern
        discover_brats_cases(tmp_path, naming=naming)
    _save(folder / "Flair_other.nii.gz", _volume(1.0, 3))
    with pytest.raises(InputError, match="matches 2 files") as err:
        discover_brats_cases(tmp_path, naming=naming, sequences=["FLAIR"])
    assert err.value.path == str(folder)


def test_discover_root_missing_or_empty(tmp_path):
    with pytest.raises(InputError, match="not found"):
        discover_brats_cases(tmp_path / "missing")
    with pytest.raises(InputError, match="no case folders") as err:
        discover_brats_cases(tmp_path)
    assert err.value.path == str(tmp_path)


def test_discover_missing_sequence_names_case_and_pattern(tmp_path):
    folder = _write_case(tmp_path, "BraTS20_Training_001", sequences=("T1", "T1c", "T2"))
    with pytest.raises(InputError) as err:
        discover_brats_cases(tmp_path)
    assert err.value.path == str(folder)
    assert "FLAIR" in str(err.value) and "{case}_flair.nii.gz" in str(err.value)
    assert len(discover_brats_cases(tmp_path, sequences=["T1", "T2"])) == 1


def test_read_case_mismatched_shape_names_both_files(tmp_path):
    folder = _write_case(tmp_path, "c1", label=False)
    _save(folder / "c1_t2.nii.gz", _volume(300.0, 9, shape=(32, 32, 18)))
    (case,) = discover_brats_cases(tmp_path)
    with pytest.raises(InputError, match="shape") as err:
        read_brats_case(case)
    assert err.value.path == str(folder / "c1_t2.nii.gz")
    assert str(folder / "c1_t1.nii.gz") in str(err.value)


def test_read_case_mismatched_affine_names_both_files(tmp_path):
    folder = _write_case(tmp_path, "c1", label=False)
    shifted = LPS_AFFINE.copy()
    shifted[2, 3] = 5.0
    _save(folder / "c1_flair.nii.gz", _volume(400.0, 9), shifted)
    (case,) = discover_brats_cases(tmp_path)
    with pytest.raises(InputError, match="affine") as err:
        read_brats_case(case, sequences=["T1", "FLAIR"])
    assert err.value.path == str(folder / "c1_flair.nii.gz")
    assert str(folder / "c1_t1.nii.gz") in str(err.value)


def test_read_case_ras_file_among_lps_files_is_fine(tmp_path):
    folder = _write_case(tmp_path, "c1", label=False)
    t2 = _volume(300.0, 2)
    _save(folder / "c1_t2.nii.gz", *_to_ras(t2, LPS_AFFINE))
    data = read_brats_case(discover_brats_cases(tmp_path)[0])
    np.testing.assert_array_equal(data["T2"], t2)
    assert set(data) == {"T1", "T1c", "T2", "FLAIR", "affine"}


def test_read_case_missing_label(tmp_path):
    _write_case(tmp_path, "c1", label=False)
    (case,) = discover_brats_cases(tmp_path)
    with pytest.raises(InputError, match="label") as err:
        read_brats_case(case, sequences=["T1"], label=True)
    assert err.value.path == str(tmp_path / "c1")
    with pytest.raises(InputError, match="no T2 file"):
        read_brats_case(BratsCase("c1", tmp_path / "c1", {"T1": case.files["T1"]}),
                        sequences=["T2"])


# --- prepare_brats end to end --------------------------------------------------------


def test_prepare_brats_end_to_end(tmp_path):
    root = tmp_path / "brats"
    _write_case(root, "BraTS20_Training_001", seed=1)
    _write_case(root, "BraTS20_Training_002", seed=2, label=False)
    out = tmp_path / "prepared"
    info = prepare_brats(root, out, slice_start=10, slice_stop=22, resolution=16,
                         provenance={"seed": 3, "config": "test"})
    images = np.load(out / "images.npy")
    assert images.shape == (2 * 12, 4, 16, 16) and images.dtype == np.float32
    # channel order: the raw levels rise T1 < T1c < T2 < FLAIR, but z-scoring removes them;
    # the channel_stats are per channel in the same order
    assert info["channels"] == ["T1", "T1c", "T2", "FLAIR"]
    assert json.loads((out / "dataset.json").read_text()) == info
    for key in ("source", "naming", "plane", "slice_range", "normalize", "background"):
        assert key in info
    assert info["kind"] == "brats" and info["seed"] == 3 and info["config"] == "test"
    assert info["source"] == str(root) and info["naming"] == "brats2017"
    assert info["slice_range"]["start"] == 10 and info["slice_range"]["stop"] == 22

    meta = pd.read_csv(out / "meta.tsv", sep="\t", keep_default_na=False)
    assert list(meta.columns) == ["subject", "slice", "plane", "source", "tumour_px"]
    assert meta["subject"].tolist() == ["BraTS20_Training_001"] * 12 + ["BraTS20_Training_002"] * 12
    assert meta["slice"].tolist() == list(range(10, 22)) * 2
    assert set(meta["plane"]) == {"sagittal"}
    assert meta["source"].iloc[0] == str(root / "BraTS20_Training_001")
    tumour = meta["tumour_px"].tolist()
    # label occupies sagittal slices 10..15, 8x4 = 32 px each; case 2 has no label
    assert [int(t) for t in tumour[:12]] == [32] * 6 + [0] * 6
    assert tumour[12:] == [""] * 12
    # the brain (non-zero box) is z-scored: background renders as the minimum
    first = images[0]
    np.testing.assert_allclose(first[:, 0, 0], first.reshape(4, -1).min(axis=1), atol=1e-5)


def test_prepare_brats_channel_order_and_raw_intensities(tmp_path):
    root = tmp_path / "brats"
    _write_case(root, "c1", naming="brats2023", label=False)
    out = tmp_path / "prepared"
    info = prepare_brats(root, out, naming="brats2023", sequences=["FLAIR", "T1"],
                         normalize="none", slice_start=0.5, slice_stop=0.75,
                         slice_units="fraction", resolution=8, plane="axial")
    images = np.load(out / "images.npy")
    assert info["channels"] == ["FLAIR", "T1"]
    assert images.shape == (5, 2, 8, 8)  # slices 10..14 of 20
    centre = images[:, :, 4, 4].mean(axis=0)
    assert 350 < centre[0] < 450 and 80 < centre[1] < 120  # FLAIR ~400, T1 ~100


def test_prepare_brats_failure_in_second_case_leaves_nothing(tmp_path):
    root = tmp_path / "brats"
    _write_case(root, "c1", seed=1)
    folder = _write_case(root, "c2", seed=2)
    flair = folder / "c2_flair.nii.gz"
    flair.write_bytes(flair.read_bytes()[:400])
    out = tmp_path / "prepared"
    with pytest.raises(InputError) as err:
        prepare_brats(root, out, slice_start=10, slice_stop=12, resolution=8)
    assert err.value.path == str(flair)
    assert not out.exists() or list(out.iterdir()) == []


def test_prepare_brats_constant_sequence_names_the_file(tmp_path):
    root = tmp_path / "brats"
    folder = _write_case(root, "c1", label=False)
    _save(folder / "c1_t2.nii.gz", np.zeros(SHAPE))  # a blank sequence
    with pytest.raises(InputError, match="constant") as err:
        prepare_brats(root, tmp_path / "out", slice_start=10, slice_stop=12, resolution=8)
    assert err.value.path == str(folder / "c1_t2.nii.gz")
    assert not (tmp_path / "out" / "images.npy").exists()


def test_prepare_brats_rejects_bad_settings_before_writing(tmp_path):
    root = tmp_path / "brats"
    _write_case(root, "c1", label=False)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="provenance"):
        prepare_brats(root, out, provenance={"channels": ["x"]})
    with pytest.raises(ValueError, match="plane"):
        prepare_brats(root, out, plane="oblique")
    with pytest.raises(ValueError, match="slice_units"):
        prepare_brats(root, out, slice_units="mm")
    with pytest.raises(InputError, match="selects slices"):  # 80..149 of a 32-slice volume
        prepare_brats(root, out)
    assert not out.exists() or list(out.iterdir()) == []


# --- label channels (Beers 2018), tumour slice selection, orientation and dtype --------


def test_prepare_brats_label_channels_end_to_end(tmp_path):
    from medgan.data.labels import label_channels
    from medgan.data.preprocess.mri import extract_slices, resize_masks

    root = tmp_path / "brats"
    _write_case(root, "c1", seed=1)
    _write_case(root, "c2", seed=2)
    out = tmp_path / "prepared"
    info = prepare_brats(root, out, slice_start=8, slice_stop=18, resolution=16,
                         label_channels=True)
    assert info["channels"] == ["T1", "T1c", "T2", "FLAIR", "edema", "necrosis", "enhancing"]
    assert info["label_channels"] is True and info["min_tumour_px"] == 0
    assert info["label_scheme"] == "brats2017" and info["label_scheme_source"] == "naming preset"
    assert info["label_channel_values"] == {"edema": [2], "necrosis": [1], "enhancing": [4]}
    assert "0.5" in info["label_resize"]
    images = np.load(out / "images.npy")
    assert images.shape == (20, 7, 16, 16)
    labels = images[:, 4:]
    assert set(np.unique(labels)) == {0.0, 1.0} and labels.sum(axis=1).max() == 1.0
    assert info["channel_stats"]["edema"]["max"] == 0.0  # the test label map has no 2
    # the same as by hand: channels of the LPS label slices, each resized and thresholded
    seg = read_nifti(root / "c1" / "c1_seg.nii.gz")[0]
    masks = label_channels(extract_slices(seg, plane="sagittal", indices=range(8, 18)),
                           "brats2017")
    for k in range(3):
        np.testing.assert_array_equal(labels[:10, k], resize_masks(masks[k], 16))
    # slices 10..13 are necrosis (1), 14..15 enhancing (4): 8x4 px each before resizing
    meta = pd.read_csv(out / "meta.tsv", sep="\t")
    assert list(meta.columns)[-4:] == ["tumour_px", "edema_px", "necrosis_px", "enhancing_px"]
    assert meta["necrosis_px"].tolist()[:10] == [0, 0, 32, 32, 32, 32, 0, 0, 0, 0]
    assert meta["enhancing_px"].tolist()[:10] == [0] * 6 + [32, 32, 0, 0]
    assert (labels[:10, 1].sum(axis=(1, 2)) > 0).tolist() == [False, False, *[True] * 4,
                                                               *[False] * 4]


def test_prepare_brats_min_tumour_px_keeps_tumour_slices(tmp_path):
    root = tmp_path / "brats"
    _write_case(root, "c1", seed=1)
    folder = _write_case(root, "c2", seed=2)
    _save(folder / "c2_seg.nii.gz", np.zeros(SHAPE))  # no tumour: valid, contributes nothing
    out = tmp_path / "prepared"
    info = prepare_brats(root, out, slice_start=8, slice_stop=18, resolution=8,
                         min_tumour_px=32)
    meta = pd.read_csv(out / "meta.tsv", sep="\t")
    assert meta["slice"].tolist() == [10, 11, 12, 13, 14, 15]
    assert set(meta["subject"]) == {"c1"} and (meta["tumour_px"] == 32).all()
    assert info["n_images"] == 6 and info["n_subjects"] == 2
    assert info["n_subjects_with_images"] == 1 and info["min_tumour_px"] == 32
    assert info["channels"] == ["T1", "T1c", "T2", "FLAIR"]  # no label channels asked
    with pytest.raises(InputError, match="min_tumour_px=33 selects no slice") as err:
        prepare_brats(root, tmp_path / "none", slice_start=8, slice_stop=18, resolution=8,
                      min_tumour_px=33)
    assert err.value.path == str(root)
    assert not (tmp_path / "none").exists()


def test_prepare_brats_2023_scheme_label_3_is_enhancing(tmp_path):
    root = tmp_path / "brats"
    folder = _write_case(root, "BraTS-GLI-00001-000", naming="brats2023")
    seg = np.zeros(SHAPE, np.float32)
    seg[10:12, 12:20, 8:12] = 3
    seg[12:14, 12:20, 8:12] = 2
    _save(folder / "BraTS-GLI-00001-000-seg.nii.gz", seg)
    info = prepare_brats(root, tmp_path / "out", naming="brats2023", slice_start=10,
                         slice_stop=14, resolution=8, label_channels=True)
    assert info["label_scheme"] == "brats2023"
    meta = pd.read_csv(tmp_path / "out" / "meta.tsv", sep="\t")
    assert meta["enhancing_px"].tolist() == [32, 32, 0, 0]
    assert meta["edema_px"].tolist() == [0, 0, 32, 32] and (meta["necrosis_px"] == 0).all()
    # the brats2017 scheme has no 3: saying so is an error naming the label file
    with pytest.raises(InputError, match="fit label_scheme brats2015 or brats2023") as err:
        prepare_brats(root, tmp_path / "bad", naming="brats2023", label_scheme="brats2017",
                      slice_start=10, slice_stop=14, resolution=8, label_channels=True)
    assert err.value.path == str(folder / "BraTS-GLI-00001-000-seg.nii.gz")


@pytest.mark.parametrize("orientation, dtype", [("RAS", np.int16), ("LPS", np.float64),
                                                ("RAS", np.float64), ("LPS", np.uint8)])
def test_prepare_brats_same_scan_any_orientation_and_dtype(tmp_path, orientation, dtype):
    """The same integer-valued scan, stored LPS float32 or RAS/LPS in another dtype (the label
    map too), gives the same prepared slices, label channels included."""
    rng = np.random.default_rng(7)
    volumes = {s: np.rint(_volume(CHANNEL_LEVEL[s] / 2, 10 + i)).clip(0, 255)
               for i, s in enumerate(("T1", "T1c", "T2", "FLAIR"))}
    for v in volumes.values():
        v[4:-4, 4:-4, 3:-3] = np.maximum(v[4:-4, 4:-4, 3:-3], 1)  # keep the brain non-zero
    seg = np.zeros(SHAPE, np.float32)
    seg[8:20, 10:22, 6:14] = rng.choice([0, 1, 2, 4], size=(12, 12, 8))
    volumes["seg"] = seg

    def write(root, orient, dt):
        folder = root / "c1"
        folder.mkdir(parents=True)
        for key, data in volumes.items():
            affine = LPS_AFFINE
            if orient == "RAS":
                data, affine = _to_ras(data, LPS_AFFINE)
            _save(folder / f"c1{SEQ_SUFFIX['brats2017'][key]}.nii.gz", data, affine, dtype=dt)
        return root

    kwargs = {"slice_start": 6, "slice_stop": 24, "resolution": 16, "label_channels": True}
    ref = prepare_brats(write(tmp_path / "ref", "LPS", np.float32), tmp_path / "a", **kwargs)
    other = prepare_brats(write(tmp_path / "other", orientation, dtype), tmp_path / "b",
                          **kwargs)
    assert nib.aff2axcodes(nib.load(str(tmp_path / "other/c1/c1_t1.nii.gz")).affine) \
        == tuple(orientation)
    assert nib.load(str(tmp_path / "other/c1/c1_t1.nii.gz")).get_data_dtype() == dtype
    a, b = np.load(tmp_path / "a" / "images.npy"), np.load(tmp_path / "b" / "images.npy")
    assert a.shape == (18, 7, 16, 16) and a[:, 4:].any()
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(b[:, 4:], a[:, 4:])
    ma = pd.read_csv(tmp_path / "a" / "meta.tsv", sep="\t").drop(columns="source")
    mb = pd.read_csv(tmp_path / "b" / "meta.tsv", sep="\t").drop(columns="source")
    pd.testing.assert_frame_equal(ma, mb)
    assert ref["channel_stats"].keys() == other["channel_stats"].keys()
