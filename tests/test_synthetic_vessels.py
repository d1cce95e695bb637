"""Tests of the vessel AUC of synthetic fundus images (Beers et al. 2018, sec. 4.1)."""

from __future__ import annotations

import numpy as np
import pytest

from medgan.analysis.synthetic_vessels import COLUMNS, real_vessel_auc, synthetic_vessel_auc
from medgan.data.phantoms import make_phantoms
from medgan.data.prepared import load_prepared
from medgan.data.preprocess.fundus import prepare_fundus
from medgan.data.vessels import train_vessel_unet_on_folder
from medgan.errors import InputError

N_IMAGES, SIZE = 6, 64
# A tiny U-net on 24 px patches (the workflow's are 48 px; the code path is the same).
TRAIN = {"n_patches": 3000, "lr": 3e-3, "unet": {"width": 8}, "patch_size": 24,
         "batch_size": 32, "threads": 1, "progress": False, "seed": 0}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Fundus phantoms, a U-net trained on them, and the prepared dataset it segmented."""
    root = tmp_path_factory.mktemp("synthetic_vessels")
    make_phantoms("fundus", root / "phantoms", n_images=N_IMAGES, size=SIZE, seed=0)
    unet = root / "unet.pt"
    train_vessel_unet_on_folder(root / "phantoms", unet, resolution=SIZE, **TRAIN)
    prepare_fundus(root / "phantoms", root / "prepared", unet_checkpoint=unet, resolution=SIZE,
                   overlap=8)
    ds = load_prepared(root / "prepared", mmap=False)
    return {"dir": root / "prepared", "unet": unet, "images": ds.images,
            "channels": ds.channels, "info": ds.info}


@pytest.fixture(scope="module")
def real_scores(prepared):
    return real_vessel_auc(prepared["dir"], prepared["unet"], progress=False)


def _score(prepared, images, **kw):
    return synthetic_vessel_auc(images, prepared["channels"], prepared["unet"],
                                dataset_info=prepared["info"], progress=False, **kw)


def test_real_images_against_their_own_vessel_channel_score_near_one(real_scores):
    summary, table = real_scores
    assert list(table.columns) == COLUMNS
    assert list(table["image"].astype(str)) == ["21", "22", "23", "24", "25", "26"]
    assert summary["n_images"] == summary["n_scored"] == N_IMAGES
    assert summary["n_excluded"] == 0 and (table["reason"] == "").all()
    assert summary["vessel_auc_mean"] > 0.9 and table["vessel_auc"].min() > 0.9, table
    assert summary["vessel_auc_reverse_mean"] > 0.9, table
    assert summary["vessel_auc_median"] == pytest.approx(table["vessel_auc"].median())
    assert summary["threshold"] == 0.5 and summary["gan_vessel_threshold"] == 0.0
    assert summary["patch_size"] == 24 and summary["overlap"] == 8
    assert summary["unet_trained_resolution"] == SIZE and summary["resolution"] == [SIZE, SIZE]
    assert table["fov_fraction"].between(0.4, 0.9).all()
    assert table["unet_vessel_fraction"].between(0.005, 0.5).all()


def test_fov_margin_drops_the_black_edge_ring_of_the_reestimated_fov(prepared, real_scores):
    summary, table = real_vessel_auc(prepared["dir"], prepared["unet"], fov_margin=1,
                                     progress=False)
    assert summary["fov_margin"] == 1
    assert (table["fov_fraction"] < real_scores[1]["fov_fraction"]).all()
    assert table["vessel_auc"].min() > 0.99, table
    assert summary["vessel_auc_mean"] >= real_scores[0]["vessel_auc_mean"]
    with pytest.raises(ValueError, match="fov_margin"):
        real_vessel_auc(prepared["dir"], prepared["unet"], fov_margin=-1)
    summary, table = real_vessel_auc(prepared["dir"], prepared["unet"], indices=[0],
                                     fov_margin=SIZE, progress=False)
    assert summary["n_scored"] == 0 and "vanishes" in table["reason"][0]


def test_arrays_and_dataset_directory_agree_and_are_deterministic(prepared, real_scores):
    summary, table = _score(prepared, prepared["images"][:3])
    again, table_again = _score(prepared, prepared["images"][:3])
    assert summary == again
    np.testing.assert_array_equal(table["vessel_auc"], table_again["vessel_auc"])
    np.testing.assert_allclose(table["vessel_auc"], real_scores[1]["vessel_auc"][:3])
    subset, sub_table = real_vessel_auc(prepared["dir"], prepared["unet"], indices=[4, 1],
                                        progress=False)
    assert list(sub_table["image"].astype(str)) == ["25", "22"] and subset["n_images"] == 2


def test_noise_vessel_channel_scores_near_chance(prepared, real_scores):
    images = prepared["images"].copy()
    rng = np.random.default_rng(0)
    images[:, 3] = rng.uniform(-1, 1, images[:, 3].shape).astype(np.float32)
    summary, table = _score(prepared, images)
    assert summary["n_scored"] == N_IMAGES
    assert abs(summary["vessel_auc_mean"] - 0.5) < 0.06, table
    assert abs(summary["vessel_auc_reverse_mean"] - 0.5) < 0.1, table


@pytest.mark.parametrize("misalign", ["flip", "shift"])
def test_misaligned_vessel_channel_scores_clearly_lower(prepared, real_scores, misalign):
    images = prepared["images"].copy()
    if misalign == "flip":  # the vessel map of the mirror-image eye
        images[:, 3] = images[:, 3, :, ::-1]
    else:
        images[:, 3] = np.roll(images[:, 3], (4, 4), axis=(1, 2))
    summary, table = _score(prepared, images)
    assert summary["vessel_auc_mean"] < real_scores[0]["vessel_auc_mean"] - 0.15, table
    assert summary["vessel_auc_mean"] < 0.8, table


def test_images_that_cannot_be_scored_are_counted_not_averaged(prepared):
    images = prepared["images"][:4].copy()
    images[0, :3] = -1.0  # black photo: no field of view
    images[1, 0, 5, 5] = np.nan
    images[2, 3] = -1.0  # the GAN drew no vessels: the reverse truth has one class
    summary, table = _score(prepared, images, image_ids=["a", "b", "c", "d"])
    assert list(table["image"]) == ["a", "b", "c", "d"]
    assert "no field of view" in table["reason"][0]
    assert "non-finite" in table["reason"][1]
    assert np.isnan(table["vessel_auc"][:2]).all()
    assert np.isnan(table["vessel_auc_reverse"][:3]).all()
    assert table["vessel_auc"][2] == pytest.approx(0.5)  # a constant score ranks nothing
    assert "the GAN's vessel map has no vessel pixel" in table["reason_reverse"][2]
    assert summary["n_scored"] == 2 and summary["n_excluded"] == 2
    assert summary["n_scored_reverse"] == 1 and summary["n_excluded_reverse"] == 3
    assert summary["vessel_auc_mean"] == pytest.approx(table["vessel_auc"][2:].mean())
    all_black = np.full((2, 4, 32, 32), -1.0, np.float32)
    summary, _ = _score(prepared, all_black)
    assert summary["n_scored"] == 0 and summary["vessel_auc_mean"] is None


def test_missing_channel_and_bad_input_raise_clear_errors(prepared):
    images = prepared["images"][:2]
    with pytest.raises(ValueError, match=r"lack channel\(s\) \['vessels'\].*without the vessel"):
        synthetic_vessel_auc(images[:, :3], ["R", "G", "B"], prepared["unet"])
    with pytest.raises(ValueError, match=r"lack channel\(s\) \['G'\]"):
        synthetic_vessel_auc(images, ["R", "green", "B", "vessels"], prepared["unet"])
    with pytest.raises(ValueError, match="lists 3 channels"):
        synthetic_vessel_auc(images, ["R", "G", "B"], prepared["unet"])
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        synthetic_vessel_auc(images[0], prepared["channels"], prepared["unet"])
    with pytest.raises(ValueError, match="threshold"):
        synthetic_vessel_auc(images, prepared["channels"], prepared["unet"], threshold=1.0)
    with pytest.raises(ValueError, match="value_range"):
        synthetic_vessel_auc(images, prepared["channels"], prepared["unet"],
                             dataset_info={**prepared["info"], "value_range": [0, 255]})
    with pytest.raises(ValueError, match="rgb_scaling"):
        synthetic_vessel_auc(images, prepared["channels"], prepared["unet"],
                             dataset_info={**prepared["info"], "rgb_scaling": "x / 255"})


def test_unet_with_other_preprocessing_than_the_dataset_is_refused(prepared, tmp_path):
    with pytest.raises(InputError, match=r"unet\.pt: the U-net was trained with other "
                                         r"preprocessing.*gamma: \(2\.0, 1\.2\)"):
        synthetic_vessel_auc(prepared["images"][:1], prepared["channels"], prepared["unet"],
                             dataset_info={**prepared["info"], "gamma": 2.0})
    (tmp_path / "junk.pt").write_text("junk")
    with pytest.raises(InputError, match="junk.pt"):
        synthetic_vessel_auc(prepared["images"][:1], prepared["channels"], tmp_path / "junk.pt")
