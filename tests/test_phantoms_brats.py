"""BraTS-like phantoms: on-disk layout, NIfTI format, determinism, labels and MRI contrasts."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from medgan.data.phantoms import (
    TISSUE_LABELS,
    brats_phantom_labels,
    brats_phantom_subject,
    make_brats_phantoms,
)
from medgan.errors import InputError

SHAPE = (48, 48, 32)
KEYS = ("t1", "t1ce", "t2", "flair", "seg")
SEQUENCES = KEYS[:4]


def _load(folder):
    return {k: nib.load(folder / f"{folder.name}_{k}.nii.gz") for k in KEYS}


def _arrays(folder):
    return {k: np.asarray(img.dataobj) for k, img in _load(folder).items()}


def _subject(seed: int, i: int, shape=SHAPE):
    return brats_phantom_subject(shape, np.random.default_rng(np.random.SeedSequence([seed, i])))


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("phantoms") / "brats"
    return out, make_brats_phantoms(out, n_subjects=3, shape=SHAPE, seed=7)


def test_layout_is_brats_2017_2021(written):
    out, folders = written
    names = [f"BraTS20_Training_{i:03d}" for i in (1, 2, 3)]
    assert folders == [out / n for n in names]
    assert sorted(p.name for p in out.iterdir()) == names  # nothing else, no temp leftovers
    assert sorted(p.name for p in out.parent.iterdir()) == ["brats"]
    for folder in folders:
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            f"{folder.name}_{k}.nii.gz" for k in KEYS)


def test_custom_prefix(tmp_path):
    (folder,) = make_brats_phantoms(tmp_path / "x", n_subjects=1, shape=(16, 16, 16),
                                    prefix="BraTS2021_Training")
    assert folder.name == "BraTS2021_Training_001"
    assert (folder / "BraTS2021_Training_001_t1ce.nii.gz").is_file()


def test_nifti_format_matches_real_brats(written):
    _, folders = written
    expected = np.diag([-1.0, -1.0, 1.0, 1.0])
    expected[1, 3] = SHAPE[1] - 1
    for k, img in _load(folders[0]).items():
        assert img.shape == SHAPE
        assert np.allclose(img.affine, expected)
        assert nib.aff2axcodes(img.affine) == ("L", "P", "S")
        assert int(img.header["qform_code"]) == 1 and int(img.header["sform_code"]) == 1
        assert img.header.get_xyzt_units()[0] == "mm"
        data = np.asarray(img.dataobj)
        if k == "seg":
            assert data.dtype in (np.uint8, np.int16)
        else:
            assert img.get_data_dtype() == np.float32 and data.dtype == np.float32


def test_background_zero_and_identical_across_sequences(written):
    _, folders = written
    for folder in folders:
        vols = _arrays(folder)
        brain = vols["t1"] != 0
        assert 0.1 < brain.mean() < 0.8
        for k in SEQUENCES:
            assert np.array_equal(vols[k] != 0, brain)
            assert vols[k][brain].min() > 0  # positive inside, exactly 0 outside
            assert 50 < np.median(vols[k][brain]) < 5000  # MRI-like arbitrary units
        assert not vols["seg"][~brain].any()  # labels only inside the brain


def test_same_seed_same_data_and_growing_keeps_subjects(tmp_path, written):
    _, folders = written
    again = make_brats_phantoms(tmp_path / "again", n_subjects=4, shape=SHAPE, seed=7)
    for a, b in zip(folders, again[:3], strict=True):
        va, vb = _arrays(a), _arrays(b)
        for k in KEYS:
            assert np.array_equal(va[k], vb[k]), (a.name, k)


def test_different_seed_different_data():
    a, b = _subject(7, 1), _subject(8, 1)
    for k in KEYS:
        assert not np.array_equal(a[k], b[k])
    for k in KEYS:  # and the in-memory generator matches what was seeded
        assert np.array_equal(_subject(7, 1)[k], a[k])


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_labels_are_brats_labels_with_all_tumour_classes(seed):
    seg = _subject(seed, 1)["seg"]
    assert seg.dtype == np.uint8
    assert set(np.unique(seg)) == {0, 1, 2, 4}
    # nested like a glioma: the necrotic core touches only the enhancing rim, never edema or
    # healthy tissue (6-neighbourhood)
    nec = seg == 1
    for axis in range(3):
        for shift in (-1, 1):
            assert set(np.unique(np.roll(seg, shift, axis)[nec])) <= {1, 4}


@pytest.mark.parametrize("seed", [0, 5])
def test_tissue_map_and_contrasts(seed):
    tissue, seg = brats_phantom_labels(SHAPE, np.random.default_rng(seed))
    vols = brats_phantom_subject(SHAPE, np.random.default_rng(seed))
    assert np.array_equal(vols["seg"], seg)
    assert np.array_equal(vols["t1"] > 0, tissue > 0)
    healthy = seg == 0
    regions = {
        "csf": (tissue == TISSUE_LABELS["csf"]) & healthy,
        "gm": (tissue == TISSUE_LABELS["gm"]) & healthy,
        "wm": (tissue == TISSUE_LABELS["wm"]) & healthy,
        "necrosis": seg == 1,
        "edema": seg == 2,
        "enhancing": seg == 4,
    }
    mean = {k: {r: float(v[m].mean()) for r, m in regions.items()}
            for k, v in vols.items() if k != "seg"}
    t1, t1ce, t2, flair = (mean[k] for k in SEQUENCES)
    assert t1["wm"] > t1["gm"] > t1["csf"]
    assert t1["necrosis"] < t1["wm"]
    assert max(t1ce, key=t1ce.get) == "enhancing"
    assert t1ce["necrosis"] < t1ce["wm"]
    assert t2["csf"] > t2["gm"] > t2["wm"], t2
    assert t2["gm"] > t2["wm"] and t2["edema"] > t2["wm"] and t2["necrosis"] > t2["wm"]
    assert max(flair, key=flair.get) == "edema"
    assert flair["csf"] < flair["wm"] < flair["gm"]


def test_tumour_position_and_size_vary(written):
    _, folders = written
    centres, sizes = [], []
    for folder in folders:
        tumour = _arrays(folder)["seg"] > 0
        centres.append(np.argwhere(tumour).mean(axis=0))
        sizes.append(int(tumour.sum()))
    assert len(set(sizes)) == len(sizes)
    for i in range(len(centres)):
        for j in range(i):
            assert np.linalg.norm(centres[i] - centres[j]) > 1.0


def test_tumour_lies_in_one_hemisphere():
    for i in (1, 2, 3):
        seg = _subject(3, i)["seg"]
        x = np.argwhere(seg > 0)[:, 0] - SHAPE[0] // 2
        assert (x >= -1).all() or (x <= 1).all()


def test_brain_fills_the_volume_like_real_brats():
    shape = (96, 96, 64)
    tissue, _ = brats_phantom_labels(shape, np.random.default_rng(0))
    brain = tissue > 0
    extent = []
    for axis in range(3):
        idx = np.flatnonzero(brain.any(axis=tuple(a for a in range(3) if a != axis)))
        assert idx[0] > 0 and idx[-1] < shape[axis] - 1  # skull-stripped brain, not cut
        extent.append((idx[-1] - idx[0] + 1) / shape[axis])
    assert 0.55 < extent[0] < 0.85 and 0.6 < extent[1] < 0.9 and 0.7 < extent[2] < 0.97
    assert extent[1] > extent[0]  # elongated anterior-posterior
    # lateral ventricles (deep CSF) are mirror images about the mid-sagittal plane x = nx // 2
    cx = shape[0] // 2
    deep = (tissue == TISSUE_LABELS["csf"])[cx - 12:cx + 13, 30:66, 28:42]
    assert deep.sum() > 50
    assert (deep & deep[::-1]).sum() / deep.sum() > 0.6


@pytest.mark.parametrize("kwargs, match", [
    ({"n_subjects": 0}, "n_subjects"),
    ({"n_subjects": 2.5}, "n_subjects"),
    ({"shape": (15, 48, 32)}, "shape"),
    ({"shape": (48, 48)}, "shape"),
    ({"seed": -1}, "seed"),
    ({"prefix": ""}, "prefix"),
])
def test_bad_arguments_raise_clear_error_and_write_nothing(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_brats_phantoms(tmp_path / "out", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_out_dir_that_is_a_file_is_input_error(tmp_path):
    target = tmp_path / "brats"
    target.write_text("not a folder")
    with pytest.raises(InputError, match="not a directory"):
        make_brats_phantoms(target, n_subjects=1, shape=(16, 16, 16))
    assert target.read_text() == "not a folder"


def test_existing_out_dir_is_replaced_whole(tmp_path):
    out = tmp_path / "brats"
    make_brats_phantoms(out, n_subjects=3, shape=(16, 16, 16))
    folders = make_brats_phantoms(out, n_subjects=1, shape=(16, 16, 16))
    assert sorted(out.iterdir()) == folders
