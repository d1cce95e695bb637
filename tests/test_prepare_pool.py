"""Parallel preparation (medgan.data.preprocess.pool): the same bytes for any number of
workers, and a bad case either stops everything (nothing written) or is skipped and listed."""

from __future__ import annotations

import json

import pytest

from medgan.data.phantoms import make_brats_phantoms
from medgan.data.preprocess.brats import prepare_brats
from medgan.errors import InputError

SETTINGS = dict(naming="brats2017", plane="sagittal", slice_start=0.4, slice_stop=0.6,
                slice_units="fraction", resolution=16)
FILES = ("images.npy", "meta.tsv", "dataset.json")


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    root = tmp_path_factory.mktemp("pool") / "brats"
    make_brats_phantoms(root, n_subjects=5, shape=(24, 24, 16), seed=3)
    return root


def test_one_and_two_workers_write_byte_identical_datasets(release, tmp_path):
    for workers in (1, 2):
        prepare_brats(release, tmp_path / f"w{workers}", workers=workers, **SETTINGS)
    for name in FILES:
        assert (tmp_path / "w1" / name).read_bytes() == (tmp_path / "w2" / name).read_bytes()


def _corrupt_one_case(release, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for case in sorted(p for p in release.iterdir() if p.is_dir()):
        (broken / case.name).mkdir()
        for f in case.iterdir():
            (broken / case.name / f.name).write_bytes(f.read_bytes())
    bad_case = sorted(p for p in broken.iterdir() if p.is_dir())[3]
    bad_file = sorted(bad_case.glob("*t2*.nii.gz"))[0]
    bad_file.write_bytes(bad_file.read_bytes()[:200])  # truncated gzip
    return broken, bad_case, bad_file


def test_a_corrupt_case_stops_preparation_naming_it_and_writes_nothing(release, tmp_path):
    broken, _, bad_file = _corrupt_one_case(release, tmp_path)
    out = tmp_path / "out"
    with pytest.raises(InputError) as err:
        prepare_brats(broken, out, workers=2, **SETTINGS)
    assert bad_file.name in str(err.value)
    assert not any((out / name).exists() for name in FILES)


def test_on_bad_case_skip_lists_the_skipped_case(release, tmp_path):
    broken, bad_case, _ = _corrupt_one_case(release, tmp_path)
    info = prepare_brats(broken, tmp_path / "out", workers=2, on_bad_case="skip", **SETTINGS)
    written = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert info["skipped_cases"] == written["skipped_cases"]
    assert len(written["skipped_cases"]) == 1
    assert bad_case.name in json.dumps(written["skipped_cases"])


def _blas_threads(_item):
    from threadpoolctl import threadpool_info

    return max((lib["num_threads"] for lib in threadpool_info()), default=1)


def test_one_worker_prepares_with_one_blas_thread():
    from threadpoolctl import threadpool_info, threadpool_limits

    from medgan.data.preprocess.pool import ordered_map

    if not threadpool_info():
        pytest.skip("numpy has no BLAS thread pool here")
    with threadpool_limits(limits=2):  # as a job on a node whose BLAS would use 2 threads
        assert list(ordered_map(_blas_threads, [0, 1], workers=1)) == [1, 1]
        assert _blas_threads(None) == 2  # lifted again between calls


def _mmapped_bytes_while_holding(n_bytes: int) -> int:
    """glibc's bytes in mmap'd blocks (mallinfo2's hblkhd) while an array of n_bytes lives."""
    import ctypes

    import numpy as np

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
            "fordblks", "keepcost")]

    mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
    mallinfo2.restype = MallInfo2
    held = np.ones(n_bytes, dtype=np.uint8)
    mapped = int(mallinfo2().hblkhd)
    del held
    return mapped


def test_workers_serve_large_arrays_from_a_kept_heap():
    """A 40 MB array is its own mmap in a plain process (fresh pages for every volume); in a
    preparation worker it comes from the heap that keep_freed_memory keeps."""
    import ctypes

    from medgan.data.preprocess.pool import ordered_map

    try:
        ctypes.CDLL("libc.so.6").mallinfo2  # noqa: B018 - glibc >= 2.33
    except (OSError, AttributeError):
        pytest.skip("no glibc with mallinfo2 here")
    size = 40 << 20
    assert _mmapped_bytes_while_holding(size) >= size  # this process: glibc's default
    assert all(m < size for m in ordered_map(_mmapped_bytes_while_holding, [size, size],
                                             workers=1))
