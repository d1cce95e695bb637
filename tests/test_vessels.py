"""Tests of the vessel U-net: architecture, patch inference, AUC, training, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from medgan.data.phantoms.fundus import make_fundus_phantoms
from medgan.data.preprocess.fundus_image import load_segmentation_set
from medgan.data.readers.fundus import discover_fundus_images
from medgan.data.vessels import (
    crossval_vessel_auc,
    load_vessel_unet,
    save_vessel_unet,
    segment_vessels,
    train_vessel_unet,
    train_vessel_unet_on_folder,
    vessel_auc,
    vessel_dice,
)
from medgan.errors import InputError
from medgan.models.unet import UNET_DEFAULTS, build_unet, resolve_unet_config

# Tests train on 24 px patches (a quarter of the 48 px pixels) to stay fast; the code path is
# the same as for 48.
FAST = {"patch_size": 24, "batch_size": 32, "threads": 1, "progress": False}


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    root = tmp_path_factory.mktemp("vessels") / "phantoms"
    make_fundus_phantoms(root, n_images=6, size=96, seed=0)
    return root


@pytest.fixture(scope="module")
def segmentation_set(phantoms):
    return load_segmentation_set(discover_fundus_images(phantoms), resolution=None)


class Identity(nn.Module):
    def forward(self, x):
        return x


# --- U-net ---------------------------------------------------------------------------


@pytest.mark.parametrize("config", [{}, {"depth": 3, "width": 4, "dropout": 0.2},
                                    {"depth": 0, "batch_norm": False}])
def test_unet_maps_patches_to_logits_of_the_same_size(config):
    model = build_unet(config)
    out = model(torch.zeros(2, 1, 48, 48))
    assert out.shape == (2, 1, 48, 48)
    assert model.config == {**UNET_DEFAULTS, **config, "dropout": float(config.get("dropout", 0))}


def test_unet_config_errors():
    with pytest.raises(ValueError, match="unknown U-net config key"):
        resolve_unet_config({"widht": 8})
    with pytest.raises(ValueError, match="depth"):
        resolve_unet_config({"depth": -1})
    with pytest.raises(ValueError, match="not divisible by 8"):
        build_unet({"depth": 3})(torch.zeros(1, 1, 20, 20))


# --- patch inference -----------------------------------------------------------------


@pytest.mark.parametrize("shape", [(101, 77), (48, 48), (30, 20), (88, 128)])
def test_segment_vessels_overlap_average_reconstructs_an_identity_model(shape):
    image = np.random.default_rng(0).random(shape, dtype=np.float32)
    out = segment_vessels(Identity(), image, None, patch_size=48, overlap=8, batch_size=7,
                          activation="none")
    assert out.shape == shape and out.dtype == np.float32
    np.testing.assert_array_equal(out, image)


def test_segment_vessels_averages_overlapping_patches_and_masks_the_fov():
    class PatchIndex(nn.Module):  # each patch predicts its own running index
        def __init__(self):
            super().__init__()
            self.seen = 0

        def forward(self, x):
            idx = torch.arange(self.seen, self.seen + len(x), dtype=x.dtype)
            self.seen += len(x)
            return idx[:, None, None, None].expand_as(x).clone()

    fov = np.ones((88, 88), bool)
    fov[:, :4] = False
    out = segment_vessels(PatchIndex(), np.zeros((88, 88), np.float32), fov, patch_size=48,
                          overlap=8, activation="none")
    # stride 40: patches start at 0 and 40 in both axes -> indices 0 (0,0) 1 (0,40) 2 (40,0)
    # 3 (40,40); the 8 px band where all four overlap averages them
    assert out[10, 10] == 0 and out[10, 60] == 1 and out[60, 10] == 2 and out[60, 60] == 3
    assert out[44, 44] == pytest.approx(1.5)
    assert out[10, 44] == pytest.approx(0.5)
    assert np.all(out[:, :4] == 0)


def test_segment_vessels_sigmoid_of_logits():
    out = segment_vessels(Identity(), np.zeros((50, 50), np.float32), patch_size=24, overlap=4)
    np.testing.assert_allclose(out, 0.5)


# --- AUC -----------------------------------------------------------------------------


def test_vessel_auc():
    rng = np.random.default_rng(0)
    truth = rng.random((40, 40)) < 0.2
    fov = np.zeros((40, 40), bool)
    fov[5:35, 5:35] = True
    prob = truth.astype(np.float32)
    prob[~fov] = 1 - prob[~fov]  # wrong outside the FOV, which must not count
    assert vessel_auc(prob, truth, fov) == 1.0
    assert vessel_auc(1 - prob, truth, fov) == 0.0
    assert 0.4 < vessel_auc(rng.random((40, 40)), truth, fov) < 0.6
    with pytest.raises(ValueError, match="only one class"):
        vessel_auc(prob, np.zeros((40, 40), bool), fov)


def test_vessel_dice_sees_a_blob_that_the_auc_ranks_as_a_vessel_map():
    # issue 16: a U-net map that is a bright blob with brighter vessels inside it ranks every
    # vessel pixel above the background (AUC 1) but is no vessel map; the Dice at p = 0.5 says so
    truth = np.zeros((40, 40), bool)
    truth[20, 5:35] = truth[5:35, 20] = True
    fov = np.ones((40, 40), bool)
    blob = np.full((40, 40), 0.2, np.float32)
    blob[8:32, 8:32] = 0.55
    blob[truth] = 0.9
    assert vessel_auc(blob, truth, fov) > 0.99
    assert vessel_dice(blob, truth, fov) < 0.3
    assert vessel_dice(truth * 0.9, truth, fov) == 1.0
    assert vessel_dice(np.zeros((40, 40)), np.zeros((40, 40), bool)) == 1.0
    assert vessel_dice(np.zeros((40, 40)), truth) == 0.0


# --- training ------------------------------------------------------------------------


def test_short_training_on_phantoms_beats_the_intensity_baseline(segmentation_set):
    images, vessels, fovs = segmentation_set
    model = train_vessel_unet(images[:4], vessels[:4], fovs[:4], n_patches=2000, lr=3e-3,
                              unet={"width": 8}, seed=0, **FAST)
    for i in (4, 5):
        prob = segment_vessels(model, images[i], fovs[i], patch_size=24, overlap=4)
        auc = vessel_auc(prob, vessels[i], fovs[i])
        baseline = vessel_auc(1 - images[i], vessels[i], fovs[i])  # dark = vessel
        assert auc > 0.9 and auc > baseline + 0.05, (auc, baseline)
        assert vessel_dice(prob, vessels[i], fovs[i]) > 0.6


def test_training_is_deterministic(segmentation_set):
    images, vessels, fovs = segmentation_set
    kw = {"n_patches": 64, "unet": {"width": 4}, "seed": 3, **FAST}
    a = train_vessel_unet(images, vessels, fovs, **kw).state_dict()
    b = train_vessel_unet(images, vessels, fovs, **kw).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="not divisible"):
        train_vessel_unet(images, vessels, fovs, patch_size=20, unet={"depth": 3})


def test_checkpoint_roundtrip_and_folder_training(phantoms, segmentation_set, tmp_path):
    path = tmp_path / "unet.pt"
    log = train_vessel_unet_on_folder(phantoms, path, resolution=64, n_patches=64,
                                      unet={"width": 4, "depth": 1}, seed=0, **FAST)
    assert log["preprocessing"]["resolution"] == 64
    assert log["training"]["n_images"] == 6 and len(log["training"]["history"]) == 1
    model, ckpt = load_vessel_unet(path)
    assert ckpt["kind"] == "vessel_unet" and ckpt["patch_size"] == 24 and ckpt["step"] == 2
    assert model.config["width"] == 4 and not model.training
    image = segmentation_set[0][0]
    again, _ = load_vessel_unet(path)
    np.testing.assert_array_equal(segment_vessels(model, image, patch_size=24),
                                  segment_vessels(again, image, patch_size=24))

    save_vessel_unet(tmp_path / "bad.pt", model, preprocessing={})
    ckpt = torch.load(tmp_path / "bad.pt", weights_only=True)
    ckpt["config"] = {**ckpt["config"], "width": 8}
    torch.save(ckpt, tmp_path / "bad.pt")
    with pytest.raises(InputError, match="bad.pt: U-net weights do not fit its config"):
        load_vessel_unet(tmp_path / "bad.pt")
    (tmp_path / "junk.pt").write_text("junk")
    with pytest.raises(InputError, match="junk.pt: not a readable torch checkpoint"):
        load_vessel_unet(tmp_path / "junk.pt")


def test_crossval_table(phantoms):
    table = crossval_vessel_auc(phantoms, folds=3, resolution=None, n_patches=64,
                                unet={"width": 4, "depth": 1}, overlap=4, **FAST)
    assert list(table.columns) == ["fold", "image", "auc", "train_seconds"]
    assert sorted(table["image"]) == ["21", "22", "23", "24", "25", "26"]
    assert sorted(table["fold"].unique()) == [0, 1, 2]
    assert table["auc"].between(0, 1).all()
    with pytest.raises(ValueError, match="folds"):
        crossval_vessel_auc(phantoms, folds=7)
