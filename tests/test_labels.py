"""BraTS label schemes -> Beers 2018's edema / necrosis / enhancing channels."""

from __future__ import annotations

import numpy as np
import pytest

from medgan.data.labels import (
    LABEL_CHANNELS,
    LABEL_SCHEMES,
    check_label_values,
    get_label_scheme,
    label_channels,
    label_values,
)
from medgan.data.readers.brats import NAMING_PRESETS, implied_label_scheme

# value -> index in LABEL_CHANNELS (edema 0, necrosis 1, enhancing 2), per scheme
EXPECTED = {
    "brats2015": {1: 1, 2: 0, 3: 1, 4: 2},
    "brats2017": {1: 1, 2: 0, 4: 2},
    "brats2023": {1: 1, 2: 0, 3: 2},
}


def _map_with(values, shape=(6, 5, 4), seed=0):
    rng = np.random.default_rng(seed)
    return rng.choice(np.asarray(values, dtype=np.int16), size=shape)


@pytest.mark.parametrize("scheme", sorted(EXPECTED))
def test_each_value_lands_in_its_channel(scheme):
    values = [0, *EXPECTED[scheme]]
    seg = _map_with(values)
    out = label_channels(seg, scheme)
    assert out.shape == (3, *seg.shape) and out.dtype == bool
    assert LABEL_CHANNELS == ("edema", "necrosis", "enhancing")
    for value in values:
        where = seg == value
        expected = np.zeros(3, bool)
        if value:
            expected[EXPECTED[scheme][value]] = True
        assert np.all(out[:, where] == expected[:, None]), (scheme, value)
    assert out.sum(axis=0).max() == 1  # disjoint
    np.testing.assert_array_equal(out.any(axis=0), seg > 0)


def test_label_3_means_opposite_things_in_2015_and_2023():
    seg = np.array([[0, 3]])
    assert label_channels(seg, "brats2015")[:, 0, 1].tolist() == [False, True, False]
    assert label_channels(seg, "brats2023")[:, 0, 1].tolist() == [False, False, True]


def test_float_dtype_and_float_input():
    seg = np.array([0.0, 1.0, 2.0, 4.0], np.float32)
    out = label_channels(seg, "brats2017", dtype=np.float32)
    assert out.dtype == np.float32 and set(np.unique(out)) == {0.0, 1.0}
    np.testing.assert_array_equal(out, [[0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]])


def test_all_zero_map_is_valid_no_tumour():
    out = label_channels(np.zeros((4, 4, 3), np.uint8), "brats2023")
    assert out.shape == (3, 4, 4, 3) and not out.any()


@pytest.mark.parametrize("scheme, seg, match", [
    ("brats2017", [0, 1, 3], r"\[3\] are not in the brats2017 .* fit label_scheme brats2015 or "
                             r"brats2023"),
    ("brats2023", [0, 2, 4], r"\[4\] are not in the brats2023 .* fit label_scheme brats2015 or "
                             r"brats2017"),
    ("brats2015", [0, 5], r"\[5\] .* not a BraTS label map"),
    ("brats2017", [0, 7], r"\[7\] .* not a BraTS label map"),
    ("brats2017", [-1, 0, 2], r"\[-1\] are not in"),
    ("brats2017", [0, 1000], r"\[1000\] are not in"),
    ("brats2017", [0.0, 1.5], "non-integer values"),
    ("brats2017", [0.0, np.nan], "NaN or infinite"),
    ("brats2017", [True, False], "boolean"),
])
def test_values_outside_the_scheme_raise(scheme, seg, match):
    with pytest.raises(ValueError, match=match) as err:
        label_channels(np.asarray(seg), scheme)
    assert "\n" not in str(err.value)


def test_check_and_values_and_unknown_scheme():
    assert label_values(np.array([[4, 0], [0, 2]], np.int16)) == [0, 2, 4]
    assert check_label_values(np.array([0, 1, 2, 3, 4]), "brats2015") == [0, 1, 2, 3, 4]
    assert label_values(np.zeros((0, 3))) == []
    assert get_label_scheme("brats2023") is LABEL_SCHEMES["brats2023"]
    assert LABEL_SCHEMES["brats2017"].values == (0, 1, 2, 4)
    with pytest.raises(ValueError, match="unknown label scheme"):
        label_channels(np.zeros(3), "brats2019")


def test_naming_presets_imply_their_scheme():
    assert set(NAMING_PRESETS) <= set(LABEL_SCHEMES)
    assert implied_label_scheme("brats2017") == "brats2017"
    assert implied_label_scheme("brats2023") == "brats2023"
    assert implied_label_scheme({"preset": "brats2023", "seg": "x.nii.gz"}) == "brats2023"
    assert implied_label_scheme({"T1c": "T1c_*.nii.gz", "seg": "OTMultiClass.nii.gz"}) is None
