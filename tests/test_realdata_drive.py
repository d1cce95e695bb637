"""Real-data tests on the DRIVE training sample (../shared/data/DRIVE/training)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require_real_data

from medgan.data.preprocess.fundus_image import (
    estimate_fov,
    load_fundus_sample,
    locate_optic_disc,
    preprocess_for_vessel_segmentation,
)
from medgan.data.readers.fundus import discover_fundus_images, read_fundus_record
from medgan.data.vessels import vessel_auc

pytestmark = pytest.mark.realdata

# The optic disc's side in each photo, read by eye from the 20 photos (disc on the image's
# right = right eye by the convention of medgan.data.preprocess.fundus).
DISC_SIDE_BY_EYE = dict(zip([str(i) for i in range(21, 41)], "LRRRRLRRRRRRRRLRRRLR", strict=True))


@pytest.fixture(scope="module")
def drive():
    return require_real_data("DRIVE", "training")


@pytest.fixture(scope="module")
def records(drive):
    return discover_fundus_images(drive, require_vessels=True)


def test_reads_and_pairs_all_twenty(records):
    assert [r.image_id for r in records] == [str(i) for i in range(21, 41)]
    for r in records:
        assert r.image.name == f"{r.image_id}_training.tif"
        assert r.vessels.name == f"{r.image_id}_manual1.gif"
        assert r.fov.name == f"{r.image_id}_training_mask.gif"
        assert r.laterality is None
    data = read_fundus_record(records[0])
    assert data["image"].shape == (584, 565, 3) and data["image"].dtype == np.float32
    assert data["vessels"].shape == data["fov"].shape == (584, 565)
    assert 0.08 < data["vessels"][data["fov"]].mean() < 0.2


def test_estimated_fov_matches_the_mask_files(records):
    for r in records[::5]:
        data = read_fundus_record(r)
        est = estimate_fov(data["image"])
        assert (est & data["fov"]).sum() / (est | data["fov"]).sum() > 0.97


def test_preprocessing_at_512(records):
    sample = load_fundus_sample(records[0], resolution=512)
    out = preprocess_for_vessel_segmentation(sample.image, sample.fov)
    assert out.shape == (512, 512) and out.min() >= 0 and out.max() <= 1
    assert np.all(out[~sample.fov] == 0)
    # vessels are darker than the background in the segmenter's input, clearly enough to
    # rank pixels better than chance without any learning
    assert vessel_auc(1 - out, sample.vessels, sample.fov) > 0.65


def test_laterality_estimated_for_all_and_matches_a_manual_look(records):
    sides = {}
    for r in records:
        sample = load_fundus_sample(r, resolution=256)
        disc = locate_optic_disc(sample.image, sample.fov)  # no vessel map: ridge filter
        assert disc.side in ("L", "R") and 0.0 <= disc.confidence <= 1.0
        assert sample.fov[int(disc.row), int(disc.col)]
        sides[r.image_id] = disc.side
    assert sides == DISC_SIDE_BY_EYE
