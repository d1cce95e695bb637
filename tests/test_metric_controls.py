"""The metric suite on control sets whose answer is known (issue: proof that the metrics measure
something): real-vs-real scores best and its C2ST is near chance, noise scores worst and its
C2ST near 1, blurred and mode-collapsed sets land in between, and collapse is caught by Delplace's
sigma and delta and by MS-SSIM; a set of near-copies of training images is flagged by the
memorisation check."""

import numpy as np
import pytest

from medgan.analysis.metrics import METRICS, MetricInputs, compute_metrics
from medgan.analysis.metrics.controls import control_sets, structured_images
from medgan.analysis.metrics.featurenet import extract_features, train_feature_net

SETTINGS = {"n_components": 16, "swd_patches_per_image": 32, "swd_directions": 128,
            "swd_repeats": 2, "msssim_pairs": 200, "kid_subsets": 10, "kid_subset_size": 100,
            "memorisation_quantile": 0.05}
NAMES = ["delplace", "swd", "msssim", "domain", "c2st", "memorisation"]


@pytest.fixture(scope="module")
def scores():
    train = structured_images(400, resolution=32, seed=1)
    heldout = structured_images(200, resolution=32, seed=2)
    sets = control_sets(heldout, train=train, seed=3)
    net, info = train_feature_net(train, ["T1"], steps=60, batch_size=64, width=8,
                                  feature_dim=32, seed=0, progress=False)
    ref_features = extract_features(net, info, train, ["T1"])
    out = {}
    for name, candidate in sets.items():
        inputs = MetricInputs(
            reference=train, candidate=candidate, heldout=heldout, channel_names=["T1"],
            data_range=2.0, settings=SETTINGS, seed=0, reference_features=ref_features,
            candidate_features=extract_features(net, info, candidate, ["T1"]))
        out[name] = compute_metrics(inputs, NAMES)
    return out


def test_every_metric_reports_finite_numbers(scores):
    for name, values in scores.items():
        bad = {k: v for k, v in values.items() if not np.isfinite(v)}
        assert not bad, f"{name}: non-finite {bad}"
    assert {"rho", "sigma", "delta", "swd_mean", "msssim_mean", "domain_fid", "domain_kid_mean",
            "domain_precision", "domain_recall", "domain_density", "domain_coverage",
            "c2st_accuracy", "c2st_p_value", "memo_share_closer"} <= set(scores["real"])


@pytest.mark.parametrize("metric", ["domain_fid", "domain_kid_mean", "swd_mean"])
def test_distances_rank_real_blurred_noise(scores, metric):
    s = {k: v[metric] for k, v in scores.items()}
    assert s["real"] < s["blurred"] < s["noise"], s
    assert s["real"] < s["collapsed"], s


def test_c2st_is_chance_for_real_and_certain_for_noise(scores):
    real, noise = scores["real"], scores["noise"]
    assert abs(real["c2st_accuracy"] - 0.5) < 0.12 and real["c2st_p_value"] > 1e-3
    assert noise["c2st_accuracy"] > 0.95 and noise["c2st_p_value"] < 1e-6
    for name in ("blurred", "collapsed"):
        assert scores[name]["c2st_accuracy"] > real["c2st_accuracy"] + 0.15, name
    counts = ["c2st_real_as_real", "c2st_real_as_synthetic", "c2st_synthetic_as_real",
              "c2st_synthetic_as_synthetic"]
    for values in scores.values():
        correct = values["c2st_real_as_real"] + values["c2st_synthetic_as_synthetic"]
        total = sum(values[c] for c in counts)
        assert correct / total == pytest.approx(values["c2st_accuracy"])


def test_collapse_is_caught_by_sigma_delta_and_msssim(scores):
    real, collapsed, blurred = scores["real"], scores["collapsed"], scores["blurred"]
    assert collapsed["sigma"] < 1e-6 * real["sigma"] and collapsed["delta"] == 0
    assert real["delta"] >= 3
    assert collapsed["msssim_mean"] > 0.999 > real["msssim_mean"]
    assert real["sigma"] > blurred["sigma"] > collapsed["sigma"]
    assert collapsed["domain_recall"] < 0.2 < real["domain_recall"]
    assert collapsed["domain_coverage"] < 0.2 < real["domain_coverage"]


def test_realism_and_precision_reject_noise(scores):
    real, noise = scores["real"], scores["noise"]
    assert noise["rho"] < real["rho"] - 0.2  # noise lies mostly outside the real PCA subspace
    assert real["domain_precision"] > 0.6 and noise["domain_precision"] < 0.05
    assert noise["domain_coverage"] < 0.05 < real["domain_coverage"]


def test_memorisation_flags_copies_of_training_images(scores):
    assert scores["memorised"]["memo_share_closer"] > 0.9
    assert scores["real"]["memo_share_closer"] <= 0.15
    assert scores["noise"]["memo_share_closer"] == 0


def test_registry_rejects_unknown_metric():
    with pytest.raises(ValueError, match="unknown metric"):
        compute_metrics(MetricInputs(reference=np.zeros((2, 1, 8, 8), np.float32),
                                     candidate=np.zeros((2, 1, 8, 8), np.float32),
                                     heldout=np.zeros((2, 1, 8, 8), np.float32),
                                     channel_names=["T1"], data_range=1.0), ["fid2"])
    assert set(NAMES) < set(METRICS)
