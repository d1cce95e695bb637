"""Malformed BraTS input: one one-line InputError naming the file or case folder, no output.

Each case builds a small two-case BraTS 2017-layout release, breaks it in one way (mostly in
the second case, so that the first case has already been written when the error comes) and
runs :func:`prepare_brats`.
"""

from __future__ import annotations

import gzip
import io
import shutil

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from medgan.data.preprocess.brats import prepare_brats
from medgan.errors import InputError

SHAPE = (24, 24, 16)
AFFINE = np.array([[-1.0, 0, 0, 23], [0, -1.0, 0, 23], [0, 0, 1.0, 0], [0, 0, 0, 1]])
SUFFIX = {"T1": "t1", "T1c": "t1ce", "T2": "t2", "FLAIR": "flair", "seg": "seg"}
CASES = ("BraTS20_Training_001", "BraTS20_Training_002")
SETTINGS = {"slice_start": 6, "slice_stop": 18, "resolution": 8}


def _save(path, data, affine=AFFINE):
    img = nib.Nifti1Image(np.asarray(data, dtype=np.float32), affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nib.save(img, str(path))


def _seg(values=(1, 2, 4), shape=SHAPE):
    seg = np.zeros(shape, np.float32)
    for k, v in enumerate(values):
        seg[8 + 2 * k:10 + 2 * k, 8:14, 6:10] = v
    return seg


def _release(root):
    for c, case in enumerate(CASES):
        (root / case).mkdir(parents=True)
        rng = np.random.default_rng(c)
        for s, level in (("T1", 100.0), ("T1c", 200.0), ("T2", 300.0), ("FLAIR", 400.0)):
            vol = np.zeros(SHAPE, np.float32)
            vol[3:-3, 3:-3, 2:-2] = rng.normal(level, level / 10, (18, 18, 12))
            _save(_file(root, s, c), vol)
        _save(_file(root, "seg", c), _seg())


def _file(root, key, case_index=1):
    case = CASES[case_index]
    return root / case / f"{case}_{SUFFIX[key]}.nii.gz"


# --- the ways to break a release: each returns the path the error must name ------------


def truncated_gzip(root):
    path = _file(root, "T1c")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def missing_sequence(root):
    _file(root, "FLAIR").unlink()
    return root / CASES[1]


def shapes_differ(root):
    _save(_file(root, "T2"), np.ones((24, 24, 14)))
    return _file(root, "T2")


def affines_differ(root):
    shifted = AFFINE.copy()
    shifted[2, 3] = 4.0
    data = nib.load(str(_file(root, "FLAIR"))).get_fdata()
    _save(_file(root, "FLAIR"), data, shifted)
    return _file(root, "FLAIR")


def nan_voxels(root):
    data = nib.load(str(_file(root, "T1"))).get_fdata()
    data[10, 10, 8] = np.nan
    _save(_file(root, "T1"), data)
    return _file(root, "T1")


def constant_volume(root):
    _save(_file(root, "T2"), np.full(SHAPE, 250.0))
    return _file(root, "T2")


def blank_case(root):
    for s in ("T1", "T1c", "T2", "FLAIR"):
        _save(_file(root, s), np.zeros(SHAPE))
    return _file(root, "T1")


def no_tumour_anywhere(root):
    for c in range(len(CASES)):
        _save(_file(root, "seg", c), np.zeros(SHAPE))
    return root


def non_brats_labels(root):
    _save(_file(root, "seg"), _seg(values=(7,)))
    return _file(root, "seg")


def label_3_in_brats2017(root):
    _save(_file(root, "seg"), _seg(values=(1, 2, 3)))
    return _file(root, "seg")


def negative_labels(root):
    _save(_file(root, "seg"), _seg(values=(-1, 2)))
    return _file(root, "seg")


def fractional_labels(root):
    _save(_file(root, "seg"), _seg(values=(0.5, 2)))
    return _file(root, "seg")


def label_shape_differs(root):
    _save(_file(root, "seg"), _seg(shape=(24, 24, 15)))
    return _file(root, "seg")


def missing_label(root):
    _file(root, "seg").unlink()
    return root / CASES[1]


def empty_root(root):
    for case in CASES:
        shutil.rmtree(root / case)
    return root


def root_is_a_file(root):
    shutil.rmtree(root)
    root.write_text("not a folder\n")
    return root


def png_named_nifti(root):
    buf = io.BytesIO()
    Image.fromarray(np.zeros((24, 24), np.uint8)).save(buf, format="PNG")
    _file(root, "T1").write_bytes(buf.getvalue())
    return _file(root, "T1")


def gzipped_text_named_nifti(root):
    _file(root, "T2").write_bytes(gzip.compress(b"patient notes\n" * 50))
    return _file(root, "T2")


def four_d_volume(root):
    _save(_file(root, "T1"), np.ones((*SHAPE, 3)))
    return _file(root, "T1")


LABELS = {"label_channels": True}
MALFORMED = [  # (how to break it, prepare_brats keyword args, words the problem must contain)
    (truncated_gzip, {}, "truncated or corrupt"),
    (missing_sequence, {}, "no FLAIR file"),
    (shapes_differ, {}, "shape (24, 24, 14) differs"),
    (affines_differ, {}, "affine"),
    (nan_voxels, {}, "1 voxels are NaN or infinite"),
    (constant_volume, {}, "constant"),
    (blank_case, {}, "brain mask is empty"),
    (no_tumour_anywhere, {"min_tumour_px": 1}, "selects no slice"),
    (no_tumour_anywhere, {**LABELS, "min_tumour_px": 10}, "selects no slice"),
    (non_brats_labels, LABELS, "not a BraTS label map"),
    (non_brats_labels, {}, "not a BraTS label map"),  # scheme implied by the naming preset
    (label_3_in_brats2017, LABELS, "fit label_scheme brats2015 or brats2023"),
    (negative_labels, LABELS, "out of range"),
    (fractional_labels, LABELS, "non-integer"),
    (label_shape_differs, LABELS, "shape (24, 24, 15) differs"),
    (missing_label, LABELS, "no label (seg) file"),
    (missing_label, {"min_tumour_px": 5}, "no label (seg) file"),
    (empty_root, {}, "no case folders"),
    (root_is_a_file, {}, "not a folder"),
    (png_named_nifti, {}, "NIfTI"),
    (gzipped_text_named_nifti, {}, "NIfTI"),
    (four_d_volume, {}, "expected a 3-D volume"),
]


@pytest.mark.parametrize("breaker, kwargs, words", MALFORMED,
                         ids=[f"{b.__name__}{'-' + '-'.join(k) if k else ''}"
                              for b, k, _ in MALFORMED])
def test_malformed_release_gives_one_line_error_and_no_output(tmp_path, breaker, kwargs, words):
    root = tmp_path / "brats"
    _release(root)
    at_fault = breaker(root)
    out = tmp_path / "prepared"
    with pytest.raises(InputError) as err:
        prepare_brats(root, out, **SETTINGS, **kwargs)
    message = str(err.value)
    assert "\n" not in message
    assert err.value.path == str(at_fault)
    assert message.startswith(f"{at_fault}: ")
    assert at_fault.name in message
    assert words in err.value.problem
    assert not out.exists()


def test_the_intact_release_prepares(tmp_path):
    """The release the cases break is itself fine, with and without label channels."""
    root = tmp_path / "brats"
    _release(root)
    info = prepare_brats(root, tmp_path / "a", **SETTINGS, label_channels=True, min_tumour_px=1)
    assert info["n_images"] == 2 * 6 and info["channels"][-3:] == ["edema", "necrosis",
                                                                   "enhancing"]
    assert prepare_brats(root, tmp_path / "b", **SETTINGS)["n_images"] == 2 * 12


def test_existing_output_folder_is_kept_but_left_without_outputs(tmp_path):
    root = tmp_path / "brats"
    _release(root)
    at_fault = nan_voxels(root)
    out = tmp_path / "prepared"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")
    with pytest.raises(InputError, match="NaN") as err:
        prepare_brats(root, out, **SETTINGS)
    assert err.value.path == str(at_fault)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_custom_naming_needs_a_label_scheme_for_label_channels(tmp_path):
    root = tmp_path / "brats"
    _release(root)
    naming = {"T1": "*_t1.nii.gz", "FLAIR": "*_flair.nii.gz", "seg": "*_seg.nii.gz"}
    with pytest.raises(ValueError, match="label_scheme"):
        prepare_brats(root, tmp_path / "out", naming=naming, sequences=["T1", "FLAIR"],
                      label_channels=True, **SETTINGS)
    with pytest.raises(ValueError, match="label_scheme must be one of"):
        prepare_brats(root, tmp_path / "out", label_scheme="brats2019", **SETTINGS)
    with pytest.raises(ValueError, match="min_tumour_px"):
        prepare_brats(root, tmp_path / "out", min_tumour_px=-1, **SETTINGS)
    assert not (tmp_path / "out").exists()
    info = prepare_brats(root, tmp_path / "out", naming=naming, sequences=["T1", "FLAIR"],
                         label_channels=True, label_scheme="brats2015", **SETTINGS)
    assert info["label_scheme"] == "brats2015" and info["label_scheme_source"] == "label_scheme"


def test_all_zero_label_map_is_valid_data_without_tumour(tmp_path):
    """No tumour is not malformed: its label channels are empty; only selecting tumour
    slices from nothing but such maps is an error (see no_tumour_anywhere above)."""
    root = tmp_path / "brats"
    _release(root)
    _save(_file(root, "seg"), np.zeros(SHAPE))
    info = prepare_brats(root, tmp_path / "out", **SETTINGS, label_channels=True)
    images = np.load(tmp_path / "out" / "images.npy")
    assert info["n_images"] == 24 and images[:12, 4:].any() and not images[12:, 4:].any()
    info = prepare_brats(root, tmp_path / "out2", **SETTINGS, min_tumour_px=1)
    assert info["n_images"] == 6 and info["n_subjects_with_images"] == 1
