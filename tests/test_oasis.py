"""OASIS-1 (Delplace 2019): Analyze 7.5 reader, phantoms in the release's layout, discovery
and slice preparation, and one clear error per malformed input."""

from __future__ import annotations

import re
import shutil

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from medgan.data.phantoms.oasis import (
    apply_atrophy,
    make_oasis_phantoms,
    oasis_image_path,
    oasis_phantom_subject,
    oasis_segmentation_path,
    ventricle_mask,
    write_analyze,
)
from medgan.data.prepared import load_prepared
from medgan.data.preprocess.oasis import discover_oasis_subjects, prepare_oasis
from medgan.data.readers.analyze import read_volume
from medgan.errors import InputError

SHAPE = (32, 40, 32)
RES = 32
SESSIONS = ["OAS1_0001_MR1", "OAS1_0002_MR1", "OAS1_0003_MR1"]
STEM = "_mpr_n4_anon_111_t88_masked_gfc"


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    out = tmp_path_factory.mktemp("phantoms") / "oasis"
    return out, make_oasis_phantoms(out, n_subjects=3, shape=SHAPE, seed=5)


def _image(root, session):
    return root / oasis_image_path(session)


def _files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


# ---------------------------------------------------------------- phantoms


def test_phantom_layout_is_oasis1(phantoms):
    out, folders = phantoms
    assert folders == [out / s for s in SESSIONS]
    assert sorted(p.name for p in out.iterdir()) == SESSIONS  # no temp leftovers
    expected = []
    for session in SESSIONS:
        t88 = f"{session}/PROCESSED/MPRAGE/T88_111/{session}{STEM}"
        seg = f"{session}/FSL_SEG/{session}{STEM}_fseg"
        expected += [f"{t88}.img", f"{t88}.hdr", f"{seg}.img", f"{seg}.hdr"]
    assert _files(out) == sorted(expected)


def test_phantom_files_are_analyze_like_the_real_ones(phantoms):
    out, _ = phantoms
    img = nib.load(_image(out, SESSIONS[0]))
    assert isinstance(img, nib.AnalyzeImage) and not isinstance(img, nib.Nifti1Pair)
    assert img.shape == (*SHAPE, 1)  # the 4-D singleton axis of OASIS' 176x208x176x1
    assert img.get_data_dtype() == np.dtype(">i2")
    np.testing.assert_allclose(img.header.get_zooms(), (5.5, 5.2, 5.5, 1.0))
    raw = np.asarray(img.dataobj)[..., 0]
    seg = np.asarray(nib.load(out / oasis_segmentation_path(SESSIONS[0])).dataobj)[..., 0]
    assert set(np.unique(seg)) == {0, 1, 2, 3}
    assert np.all(raw[seg == 0] == 0) and np.all(raw[seg > 0] > 0)  # skull-stripped
    csf, gm, wm = (np.median(raw[seg == k]) for k in (1, 2, 3))
    assert csf < gm < wm  # T1: CSF dark, grey matter darker than white


def test_phantoms_deterministic_per_seed_and_subject(phantoms, tmp_path):
    out, _ = phantoms
    make_oasis_phantoms(tmp_path / "again", n_subjects=3, shape=SHAPE, seed=5)
    make_oasis_phantoms(tmp_path / "one", n_subjects=1, shape=SHAPE, seed=5)
    make_oasis_phantoms(tmp_path / "other", n_subjects=1, shape=SHAPE, seed=6)
    for f in _files(out):
        assert (tmp_path / "again" / f).read_bytes() == (out / f).read_bytes()
    first = _image(out, SESSIONS[0])
    assert _image(tmp_path / "one", SESSIONS[0]).read_bytes() == first.read_bytes()
    assert _image(tmp_path / "other", SESSIONS[0]).read_bytes() != first.read_bytes()
    assert _image(out, SESSIONS[1]).read_bytes() != first.read_bytes()


def test_atrophy_enlarges_ventricles_and_thins_cortex():
    def subject(atrophy):
        return oasis_phantom_subject((64, 72, 64), np.random.default_rng(11), atrophy=atrophy)

    young, old = subject(0.0)["tissue"], subject(1.0)["tissue"]
    assert ventricle_mask(old).sum() > 1.5 * ventricle_mask(young).sum() > 0
    assert np.count_nonzero(old == 2) < 0.9 * np.count_nonzero(young == 2)  # grey matter
    assert np.array_equal(young > 0, old > 0)  # atrophy changes tissue, not the brain mask
    assert np.array_equal(apply_atrophy(young, 0.0, np.random.default_rng(0)), young)
    with pytest.raises(ValueError, match="atrophy"):
        apply_atrophy(young, 1.5, np.random.default_rng(0))


def test_atrophy_factor_is_recorded_and_varies(phantoms):
    out, _ = phantoms
    factors = []
    for session in SESSIONS:
        descrip = nib.load(_image(out, session)).header["descrip"].item().decode()
        factors.append(float(re.search(r"atrophy=([0-9.]+)", descrip).group(1)))
    assert all(0.0 <= a <= 1.0 for a in factors) and len(set(factors)) == 3


def test_bad_phantom_settings(tmp_path):
    with pytest.raises(ValueError, match="n_subjects"):
        make_oasis_phantoms(tmp_path / "x", n_subjects=0)
    with pytest.raises(ValueError, match="shape"):
        make_oasis_phantoms(tmp_path / "x", shape=(8, 40, 32))
    assert not (tmp_path / "x").exists()


# ---------------------------------------------------------------- reader


def _as_nifti(analyze_path, nifti_path, orientation=("R", "A", "S")):
    """Save the Analyze volume's voxels and affine as NIfTI, stored in another orientation."""
    src = nib.load(analyze_path)
    img = nib.Nifti1Image(np.asarray(src.dataobj)[..., 0], src.affine)
    img = img.as_reoriented(nib.orientations.ornt_transform(
        nib.io_orientation(img.affine), nib.orientations.axcodes2ornt(orientation)))
    nifti_path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, nifti_path)
    return nifti_path


def test_read_volume_analyze_and_nifti_agree(phantoms, tmp_path):
    out, _ = phantoms
    path = _image(out, SESSIONS[0])
    volume, affine = read_volume(path)
    assert volume.shape == SHAPE and volume.dtype == np.float32
    assert nib.aff2axcodes(affine) == ("L", "P", "S")
    by_header, _ = read_volume(path.with_suffix(".hdr"))
    assert np.array_equal(by_header, volume)
    for name, axes in (("ras.nii.gz", ("R", "A", "S")), ("pil.nii", ("P", "I", "L"))):
        other, other_affine = read_volume(_as_nifti(path, tmp_path / name, axes))
        assert np.array_equal(other, volume)
        np.testing.assert_allclose(other_affine, affine, atol=1e-6)


def test_read_volume_missing_or_unsupported_file(tmp_path):
    with pytest.raises(InputError, match="file not found") as err:
        read_volume(tmp_path / "none.img")
    assert err.value.path == str(tmp_path / "none.img")
    (tmp_path / "scan.mgz").write_bytes(b"x")
    with pytest.raises(InputError, match="unsupported file type"):
        read_volume(tmp_path / "scan.mgz")


def test_read_volume_writes_back_what_the_phantom_drew(tmp_path):
    subject = oasis_phantom_subject(SHAPE, np.random.default_rng(3))
    t1 = np.rint(subject["t1"]).astype(np.int16)
    write_analyze(tmp_path / "x.img", t1, zooms=(1, 1, 1))
    volume, _ = read_volume(tmp_path / "x.img")
    assert np.array_equal(volume, t1)  # LPS in, LPS out (stored as L, A, S)
    assert volume[:, :, SHAPE[2] - 1].max() == 0  # the top slice is empty (superior: axis 2)


# ---------------------------------------------------------------- discovery


def test_discover_default_pattern_finds_one_masked_image_per_session(phantoms, tmp_path):
    out, _ = phantoms
    found = discover_oasis_subjects(out)
    assert found == [(s, _image(out, s)) for s in SESSIONS]  # FSL_SEG's *_fseg.img not taken
    root = tmp_path / "r"
    shutil.copytree(out, root)
    hidden = _image(root, SESSIONS[0]).with_name("._x_masked_gfc.img")  # macOS resource fork
    hidden.write_bytes(b"junk")
    assert [s for s, _ in discover_oasis_subjects(root)] == SESSIONS


def test_discover_nifti_ids_from_stem_or_folder(phantoms, tmp_path):
    out, _ = phantoms
    flat = tmp_path / "flat"
    for s in SESSIONS[:2]:
        _as_nifti(_image(out, s), flat / f"sub-{s[5:9]}.nii.gz")
    assert [s for s, _ in discover_oasis_subjects(flat, pattern="*.nii.gz")] == [
        "sub-0001", "sub-0002"]
    nested = tmp_path / "nested"
    _as_nifti(_image(out, SESSIONS[0]), nested / "subjA" / "anat" / "T1w.nii")
    assert discover_oasis_subjects(nested, pattern="**/*.nii") == [
        ("subjA", nested / "subjA" / "anat" / "T1w.nii")]


def test_discover_two_files_of_one_subject(phantoms, tmp_path):
    out, _ = phantoms
    root = tmp_path / "r"
    shutil.copytree(out, root)
    with pytest.raises(InputError, match="matches 2 files of subject OAS1_0001_MR1") as err:
        discover_oasis_subjects(root, pattern="OAS1_0001_MR1/**/*.img")  # image and fseg
    assert err.value.path == str(root)


# ---------------------------------------------------------------- preparation


@pytest.fixture(scope="module")
def prepared(phantoms, tmp_path_factory):
    out, _ = phantoms
    dest = tmp_path_factory.mktemp("prepared") / "oasis"
    info = prepare_oasis(out, dest, resolution=RES, provenance={"seed": 5})
    return dest, info


def test_prepare_gives_single_channel_slices_in_range(prepared, phantoms):
    dest, info = prepared
    data = load_prepared(dest, channels=["T1"])
    n = len(data.meta)
    assert data.images.shape == (n, 1, RES, RES) and n == 3 * 6  # 0.41..0.59 of 32: 13..18
    assert data.images.min() == -1.0 and data.images.max() <= 1.0
    assert data.images.max() > 0.5
    assert info["kind"] == "oasis" and info["channels"] == ["T1"] and info["seed"] == 5
    assert info["scaling"]["per"] == "volume" and info["resolution"] == RES
    meta = data.meta
    assert list(meta.columns) == ["subject", "slice", "plane", "source", "foreground_fraction"]
    assert meta["subject"].tolist() == [s for s in SESSIONS for _ in range(6)]
    assert meta["slice"].tolist()[:6] == list(range(13, 19))
    assert (meta["plane"] == "axial").all() and (meta["foreground_fraction"] >= 0.05).all()
    assert meta["source"].iloc[0] == str(_image(phantoms[0], SESSIONS[0]))
    for image in data.images[:, 0]:  # background corners -1, the brain in the middle brighter
        assert image[0, 0] == pytest.approx(-1.0) and image[-1, -1] == pytest.approx(-1.0)
        assert image[RES // 2 - 2:RES // 2 + 2, RES // 2 - 2:RES // 2 + 2].mean() > -0.5


def test_prepare_drops_empty_slices(phantoms, tmp_path):
    out, _ = phantoms
    kwargs = {"slice_start": 16, "slice_stop": 32, "slice_units": "index", "resolution": 16}
    every = prepare_oasis(out, tmp_path / "all", min_foreground=0.0, **kwargs)
    kept = prepare_oasis(out, tmp_path / "kept", **kwargs)  # min_foreground=0.05
    assert every["n_images"] == 3 * 16
    meta = pd.read_csv(tmp_path / "all" / "meta.tsv", sep="\t")
    empty = meta["foreground_fraction"] < 0.05
    assert empty.sum() >= 3  # the top slices above the brain
    assert meta.loc[empty, "slice"].min() > 24
    assert kept["n_images"] == every["n_images"] - empty.sum()


def test_analyze_and_nifti_copies_prepare_identically(phantoms, tmp_path):
    out, _ = phantoms
    nifti = tmp_path / "nifti"
    for s in SESSIONS:
        _as_nifti(_image(out, s), nifti / s / f"{s}{STEM}.nii.gz")
    kwargs = {"resolution": RES, "slice_start": 0.2, "slice_stop": 0.9}
    prepare_oasis(out, tmp_path / "a", **kwargs)
    prepare_oasis(nifti, tmp_path / "b", pattern="**/*_masked_gfc.nii.gz", **kwargs)
    a, b = load_prepared(tmp_path / "a"), load_prepared(tmp_path / "b")
    assert np.array_equal(a.images, b.images)
    cols = ["subject", "slice", "foreground_fraction"]
    pd.testing.assert_frame_equal(a.meta[cols], b.meta[cols])


def test_prepare_rejects_bad_settings_before_writing(phantoms, tmp_path):
    out, _ = phantoms
    dest = tmp_path / "out"
    for kwargs, match in (({"plane": "oblique"}, "plane"), ({"slice_units": "mm"}, "slice_units"),
                          ({"min_foreground": 2}, "min_foreground"),
                          ({"resolution": 0}, "resolution"),
                          ({"provenance": {"kind": "x"}}, "provenance")):
        with pytest.raises(ValueError, match=match):
            prepare_oasis(out, dest, **kwargs)
    assert not dest.exists()


# ---------------------------------------------------------------- malformed input


def _pair(root, session):
    img = _image(root, session)
    return img, img.with_suffix(".hdr")


def _write_raw_analyze(img_path, data):
    img_path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.AnalyzeImage(data, np.eye(4)), img_path)


def _break(kind, img, hdr):
    """Make ``img``/``hdr`` (one subject's pair) malformed; return (file named, message)."""
    if kind == "missing_hdr":
        hdr.unlink()
        return hdr, "missing: .* has no Analyze 7.5 header"
    if kind == "missing_img":
        img.unlink()
        return img, "missing: .*hdr has no Analyze 7.5 image"
    if kind == "truncated_img":
        img.write_bytes(img.read_bytes()[:1000])
        return img, r"truncated: .* \(32, 40, 32, 1\) int16 voxels \(81920 bytes\) but the file " \
                   r"has 1000 bytes"
    if kind == "text_img":
        img.write_text("not an image\n")
        return img, "truncated"
    if kind == "text_img_and_hdr":
        img.write_text("not an image\n")
        hdr.write_text("not a header\n")
        return hdr, "not an Analyze 7.5 header: 13 bytes"
    if kind == "garbage_hdr":
        hdr.write_bytes(b"\x07" * 348)
        return hdr, "not a readable Analyze 7.5 header"
    if kind == "constant":
        _write_raw_analyze(img, np.full((*SHAPE, 1), 7, np.int16))
        return img, "constant volume: every voxel is 7"
    if kind == "all_zero":
        _write_raw_analyze(img, np.zeros((*SHAPE, 1), np.int16))
        return img, "all voxels are 0"
    if kind == "nan":
        data = np.ones((*SHAPE, 1), np.float32)
        data[3, 4, 5] = np.nan
        _write_raw_analyze(img, data)
        return img, "1 voxels are NaN"
    if kind == "2d":
        _write_raw_analyze(img, np.ones((32, 40, 1, 1), np.int16))
        return img, r"expected a 3-D volume, got shape \(32, 40, 1, 1\)"
    if kind == "no_background":
        _write_raw_analyze(img, (np.arange(np.prod(SHAPE)) % 1000).astype(np.int16).reshape(SHAPE))
        return img, "no constant background"
    raise AssertionError(kind)


MALFORMED = ["missing_hdr", "missing_img", "truncated_img", "text_img", "text_img_and_hdr",
             "garbage_hdr", "constant", "all_zero", "nan", "2d", "no_background"]


@pytest.mark.parametrize("kind", MALFORMED)
def test_malformed_volume_one_line_error_naming_the_file_and_no_output(phantoms, tmp_path,
                                                                      kind):
    out, _ = phantoms
    root = tmp_path / "oasis"
    for s in SESSIONS[:2]:  # the first subject is fine: its slices must not be left behind
        shutil.copytree(out / s, root / s)
    named, message = _break(kind, *_pair(root, SESSIONS[1]))
    dest = tmp_path / "prepared"
    with pytest.raises(InputError, match=message) as err:
        prepare_oasis(root, dest, resolution=RES)
    assert err.value.path == str(named)
    assert "\n" not in str(err.value) and str(err.value).startswith(f"{named}: ")
    assert not dest.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["oasis"]


@pytest.mark.parametrize("kind", ["empty_folder", "missing_root", "no_match", "slice_range",
                                  "all_slices_dropped", "truncated_nifti", "nifti_2d",
                                  "not_a_volume"])
def test_bad_dataset_one_line_error_and_no_output(phantoms, tmp_path, kind):
    out, _ = phantoms
    root = tmp_path / "oasis"
    root.mkdir()
    kwargs = {"resolution": RES}
    if kind == "missing_root":
        root.rmdir()
        named, message = root, "OASIS root folder not found"
    elif kind == "empty_folder":
        named, message = root, r"no file matches the pattern '\*\*/\*_masked_gfc.img'"
    elif kind == "no_match":
        shutil.copytree(out / SESSIONS[0], root / SESSIONS[0])
        kwargs["pattern"] = "**/*.nii.gz"
        named, message = root, "no file matches"
    elif kind == "slice_range":
        shutil.copytree(out / SESSIONS[0], root / SESSIONS[0])
        kwargs.update(slice_start=30, slice_stop=40, slice_units="index")
        named, message = _image(root, SESSIONS[0]), "selects slices 30..39, .* outside 0..31"
    elif kind == "all_slices_dropped":
        shutil.copytree(out / SESSIONS[0], root / SESSIONS[0])
        kwargs["min_foreground"] = 1.0
        named, message = root, "no slice of any volume"
    elif kind == "truncated_nifti":
        for s in SESSIONS[:2]:
            _as_nifti(_image(out, s), root / s / "t1.nii.gz")
        bad = root / SESSIONS[1] / "t1.nii.gz"
        bad.write_bytes(bad.read_bytes()[:500])
        kwargs["pattern"] = "**/t1.nii.gz"
        named, message = bad, "truncated"
    elif kind == "nifti_2d":
        named = root / "flat.nii"
        nib.save(nib.Nifti1Image(np.ones((32, 40, 1), np.float32), np.eye(4)), named)
        kwargs["pattern"] = "*.nii"
        message = r"expected a 3-D volume, got shape \(32, 40, 1\)"
    else:  # not_a_volume: the pattern also matches a PNG
        shutil.copytree(out / SESSIONS[0], root / SESSIONS[0])
        (root / "notes_masked_gfc.png").write_bytes(b"\x89PNG")
        kwargs["pattern"] = "**/*_masked_gfc.*"
        named, message = root / "notes_masked_gfc.png", "not an Analyze 7.5"
    dest = tmp_path / "prepared"
    with pytest.raises(InputError, match=message) as err:
        prepare_oasis(root, dest, **kwargs)
    assert err.value.path == str(named) and "\n" not in str(err.value)
    assert not dest.exists()
