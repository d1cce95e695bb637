"""Han 2018's Concat: a BraTS dataset with channel_mode pooled is every sequence's slices in one
channel, with the subjects kept (the held-out split stays by patient)."""

from __future__ import annotations

import numpy as np
import pytest

from medgan.config import ConfigError, check_config, dataset_channels
from medgan.data.phantoms import make_brats_phantoms
from medgan.data.prepare import prepare_dataset
from medgan.data.prepared import load_prepared

PREP = {"plane": "sagittal", "slice_start": 0.4, "slice_stop": 0.6, "slice_units": "fraction",
        "resolution": 16}


@pytest.fixture(scope="module")
def prepared_pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("pooled")
    make_brats_phantoms(root / "brats", n_subjects=2, shape=(32, 32, 24), seed=3)
    ds = {"kind": "brats", "path": str(root / "brats"), "sequences": ["T1", "T2", "FLAIR"],
          "preprocessing": PREP}
    prepare_dataset(root / "brats", root / "stacked", dataset=ds, name="stacked")
    prepare_dataset(root / "brats", root / "pooled", dataset={**ds, "channel_mode": "pooled"},
                    name="pooled")
    return load_prepared(root / "stacked"), load_prepared(root / "pooled"), root


def test_pooled_is_each_sequence_in_turn(prepared_pair):
    stacked, pooled, _ = prepared_pair
    n = stacked.images.shape[0]
    assert pooled.channels == ["Concat"]
    assert pooled.images.shape == (3 * n, 1, 16, 16)
    for c, name in enumerate(["T1", "T2", "FLAIR"]):
        np.testing.assert_array_equal(pooled.images[c * n:(c + 1) * n, 0], stacked.images[:, c])
        assert (pooled.meta["sequence"].iloc[c * n:(c + 1) * n] == name).all()
    assert list(pooled.meta["subject"].iloc[:n]) == list(stacked.meta["subject"])
    assert pooled.info["pooled_channels"] == ["T1", "T2", "FLAIR"]
    assert pooled.info["images_per_channel"] == n


def test_no_scratch_folder_left(prepared_pair):
    _, _, root = prepared_pair
    assert not [p for p in root.iterdir() if p.name.startswith(".")]


def test_config_channels_and_label_clash():
    ds = {"kind": "brats", "path": "x", "channel_mode": "pooled", "preprocessing": {}}
    assert dataset_channels(ds) == ["Concat"]
    bad = {"datasets": {"d": {**ds, "preprocessing": {"label_channels": True}}}, "models": {}}
    with pytest.raises(ConfigError, match="datasets.d.channel_mode"):
        check_config(bad)
