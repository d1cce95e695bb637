"""Faults at scale in preparation (issue 18): a corrupt file in case 900 of 1,000 stops the
preparation with one line naming it and nothing written, or, with ``on_bad_case="skip"``, the
case is left out and listed in dataset.json; a full disk while writing leaves the previous
dataset byte for byte as it was, and the error says so."""

from __future__ import annotations

import errno
import json
import os

import nibabel as nib
import numpy as np
import pytest

from medgan.data.preprocess.brats import prepare_brats
from medgan.errors import DiskFullError, InputError

N_CASES, BAD_CASE = 1000, 900  # the corrupt case is the 900th
SHAPE = (8, 8, 6)  # tiny volumes (the phantom writer makes >= 16 a side): the test takes seconds
# one sequence per case (T2): the cost per case is reading one file
SETTINGS = dict(naming="brats2017", sequences=["T2"], plane="sagittal", slice_start=0.4,
                slice_stop=0.6, slice_units="fraction", resolution=8)
FILES = ("images.npy", "meta.tsv", "dataset.json")


def case_name(i: int) -> str:
    return f"BraTS20_Training_{i:04d}"


def write_release(root, n_cases: int, *, seed: int = 0) -> None:
    """A BraTS 2017-style release of ``n_cases`` cases, each one T2 volume of SHAPE voxels: a
    random brain on a constant background."""
    rng = np.random.default_rng(seed)
    for i in range(1, n_cases + 1):
        folder = root / case_name(i)
        folder.mkdir(parents=True)
        vol = np.zeros(SHAPE, np.float32)
        vol[2:6, 2:6, 1:5] = rng.normal(100.0, 20.0, (4, 4, 4))
        nib.save(nib.Nifti1Image(vol, np.eye(4)), folder / f"{case_name(i)}_t2.nii.gz")


@pytest.fixture(scope="module")
def large_release(tmp_path_factory):
    """1,000 cases, the T2 file of case 900 cut short (a copy that did not finish)."""
    root = tmp_path_factory.mktemp("faults") / "brats"
    write_release(root, N_CASES)
    bad = root / case_name(BAD_CASE) / f"{case_name(BAD_CASE)}_t2.nii.gz"
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    return root, bad


def test_a_corrupt_file_in_case_900_of_1000_stops_with_one_line_naming_it(large_release,
                                                                         tmp_path):
    root, bad = large_release
    out = tmp_path / "prepared"
    with pytest.raises(InputError) as err:
        prepare_brats(root, out, workers=2, **SETTINGS)
    message = str(err.value)
    assert message.startswith(f"{bad}: ") and "\n" not in message
    assert err.value.path == str(bad)
    assert not out.exists()  # no output directory, let alone a partial dataset
    assert list(tmp_path.iterdir()) == []


def test_on_bad_case_skip_goes_on_and_lists_case_900(large_release, tmp_path):
    root, bad = large_release
    out = tmp_path / "prepared"
    info = prepare_brats(root, out, workers=1, on_bad_case="skip", **SETTINGS)
    written = json.loads((out / "dataset.json").read_text())
    assert written == info
    assert [s["subject"] for s in written["skipped_cases"]] == [case_name(BAD_CASE)]
    assert written["skipped_cases"][0]["reason"].startswith(f"{bad}: ")
    assert written["n_subjects"] == N_CASES
    assert written["n_subjects_with_images"] == N_CASES - 1
    subjects = [line.split("\t")[0] for line in (out / "meta.tsv").read_text().splitlines()[1:]]
    assert sorted(set(subjects)) == [case_name(i) for i in range(1, N_CASES + 1)
                                     if i != BAD_CASE]  # the cases after 900 are there too
    images = np.load(out / "images.npy", mmap_mode="r")
    assert images.shape[0] == len(subjects) == written["n_images"]
    assert len(subjects) % (N_CASES - 1) == 0  # the same slices of every other case


# --- a full disk ------------------------------------------------------------------------------


@pytest.fixture
def small_release(tmp_path):
    root = tmp_path / "brats"
    write_release(root, 12, seed=1)
    return root


def _written(release, tmp_path, **settings) -> dict[str, bytes]:
    """The files a preparation writes (in a scratch folder)."""
    scratch = tmp_path / "scratch"
    prepare_brats(release, scratch, **settings)
    return {name: (scratch / name).read_bytes() for name in FILES}


@pytest.mark.parametrize("failing", FILES)
def test_a_full_disk_leaves_the_previous_dataset_as_it_was(small_release, tmp_path,
                                                          full_disk, failing):
    out = tmp_path / "prepared"
    prepare_brats(small_release, out, **SETTINGS)  # the previous dataset
    before = {name: (out / name).read_bytes() for name in FILES}
    again = {**SETTINGS, "resolution": 16, "slice_start": 0.2, "slice_stop": 0.8}
    new = _written(small_release, tmp_path, **again)
    assert all(new[name] != before[name] for name in FILES)  # each file would change
    sizes = {name: len(new[name]) for name in FILES}
    sizes["images.npy"] += 128  # its header is written at the start, and again at the end
    written_before = sum(sizes[n] for n in FILES[:FILES.index(failing)])  # the write order
    full_disk.free = written_before + sizes[failing] // 2  # full halfway through `failing`

    with pytest.raises(OSError) as err:
        prepare_brats(small_release, out, **again)
    assert full_disk.failed  # the simulated disk did fill up
    assert {name: (out / name).read_bytes() for name in FILES} == before
    assert sorted(os.listdir(out)) == sorted(FILES)  # no temporary file left behind
    assert isinstance(err.value, DiskFullError) and err.value.errno == errno.ENOSPC
    message = str(err.value)
    assert message.startswith(f"{out / failing}: disk full (No space left on device) while "
                              "writing it; nothing was replaced") and "\n" not in message
    assert f"the previous images.npy, meta.tsv and dataset.json of {out} (if any) are as " \
           "they were" in message


def test_a_full_disk_on_a_first_preparation_leaves_no_directory(small_release, tmp_path,
                                                               full_disk):
    full_disk.free = 1000
    out = tmp_path / "prepared"
    with pytest.raises(DiskFullError, match="images.npy: disk full"):
        prepare_brats(small_release, out, **SETTINGS)
    assert not out.exists()
