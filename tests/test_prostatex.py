"""ProstateX: DICOM/MHD readers, findings CSV, aligned lesion patches and the phantom."""

from __future__ import annotations

import filecmp
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.uid import generate_uid

from medgan.data.phantoms.prostatex import (
    FINDINGS_NAME,
    make_prostatex_phantoms,
    write_dicom_series,
    write_metaimage,
)
from medgan.data.prepared import load_prepared
from medgan.data.preprocess.prostatex import DEFAULT_SCALE, prepare_prostatex
from medgan.data.readers.dicom import find_dicom_series, read_dicom_series
from medgan.data.readers.prostatex import (
    discover_prostatex_patient,
    read_findings,
    read_ktrans,
)
from medgan.errors import InputError

N_SUBJECTS = 4
DESCRIPTIONS = {"t2_tse_sag", "t2_tse_tra", "ep2d_diff_tra_DYNDIST_ADC",
                "ep2d_diff_tra_DYNDISTCALC_BVAL"}


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantoms") / "ProstateX"
    return root, make_prostatex_phantoms(root, n_subjects=N_SUBJECTS, seed=0)


@pytest.fixture(scope="module")
def prepared(phantoms, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared") / "prostatex"
    info = prepare_prostatex(phantoms[0], out)
    return out, info, load_prepared(out)


def _one_patient(phantoms, tmp_path, patient="ProstateX-0002") -> Path:
    """A copy of the phantom release holding only ``patient`` (two findings)."""
    src = phantoms[0]
    root = tmp_path / "root"
    shutil.copytree(src / patient, root / patient)
    lines = (src / FINDINGS_NAME).read_text().splitlines()
    (root / FINDINGS_NAME).write_text(
        "\n".join([lines[0], *(ln for ln in lines[1:] if ln.startswith(patient + ","))]) + "\n")
    return root


def _series_folder(root: Path, patient: str, tag: str) -> Path:
    (folder,) = [p for p in (root / patient).glob(f"*/*-{tag}-*") if p.is_dir()]
    return folder


def _border_and_centre(patch: np.ndarray) -> tuple[float, float]:
    n = patch.shape[-1]
    ring = np.ones((n, n), bool)
    ring[1:-1, 1:-1] = False
    c = n // 2
    return float(patch[ring].mean()), float(patch[c - 2:c + 2, c - 2:c + 2].mean())


# --- phantom ------------------------------------------------------------------------------


def test_phantom_layout_and_findings(phantoms):
    root, folders = phantoms
    names = [f"ProstateX-{i:04d}" for i in range(N_SUBJECTS)]
    assert folders == [root / n for n in names]
    assert sorted(p.name for p in root.iterdir()) == sorted([*names, FINDINGS_NAME])
    assert sorted(p.name for p in root.parent.iterdir()) == ["ProstateX"]  # no temp leftovers
    findings = read_findings(root / FINDINGS_NAME)
    assert list(findings.columns[:3]) == ["ProxID", "fid", "pos"]
    assert set(findings.ProxID) == set(names)
    assert findings.groupby("ProxID").size().between(1, 2).all()
    assert set(findings.zone) <= {"PZ", "TZ"} and findings.ClinSig.isin([True, False]).all()
    for folder in folders:
        assert (folder / f"{folder.name}-Ktrans.mhd").is_file()
        assert (folder / f"{folder.name}-Ktrans.zraw").is_file()
        series = find_dicom_series(folder)
        assert {s.description for s in series} == DESCRIPTIONS
        assert all(s.folder.parent.parent == folder for s in series)  # TCIA nesting


def test_phantom_dicom_headers_and_grids(phantoms):
    root, folders = phantoms
    patient = discover_prostatex_patient(root, folders[0].name)
    t2_file = sorted(patient.series["T2"].folder.glob("*.dcm"))[0]
    adc_file = sorted(patient.series["ADC"].folder.glob("*.dcm"))[0]
    t2_ds, adc_ds = pydicom.dcmread(t2_file), pydicom.dcmread(adc_file)
    assert t2_ds.SeriesDescription == "t2_tse_tra" and t2_ds.Modality == "MR"
    assert [float(v) for v in t2_ds.PixelSpacing] == [0.5, 0.5]
    assert [float(v) for v in adc_ds.PixelSpacing] == [2.0, 2.0]
    for ds in (t2_ds, adc_ds):
        assert ds.BitsAllocated == 16 and ds.PixelRepresentation == 0
        assert ds.pixel_array.dtype == np.uint16
    t2 = read_dicom_series(patient.series["T2"])
    adc = read_dicom_series(patient.series["ADC"])
    assert t2.GetSpacing() == pytest.approx((0.5, 0.5, 3.0))
    assert adc.GetSpacing() == pytest.approx((2.0, 2.0, 3.0))
    assert t2.GetDirection() == pytest.approx(adc.GetDirection(), abs=1e-6)
    assert t2.GetSize() != adc.GetSize()
    # different origins, and the ADC origin is not on the T2 voxel lattice
    offset = np.array(adc.GetOrigin()) - np.array(t2.GetOrigin())
    local = np.asarray(t2.GetDirection()).reshape(3, 3).T @ offset
    assert np.linalg.norm(local) > 5
    assert not np.allclose(local[:2] / 2.0, np.round(local[:2] / 2.0))
    # the reader returns the pixel values the files hold (uint16 -> float32, unchanged)
    stack = np.stack([pydicom.dcmread(f).pixel_array
                      for f in sorted(patient.series["T2"].folder.glob("*.dcm"))])
    import SimpleITK as sitk

    np.testing.assert_array_equal(sitk.GetArrayFromImage(t2), stack.astype(np.float32))
    ktrans = read_ktrans(patient.ktrans)
    assert ktrans.GetSpacing() == pytest.approx((1.5, 1.5, 3.0))
    assert ktrans.GetDirection() == pytest.approx(tuple(np.eye(3).ravel()))


def test_phantom_deterministic_per_subject(phantoms, tmp_path):
    root, _ = phantoms
    (again,) = make_prostatex_phantoms(tmp_path / "a", n_subjects=1, seed=0)
    cmp = filecmp.dircmp(root / "ProstateX-0000", again)

    def same(c):
        return not (c.left_only or c.right_only or c.diff_files or c.funny_files) and all(
            same(s) for s in c.subdirs.values())

    assert same(cmp)
    (other,) = make_prostatex_phantoms(tmp_path / "b", n_subjects=1, seed=1)
    assert (root / "ProstateX-0000" / "ProstateX-0000-Ktrans.zraw").read_bytes() != \
        (other / "ProstateX-0000-Ktrans.zraw").read_bytes()


def test_phantom_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="n_subjects"):
        make_prostatex_phantoms(tmp_path / "x", n_subjects=0)
    with pytest.raises(ValueError, match="seed"):
        make_prostatex_phantoms(tmp_path / "x", seed=-1)
    assert not (tmp_path / "x").exists()


# --- prepared patches -----------------------------------------------------------------------


def test_prepared_dataset_format(phantoms, prepared):
    root, _ = phantoms
    out, info, data = prepared
    n_findings = len(read_findings(root / FINDINGS_NAME))
    assert data.images.shape == (n_findings, 3, 16, 16) and data.images.dtype == np.float32
    assert info["channels"] == ["T2", "ADC", "Ktrans"] and info["kind"] == "prostatex"
    assert info["ktrans_sources"] == {"file": N_SUBJECTS, "highb": 0, "zeros": 0}
    assert info["scale"] == DEFAULT_SCALE and info["patch_px"] == 16
    assert 0.0 <= data.images.min() and data.images.max() < 1.5  # roughly [0, 1]
    meta = data.meta
    for col in ("ProxID", "fid", "zone", "ClinSig", "pos", "slice_offset", "augment_copy",
                "ktrans_source", "outside_px"):
        assert col in meta.columns
    assert (meta.ktrans_source == "file").all() and (meta.outside_px == 0).all()
    assert sorted(p.name for p in out.iterdir()) == ["dataset.json", "images.npy", "meta.tsv"]


def test_patch_shows_each_lesion_in_every_channel(prepared):
    _, _, data = prepared
    for img, (_, row) in zip(data.images, data.meta.iterrows(), strict=True):
        for ch, darker in (("T2", True), ("ADC", True), ("Ktrans", False)):
            border, centre = _border_and_centre(img[data.channels.index(ch)])
            if darker:
                assert centre < 0.7 * border, (row.ProxID, row.fid, ch, centre, border)
            else:
                assert centre > 2.0 * border, (row.ProxID, row.fid, ch, centre, border)


def _marker_volume(shape, spacing, origin, direction, marker, base, peak):
    """(nz, ny, nx) volume: ``base`` plus a Gaussian (sigma 1.2 mm) of height ``peak`` at the
    world point ``marker``."""
    from medgan.data.phantoms.prostatex import grid_points

    pts = grid_points(shape, spacing, origin, direction)
    d2 = np.sum((pts - marker) ** 2, axis=-1)
    return base + peak * np.exp(-d2 / (2 * 1.2**2))


def test_alignment_marker_lands_on_the_same_pixel_in_every_channel(tmp_path):
    """A bright marker at a known world point is a voxel centre of the tilted 0.5 mm T2 grid,
    of the 2 mm ADC grid (another origin, off the T2 lattice) and of the axis-aligned Ktrans
    grid; in the patch it must appear at the pixel whose world centre is the marker."""
    tilt = np.deg2rad(-17.0)
    d = np.array([[1.0, 0, 0], [0, np.cos(tilt), -np.sin(tilt)], [0, np.sin(tilt), np.cos(tilt)]])
    marker = np.array([12.3, 25.7, -40.1])
    grids = {  # channel: (shape (x, y, z), spacing, marker voxel index, direction)
        "T2": ((96, 96, 9), (0.5, 0.5, 3.0), (41, 52, 4), d),
        "ADC": ((30, 24, 11), (2.0, 2.0, 3.0), (17, 11, 5), d),
        "Ktrans": ((40, 40, 12), (1.5, 1.5, 3.0), (21, 19, 6), np.eye(3)),
    }
    root = tmp_path / "root"
    patient = root / "ProstateX-0099"
    origins = {}
    for ch, (shape, spacing, idx, direction) in grids.items():
        origin = marker - direction @ (np.asarray(idx) * np.asarray(spacing))
        origins[ch] = origin
        vol = _marker_volume(shape, spacing, origin, direction, marker, 100.0, 1500.0)
        if ch == "Ktrans":
            write_metaimage(patient / "ProstateX-0099-Ktrans.mhd", vol / 1000.0, origin=origin,
                            spacing=spacing, direction=direction)
        else:
            desc = "t2_tse_tra" if ch == "T2" else "ep2d_diff_tra_DYNDIST_ADC"
            write_dicom_series(patient / "study" / ch, vol, origin=origin, spacing=spacing,
                               direction=direction, description=desc,
                               series_number=3 if ch == "T2" else 7,
                               patient_id="ProstateX-0099", uid_seed=f"align-{ch}")
    local = d.T @ (origins["ADC"] - origins["T2"])
    assert not np.allclose(local[:2] / 2.0, np.round(local[:2] / 2.0))  # grids interleave
    u, v = d[:, 0], d[:, 1]
    targets = {1: (5, 10), 2: (12, 3)}  # fid: (row, col) where the marker must appear
    lines = ["ProxID,fid,pos,zone,ClinSig"]
    for fid, (row, col) in targets.items():
        pos = marker - (col - 7.5) * u - (row - 7.5) * v
        lines.append(f"ProstateX-0099,{fid},{' '.join(f'{x:.6f}' for x in pos)},PZ,TRUE")
    (root / FINDINGS_NAME).write_text("\n".join(lines) + "\n")

    prepare_prostatex(root, tmp_path / "out")
    data = load_prepared(tmp_path / "out")
    for img, fid in zip(data.images, data.meta.fid, strict=True):
        for c, ch in enumerate(data.channels):
            peak = np.unravel_index(np.argmax(img[c]), img[c].shape)
            assert tuple(int(i) for i in peak) == targets[fid], (fid, ch)


def test_augmentation_multiplies_patches_deterministically(phantoms, prepared, tmp_path):
    root = _one_patient(phantoms, tmp_path)
    aug = {"copies": 2, "jitter_mm": 2.0, "rotation_deg": 20.0}
    a = prepare_prostatex(root, tmp_path / "a", augment=aug, n_slices=3, seed=5)
    prepare_prostatex(root, tmp_path / "b", augment=aug, n_slices=3, seed=5)
    prepare_prostatex(root, tmp_path / "c", augment=aug, n_slices=3, seed=6)
    n_findings = 2
    assert a["n_images"] == n_findings * 3 * 3 and a["slice_offsets"] == [-1, 0, 1]
    assert a["augment"] == aug
    da, db, dc = (load_prepared(tmp_path / x) for x in "abc")
    np.testing.assert_array_equal(da.images, db.images)
    pd.testing.assert_frame_equal(da.meta, db.meta)
    meta = da.meta
    assert sorted(meta.augment_copy.unique()) == [0, 1, 2]
    assert sorted(meta.slice_offset.unique()) == [-1, 0, 1]
    orig = (meta.augment_copy == 0).to_numpy()
    assert (meta.rotation_deg[orig] == 0).all() and (meta.rotation_deg[~orig] != 0).all()
    # copy 0 is the plain patch (and seed-independent); augmented copies depend on the seed
    np.testing.assert_array_equal(da.images[orig], dc.images[orig])
    assert not np.allclose(da.images[~orig], dc.images[~orig])
    plain = prepared[2]
    sel = (plain.meta.ProxID == "ProstateX-0002").to_numpy()
    np.testing.assert_array_equal(
        da.images[orig & (meta.slice_offset == 0).to_numpy()], plain.images[sel])
    # neighbouring slices differ from the centre slice by one T2 slice spacing (3 mm)
    centres = np.array([[float(x) for x in s.split()] for s in meta.centre_mm[orig]])
    offs = meta.slice_offset[orig].to_numpy()
    step = np.linalg.norm(centres[offs == 1][0] - centres[offs == 0][0])
    assert step == pytest.approx(3.0, abs=1e-3)


def test_ktrans_substitutes_are_recorded(phantoms, tmp_path):
    root = _one_patient(phantoms, tmp_path)
    for ext in ("mhd", "zraw"):
        (root / "ProstateX-0002" / f"ProstateX-0002-Ktrans.{ext}").unlink()
    with pytest.raises(InputError, match="no Ktrans file") as err:
        prepare_prostatex(root, tmp_path / "none")
    assert err.value.path == str(root / "ProstateX-0002")
    assert not (tmp_path / "none").exists()

    info = prepare_prostatex(root, tmp_path / "hb", ktrans_substitute="highb")
    assert info["ktrans_substitute"] == "highb"
    assert info["ktrans_sources"] == {"file": 0, "highb": 1, "zeros": 0}
    assert info["patients_substituted"] == {"ProstateX-0002": "highb"}
    data = load_prepared(tmp_path / "hb")
    assert (data.meta.ktrans_source == "highb").all()
    assert data.meta.Ktrans_path.str.contains("CALCBVAL").all()
    for img in data.images:  # the lesion is bright on the high-b image too
        border, centre = _border_and_centre(img[2])
        assert centre > 1.5 * border

    prepare_prostatex(root, tmp_path / "z", ktrans_substitute="zeros")
    zeros = load_prepared(tmp_path / "z")
    assert (zeros.images[:, 2] == 0).all() and (zeros.meta.ktrans_source == "zeros").all()
    np.testing.assert_array_equal(zeros.images[:, :2], data.images[:, :2])


def test_scale_factors_apply_per_channel(phantoms, tmp_path):
    root = _one_patient(phantoms, tmp_path)
    prepare_prostatex(root, tmp_path / "a")
    info = prepare_prostatex(root, tmp_path / "b", scale={"T2": 0.002})
    assert info["scale"]["T2"] == 0.002 and info["scale"]["ADC"] == DEFAULT_SCALE["ADC"]
    base, doubled = load_prepared(tmp_path / "a"), load_prepared(tmp_path / "b")
    np.testing.assert_allclose(doubled.images[:, 0], 2 * base.images[:, 0], rtol=1e-6)
    np.testing.assert_array_equal(doubled.images[:, 1:], base.images[:, 1:])


def test_repeated_series_picks_highest_series_number_and_records_it(phantoms, tmp_path):
    root = _one_patient(phantoms, tmp_path)
    t2 = _series_folder(root, "ProstateX-0002", "t2tsetra")
    repeat = t2.parent / "9.000000-t2tsetra-99999"
    repeat.mkdir()
    for f in sorted(t2.glob("*.dcm")):
        ds = pydicom.dcmread(f)
        ds.SeriesNumber = 9
        ds.SeriesInstanceUID = generate_uid(entropy_srcs=["repeat"])
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(
            entropy_srcs=["repeat", f.name])
        ds.PixelData = (ds.pixel_array // 2).astype(np.uint16).tobytes()
        ds.save_as(repeat / f.name)
    info = prepare_prostatex(root, tmp_path / "out")
    (choice,) = info["series_choices"]
    assert choice["channel"] == "T2" and choice["chosen"] == str(repeat)
    assert sorted(choice["candidates"]) == sorted([str(t2), str(repeat)])
    assert (load_prepared(tmp_path / "out").meta.T2_series == str(repeat)).all()


def test_non_dicom_file_in_a_series_folder_is_ignored(phantoms, prepared, tmp_path):
    root = _one_patient(phantoms, tmp_path)
    (_series_folder(root, "ProstateX-0002", "t2tsetra") / "README.txt").write_text("notes\n")
    (_series_folder(root, "ProstateX-0002", "ep2ddifftraDYNDISTADC") / "Thumbs.db").write_bytes(
        b"\x00" * 300)
    prepare_prostatex(root, tmp_path / "out")
    plain = prepared[2]
    sel = (plain.meta.ProxID == "ProstateX-0002").to_numpy()
    np.testing.assert_array_equal(load_prepared(tmp_path / "out").images, plain.images[sel])


def test_read_findings_parses_and_keeps_line_numbers(tmp_path):
    path = tmp_path / "f.csv"
    path.write_text("ProxID,fid,pos,zone,ClinSig\nProstateX-0000,1,1 2 3,PZ,TRUE\n\n"
                    "ProstateX-0001,2,-4.5 5e1 6,AS,false\n")
    df = read_findings(path)
    assert df.ProxID.tolist() == ["ProstateX-0000", "ProstateX-0001"]
    assert df.line.tolist() == [2, 4] and df.ClinSig.tolist() == [True, False]
    assert df[["x", "y", "z"]].to_numpy().tolist() == [[1, 2, 3], [-4.5, 50, 6]]
    test_set = tmp_path / "test.csv"  # the challenge's test findings have no ClinSig
    test_set.write_text("ProxID,fid,pos,zone\nProstateX-0204,1,1 2 3,TZ\n")
    assert read_findings(test_set).ClinSig.tolist() == [None]


def test_settings_are_validated(phantoms, tmp_path):
    root = phantoms[0]
    for kwargs, match in (({"patch_mm": 15.5}, "multiple"), ({"n_slices": 2}, "odd"),
                          ({"scale": {"T1": 1.0}}, "unknown key"),
                          ({"augment": {"copies": -1}}, "copies"),
                          ({"ktrans_substitute": "adc"}, "ktrans_substitute"),
                          ({"series_patterns": {"T2": "("}}, "regular expression")):
        with pytest.raises(ValueError, match=match):
            prepare_prostatex(root, tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


# --- malformed input: one-line InputError naming the file, nothing left behind --------------


def _break_missing_slice(root):
    folder = _series_folder(root, "ProstateX-0002", "t2tsetra")
    (folder / "1-05.dcm").unlink()
    return folder, "missing slice"


def _break_truncated_dicom(root):
    f = _series_folder(root, "ProstateX-0002", "ep2ddifftraDYNDISTADC") / "1-03.dcm"
    f.write_bytes(f.read_bytes()[:-3000])
    return f, "truncated or corrupt"


def _break_finding_outside(root):
    csv = root / FINDINGS_NAME
    lines = csv.read_text().splitlines()
    lines[2] = "ProstateX-0002,2,0 0 200,TZ,FALSE"
    csv.write_text("\n".join(lines) + "\n")
    return csv, r"line 3: finding ProstateX-0002 fid 2 .* outside the T2 volume .*t2tsetra"


def _break_pos_not_three_numbers(root):
    csv = root / FINDINGS_NAME
    lines = csv.read_text().splitlines()
    lines[2] = "ProstateX-0002,2,12.5 -3,TZ,FALSE"
    csv.write_text("\n".join(lines) + "\n")
    return csv, "line 3: pos '12.5 -3' is not three"


def _break_row_field_count(root):
    csv = root / FINDINGS_NAME
    csv.write_text(csv.read_text() + "ProstateX-0002,3,1 2 3\n")
    return csv, "line 4: expected 5 fields"


def _break_missing_column(root):
    csv = root / FINDINGS_NAME
    lines = csv.read_text().splitlines()
    rows = [ln.split(",") for ln in lines]
    csv.write_text("\n".join(",".join(r[:3] + r[4:]) for r in rows) + "\n")  # drop zone
    return csv, r"missing column\(s\) \['zone'\]"


def _break_duplicate_finding(root):
    csv = root / FINDINGS_NAME
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join([*lines, lines[1]]) + "\n")
    return csv, "line 4: finding ProstateX-0002 fid 1 repeats line 2"


def _break_no_adc_series(root):
    shutil.rmtree(_series_folder(root, "ProstateX-0002", "ep2ddifftraDYNDISTADC"))
    return root / "ProstateX-0002", "no DICOM series for ADC: no SeriesDescription matches"


def _break_empty_patient_folder(root):
    shutil.rmtree(root / "ProstateX-0002")
    (root / "ProstateX-0002").mkdir()
    return root / "ProstateX-0002", "holds no DICOM series"


def _break_no_patient_folder(root):
    shutil.rmtree(root / "ProstateX-0002")
    return root / FINDINGS_NAME, "line 2: no patient folder"


def _break_truncated_zraw(root):
    z = root / "ProstateX-0002" / "ProstateX-0002-Ktrans.zraw"
    z.write_bytes(z.read_bytes()[:1000])
    return root / "ProstateX-0002" / "ProstateX-0002-Ktrans.mhd", "truncated or corrupt"


def _break_missing_zraw(root):
    (root / "ProstateX-0002" / "ProstateX-0002-Ktrans.zraw").unlink()
    return root / "ProstateX-0002" / "ProstateX-0002-Ktrans.mhd", "ElementDataFile is missing"


def _break_no_findings_csv(root):
    (root / FINDINGS_NAME).unlink()
    return root, "expected one findings CSV"


BREAKERS = [_break_missing_slice, _break_truncated_dicom, _break_finding_outside,
            _break_pos_not_three_numbers, _break_row_field_count, _break_missing_column,
            _break_duplicate_finding, _break_no_adc_series, _break_empty_patient_folder,
            _break_no_patient_folder, _break_truncated_zraw, _break_missing_zraw,
            _break_no_findings_csv]


@pytest.mark.parametrize("breaker", BREAKERS, ids=lambda f: f.__name__[7:])
def test_malformed_input_gives_one_line_error_naming_the_file(phantoms, tmp_path, breaker):
    root = _one_patient(phantoms, tmp_path)
    path, match = breaker(root)
    out = tmp_path / "out"
    with pytest.raises(InputError, match=match) as err:
        prepare_prostatex(root, out)
    message = str(err.value)
    assert err.value.path == str(path)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root"]  # no temp leftovers


def test_prepare_into_an_existing_folder_leaves_it_clean_on_error(phantoms, tmp_path):
    root = _one_patient(phantoms, tmp_path)
    _break_missing_slice(root)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(InputError):
        prepare_prostatex(root, out)
    assert list(out.iterdir()) == []


def test_dataset_json_is_valid_json(prepared):
    out, info, _ = prepared
    assert json.loads((out / "dataset.json").read_text()) == info
