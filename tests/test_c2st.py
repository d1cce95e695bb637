"""Classifier two-sample test: balanced, group-aware halves, CNN or logistic regression."""

import numpy as np
import pytest

from medgan.analysis.metrics.c2st import (
    classifier_two_sample_test,
    cross_validation_splits,
    split_two_samples,
)

FAST = {"epochs": 5, "batch_size": 16, "width": 8, "lr": 3e-3}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _structured(n: int, seed: int, resolution: int = 16) -> np.ndarray:
    """Smooth random blobs: a Gaussian bump at a random place with a random width."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:resolution, :resolution] / resolution
    c = rng.uniform(0.3, 0.7, size=(n, 2, 1, 1))
    s = rng.uniform(0.1, 0.25, size=(n, 1, 1))
    img = np.exp(-((yy - c[:, 0]) ** 2 + (xx - c[:, 1]) ** 2) / (2 * s ** 2))
    return img[:, None].astype(np.float32)


def _check_counts(out):
    total = sum(out[k] for k in ("real_as_real", "real_as_synthetic", "synthetic_as_real",
                                 "synthetic_as_synthetic"))
    assert total == out["n_test"]
    correct = out["real_as_real"] + out["synthetic_as_synthetic"]
    assert out["accuracy"] == pytest.approx(correct / out["n_test"])
    assert out["real_as_real"] + out["real_as_synthetic"] == out["n_test"] // 2


def test_same_distribution_is_near_chance():
    out = classifier_two_sample_test(_structured(160, 0), _structured(160, 1), seed=0, **FAST)
    _check_counts(out)
    assert abs(out["accuracy"] - 0.5) < 0.15 and out["p_value"] > 0.01
    assert out["mode"] == "pixels" and out["n_train"] == 160 and out["n_test"] == 160


def test_noise_is_told_apart():
    noise = np.random.default_rng(2).normal(size=(160, 1, 16, 16)).astype(np.float32)
    out = classifier_two_sample_test(_structured(200, 0), noise, seed=0, **FAST)
    _check_counts(out)
    assert out["accuracy"] > 0.95 and out["p_value"] < 1e-6
    assert out["n_test"] == 160  # balanced: the larger real set was subsampled to 160


def test_deterministic_with_seed():
    real, fake = _structured(40, 0), _structured(40, 3) * 1.1
    a = classifier_two_sample_test(real, fake, seed=4, **FAST)
    assert a == classifier_two_sample_test(real, fake, seed=4, **FAST)


def test_group_aware_halves_never_share_a_group():
    groups = np.repeat(np.arange(13), 7)[:90]
    split = split_two_samples(90, 100, real_groups=groups, seed=3)
    train, test = set(groups[split["real_train"]]), set(groups[split["real_test"]])
    assert train and test and not train & test
    for part in ("train", "test"):
        assert len(split[f"real_{part}"]) == len(split[f"synthetic_{part}"])
    assert not set(split["synthetic_train"]) & set(split["synthetic_test"])
    with pytest.raises(ValueError, match="2 distinct"):
        split_two_samples(10, 10, real_groups=np.zeros(10), seed=0)
    with pytest.raises(ValueError, match="one entry per image"):
        split_two_samples(10, 10, real_groups=np.zeros(9), seed=0)


def test_groups_and_channels_through_the_test():
    rng = np.random.default_rng(5)
    real = rng.normal(size=(48, 3, 16, 16)).astype(np.float32)
    fake = rng.normal(size=(48, 3, 16, 16)).astype(np.float32)
    out = classifier_two_sample_test(real, fake, real_groups=np.arange(48) // 6, seed=0, **FAST)
    _check_counts(out)


def test_features_mode_uses_logistic_regression():
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(200, 8)), rng.normal(size=(200, 8))
    same = classifier_two_sample_test(x, y, seed=0)
    shifted = classifier_two_sample_test(x, y + 2.0, seed=0)
    assert same["mode"] == "features" and same["p_value"] > 0.01
    assert shifted["accuracy"] > 0.95 and shifted["p_value"] < 1e-6


def test_bad_input_raises():
    with pytest.raises(ValueError, match="differ in shape"):
        classifier_two_sample_test(_structured(8, 0), _structured(8, 0, resolution=32))
    with pytest.raises(ValueError, match="at least 4"):
        classifier_two_sample_test(_structured(3, 0), _structured(8, 0))
    with pytest.raises(ValueError, match="numpy array"):
        classifier_two_sample_test(np.zeros((8, 16, 16)), np.zeros((8, 16, 16)))


def test_max_resolution_pools_large_images():
    real, fake = _structured(40, 0, resolution=32), _structured(40, 1, resolution=32)
    out = classifier_two_sample_test(real, fake, seed=0, max_resolution=16, **FAST)
    _check_counts(out)
    with pytest.raises(ValueError, match="max_resolution"):
        classifier_two_sample_test(real, fake, seed=0, max_resolution=4, **FAST)


def test_cross_validation_tests_every_kept_image_once_and_gives_an_interval():
    groups = np.repeat(np.arange(20), 6)
    splits = cross_validation_splits(120, 300, folds=3, real_groups=groups, seed=1)
    tested = np.concatenate([s["real_test"] for s in splits])
    assert len(tested) == len(set(tested.tolist())) and len(tested) > 100
    for s in splits:
        assert not set(groups[s["real_train"]]) & set(groups[s["real_test"]])
        assert len(s["real_test"]) == len(s["synthetic_test"])
    real, fake = _structured(120, 0), _structured(300, 1)
    out = classifier_two_sample_test(real, fake, real_groups=groups, seed=0, folds=2, **FAST)
    _check_counts(out)
    assert out["n_test"] == 240 and out["folds"] == 2
    assert out["accuracy_lo"] < out["accuracy"] < out["accuracy_hi"]
    assert out["accuracy_lo"] < 0.5 < out["accuracy_hi"]  # same distribution: chance inside
    with pytest.raises(ValueError, match="folds"):
        cross_validation_splits(10, 10, folds=1)


def test_a_collapsed_set_is_distinguishable_above_chance():
    # few real images, many synthetic ones that are near-copies of one image (mode collapse)
    real = _structured(60, 0)
    rng = np.random.default_rng(7)
    collapsed = (np.repeat(_structured(1, 9), 400, axis=0)
                 + 0.01 * rng.normal(size=(400, 1, 16, 16))).astype(np.float32)
    out = classifier_two_sample_test(real, collapsed, seed=0, folds=2, **FAST)
    assert out["accuracy_lo"] > 0.5 and out["p_value"] < 1e-3, out
