"""The domain feature network: contrastive training, checkpoint, per-channel features."""

import numpy as np
import pytest
import torch

from medgan.analysis.metrics.featurenet import (
    augment,
    extract_features,
    load_feature_net,
    save_feature_net,
    train_feature_net,
)
from medgan.errors import InputError

TINY = {"steps": 40, "batch_size": 32, "width": 8, "feature_dim": 16, "progress": False}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _toy_images(n: int, *, resolution: int = 16, seed: int = 0) -> np.ndarray:
    """Structured images: a disk, a square or stripes at a random place, two channels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:resolution, :resolution] / resolution
    out = np.zeros((n, 2, resolution, resolution), np.float32)
    for i in range(n):
        cy, cx = rng.uniform(0.3, 0.7, size=2)
        kind = i % 3
        if kind == 0:
            img = ((yy - cy) ** 2 + (xx - cx) ** 2 < 0.05).astype(float)
        elif kind == 1:
            img = ((abs(yy - cy) < 0.2) & (abs(xx - cx) < 0.2)).astype(float)
        else:
            img = 0.5 + 0.5 * np.sin(2 * np.pi * (4 * xx + cx))
        out[i, 0] = img + 0.05 * rng.normal(size=img.shape)
        out[i, 1] = 2.0 * img[::-1] + 1.0
    return out


@pytest.fixture(scope="module")
def trained():
    images = _toy_images(60)
    model, info = train_feature_net(images, ["T1", "T2"], seed=0, **TINY)
    return images, model, info


def test_info_records_channel_stats_config_and_losses(trained):
    images, _, info = trained
    assert set(info["channel_stats"]) == {"T1", "T2"}
    assert info["channel_stats"]["T2"]["mean"] == pytest.approx(images[:, 1].mean(), rel=1e-5)
    assert info["config"]["width"] == 8 and info["config"]["resolution"] == 16
    assert len(info["loss_history"]) == TINY["steps"] and info["seconds"] > 0
    assert np.mean(info["loss_history"][-10:]) < np.mean(info["loss_history"][:5])


def test_features_concatenate_channels_in_the_given_order(trained):
    images, model, info = trained
    both = extract_features(model, info, images, ["T1", "T2"], batch_size=7)
    assert both.shape == (60, 32) and both.dtype == np.float64
    swapped = extract_features(model, info, images[:, ::-1].copy(), ["T2", "T1"])
    np.testing.assert_allclose(swapped[:, :16], both[:, 16:], rtol=1e-5, atol=1e-6)
    t2_only = extract_features(model, info, images[:, 1:], ["T2"])
    np.testing.assert_allclose(t2_only, both[:, 16:], rtol=1e-5, atol=1e-6)


def test_checkpoint_round_trip_gives_identical_features(trained, tmp_path):
    images, model, info = trained
    path = tmp_path / "featurenet.pt"
    save_feature_net(path, model, info)
    loaded, loaded_info = load_feature_net(path)
    assert loaded_info["channel_stats"] == info["channel_stats"]
    np.testing.assert_array_equal(extract_features(loaded, loaded_info, images, ["T1", "T2"]),
                                  extract_features(model, info, images, ["T1", "T2"]))


def test_deterministic_with_seed():
    images = _toy_images(12)
    kw = {**TINY, "steps": 3}
    a, ia = train_feature_net(images, ["T1", "T2"], seed=1, **kw)
    b, ib = train_feature_net(images, ["T1", "T2"], seed=1, **kw)
    c, ic = train_feature_net(images, ["T1", "T2"], seed=2, **kw)
    assert ia["loss_history"] == ib["loss_history"] != ic["loss_history"]
    np.testing.assert_array_equal(extract_features(a, ia, images[:, :1], ["T1"]),
                                  extract_features(b, ib, images[:, :1], ["T1"]))


def test_two_augmentations_of_one_image_are_closer_than_two_images(trained):
    images, model, info = trained
    stats = info["channel_stats"]["T1"]
    x = torch.from_numpy((images[:, :1] - stats["mean"]) / stats["std"]).float()
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        f1, f2 = model(augment(x, g)), model(augment(x, g))
    same = (f1 - f2).norm(dim=1).mean()
    other = (f1 - f2.roll(1, dims=0)).norm(dim=1).mean()
    assert same < 0.4 * other  # an untrained net gives ~0.65 here, 40 steps ~0.23


def test_unknown_channel_and_wrong_resolution_raise(trained):
    images, model, info = trained
    with pytest.raises(ValueError, match="FLAIR"):
        extract_features(model, info, images, ["T1", "FLAIR"])
    with pytest.raises(ValueError, match="16 px"):
        extract_features(model, info, np.zeros((2, 1, 32, 32), np.float32), ["T1"])
    with pytest.raises(ValueError, match="channel name"):
        extract_features(model, info, images, ["T1"])


def test_bad_training_input_raises():
    with pytest.raises(ValueError, match="power-of-two"):
        train_feature_net(np.zeros((4, 1, 24, 24), np.float32), ["T1"], **TINY)
    with pytest.raises(ValueError, match="NaN"):
        train_feature_net(np.full((4, 1, 16, 16), np.nan, np.float32), ["T1"], **TINY)


def test_wrong_kind_or_corrupt_file_raises_input_error(tmp_path):
    wrong = tmp_path / "generator.pt"
    torch.save({"kind": "something else", "state_dict": {}, "info": {}}, wrong)
    with pytest.raises(InputError, match="generator.pt.*not a feature-network"):
        load_feature_net(wrong)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a torch file")
    with pytest.raises(InputError, match="corrupt.pt"):
        load_feature_net(corrupt)
    with pytest.raises(InputError, match="missing.pt"):
        load_feature_net(tmp_path / "missing.pt")


def test_max_resolution_pools_in_training_and_extraction():
    images = _toy_images(12, resolution=32)
    model, info = train_feature_net(images, ["T1", "T2"], seed=0, max_resolution=16,
                                    **{**TINY, "steps": 2})
    assert model.resolution == 16 and info["config"]["input_resolution"] == 32
    pooled = images.reshape(12, 2, 16, 2, 16, 2).mean(axis=(3, 5))
    assert info["channel_stats"]["T1"]["mean"] == pytest.approx(pooled[:, 0].mean(), rel=1e-5)
    feats = extract_features(model, info, images, ["T1", "T2"])
    stats = info["channel_stats"]["T1"]
    with torch.no_grad():
        direct = model(torch.from_numpy((pooled[:, :1] - stats["mean"]) / stats["std"]).float())
    np.testing.assert_allclose(feats[:, :16], direct.numpy(), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="32 px"):
        extract_features(model, info, pooled.astype(np.float32), ["T1", "T2"])
    with pytest.raises(ValueError, match="minimum of 16"):
        train_feature_net(images, ["T1", "T2"], max_resolution=8, **TINY)
