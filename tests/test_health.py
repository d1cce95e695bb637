"""Health verdicts: the rules on hand-made metric rows (intervals, thresholds, losses) and the
controls whose answer is known, scored by the metric suite on generated images: a constant
generator is collapsed, noise is not learned, copies of training images are memorised and
new real images are learned."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from medgan.analysis.health import (
    DEFAULT_THRESHOLDS,
    VERDICTS,
    HealthVerdict,
    format_health,
    judge_health,
    loss_divergence,
    study_health,
)
from medgan.analysis.metrics import MetricInputs, compute_metrics
from medgan.analysis.metrics.controls import control_sets, structured_images
from medgan.analysis.metrics.featurenet import extract_features, train_feature_net
from medgan.errors import InputError

BASELINE = {"msssim_mean": 0.6, "memo_share_closer": 0.01, "domain_precision": 0.8,
            "rho": 0.9, "domain_recall": 0.8, "domain_coverage": 0.9}
GOOD = {"msssim_mean": 0.62, "memo_share_closer": 0.02, "domain_precision": 0.75,
        "rho": 0.88, "domain_recall": 0.7, "domain_coverage": 0.85, "c2st_accuracy": 0.55,
        "c2st_accuracy_lo": 0.45}


def test_a_row_like_the_baseline_is_learned():
    v = judge_health(GOOD, BASELINE)
    assert isinstance(v, HealthVerdict) and v.verdict == "learned"
    assert "does not tell" in v.reason
    assert v.numbers["msssim_mean_threshold"] == pytest.approx(0.6 + 0.5 * 0.4)
    assert {c.outcome for c in v.checks} == {"pass"} and len(v.checks) == 6


@pytest.mark.parametrize(("change", "verdict", "word"), [
    ({"msssim_mean": 0.95}, "collapsed", "MS-SSIM"),
    ({"domain_recall": 0.1}, "collapsed", "recall"),
    ({"memo_share_closer": 0.9}, "memorised", "closer"),
    ({"domain_precision": 0.05}, "not_learned", "precision"),
    ({"rho": 0.2}, "not_learned", "rho"),
])
def test_each_rule_gives_its_verdict(change, verdict, word):
    v = judge_health({**GOOD, **change}, BASELINE)
    assert v.verdict == verdict and word in v.reason, v


def test_diversity_is_judged_before_fidelity():
    # a constant generator of an unrealistic image: collapsed, not not_learned
    v = judge_health({**GOOD, "msssim_mean": 1.0, "domain_precision": 0.0}, BASELINE)
    assert v.verdict == "collapsed"


def test_an_interval_spanning_the_threshold_is_uncertain():
    row = {**GOOD, "domain_recall": 0.15, "domain_recall_lo": 0.05, "domain_recall_hi": 0.4}
    v = judge_health(row, BASELINE)
    assert v.verdict == "uncertain" and "domain_recall" in v.reason and "spans" in v.reason
    # the same point value with a narrow interval is a verdict
    narrow = {**row, "domain_recall_lo": 0.12, "domain_recall_hi": 0.18}
    assert judge_health(narrow, BASELINE).verdict == "collapsed"
    # a definite failure elsewhere still wins over an uncertain check
    assert judge_health({**row, "domain_precision": 0.01}, BASELINE).verdict == "not_learned"
    # an interval of a passing value that reaches over the threshold is uncertain too
    wide = {**GOOD, "msssim_mean_lo": 0.5, "msssim_mean_hi": 0.85}
    assert judge_health(wide, BASELINE).verdict == "uncertain"


def test_thresholds_are_relative_to_the_baseline_and_configurable():
    row = {**GOOD, "domain_precision": 0.3}
    assert judge_health(row, BASELINE).verdict == "learned"  # 0.3 >= 0.25 x 0.8
    strict = {"not_learned_precision_fraction": 0.5}
    assert judge_health(row, BASELINE, thresholds=strict).verdict == "not_learned"
    assert judge_health(row, {**BASELINE, "domain_precision": 0.2}).verdict == "learned"
    with pytest.raises(ValueError, match="unknown health threshold"):
        judge_health(row, BASELINE, thresholds={"precision": 0.5})
    assert set(DEFAULT_THRESHOLDS) >= {"collapsed_msssim_gap", "loss_explode_factor"}


def test_missing_metrics_are_skipped_and_none_is_uncertain():
    v = judge_health({"msssim_mean": 0.6, "swd_mean": 3.0}, {"msssim_mean": 0.6})
    assert v.verdict == "learned" and len(v.checks) == 1
    v = judge_health({"swd_mean": 3.0}, {"swd_mean": 1.0})
    assert v.verdict == "uncertain" and "no metric" in v.reason
    assert judge_health({**GOOD, "rho": float("nan")}, BASELINE).verdict == "learned"


def test_losses_that_turn_non_finite_or_explode_are_diverged():
    steady = [{"step": i, "d_loss": 1.0 + 0.1 * math.sin(i), "g_loss": 0.7} for i in range(40)]
    assert loss_divergence(steady, factor=100, floor=1) is None
    assert judge_health(GOOD, BASELINE, losses=steady).verdict == "learned"
    nan = steady[:10] + [{"step": 10, "d_loss": float("nan"), "g_loss": 0.7}]
    v = judge_health(GOOD, BASELINE, losses=nan)
    assert v.verdict == "diverged" and "d_loss" in v.reason and "step 10" in v.reason
    boom = steady[:20] + [{"step": i, "d_loss": 1e5, "g_loss": 0.7} for i in range(20, 40)]
    v = judge_health(GOOD, BASELINE, losses=boom)
    assert v.verdict == "diverged" and "grew" in v.reason
    # WGAN-like growth within the limit is not a divergence
    grow = [{"step": i, "d_loss": -0.5 * i} for i in range(40)]
    assert loss_divergence(grow, factor=100, floor=1) is None


def test_study_health_covers_models_without_metrics(tmp_path):
    stats = tmp_path / "stats.jsonl"
    stats.write_text('{"step": 1, "d_loss": 1.0}\n{"step": 2, "d_loss": NaN}\n')
    table = pd.DataFrame([{"model": "a", "source": "real_heldout", **BASELINE},
                          {"model": "a", "source": "synthetic", **GOOD}])
    out = study_health([table], {"a": None, "b": stats, "c": tmp_path / "absent.jsonl"})
    got = dict(zip(out["model"], out["health"], strict=True))
    assert got == {"a": "learned", "b": "diverged", "c": "uncertain"}
    assert set(out["health"]) <= set(VERDICTS)
    text = format_health({"s1": out, "s2": out})
    assert text.count("\na ") == 1 and "diverged" in text and len(text.splitlines()) == 5



def test_a_model_without_metrics_is_judged_by_its_last_snapshot(tmp_path):
    stats = tmp_path / "stats.jsonl"
    stats.write_text('{"step": 1, "d_loss": 1.0}\n{"step": 2, "d_loss": 0.9}\n')
    snaps = tmp_path / "snapshots.jsonl"
    rows = [{"step": 0, "source": "real_heldout", "msssim_mean": 0.3, "rho": 0.9},
            {"step": 100, "source": "synthetic", "msssim_mean": 0.4, "rho": 0.8,
             "health": "learned", "health_reason": "every check passed (msssim_mean, rho)"},
            {"step": 200, "source": "synthetic", "msssim_mean": 0.99, "rho": 0.8,
             "n_images": 64, "n_reference": 256, "health": "collapsed",
             "health_reason": "synthetic pairs are far more alike than real pairs"}]
    snaps.write_text("".join(json.dumps(r) + "\n" for r in rows))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    out = study_health([], {"m": stats, "n": stats}, snapshot_files={"m": snaps, "n": empty})
    got = out.set_index("model")
    assert got.loc["m", "health"] == "collapsed"
    assert got.loc["m", "health_reason"].startswith(
        "last training snapshot (step 200, 64 images against 256 real): synthetic pairs")
    assert got.loc["m", "msssim_mean"] == pytest.approx(0.99)
    assert got.loc["n", "health"] == "uncertain" and "no training snapshot" in \
        got.loc["n", "health_reason"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    with pytest.raises(InputError, match="bad.jsonl"):
        study_health([], {"m": stats}, snapshot_files={"m": bad})


# --- controls: the metric suite on generated images ---------------------------------------------

SETTINGS = {"n_components": 16, "msssim_pairs": 200, "kid_subsets": 5, "kid_subset_size": 100,
            "memorisation_quantile": 0.05, "bootstrap": 200}
NAMES = ["delplace", "msssim", "domain", "memorisation"]


@pytest.fixture(scope="module")
def control_verdicts(one_torch_thread):
    train = structured_images(300, resolution=32, seed=1)
    heldout = structured_images(150, resolution=32, seed=2)
    fresh = structured_images(150, resolution=32, seed=4)
    sets = control_sets(heldout, train=train, seed=3)
    candidates = {"baseline": heldout, "new_real": fresh, "noise": sets["noise"],
                  "memorised": sets["memorised"],
                  "constant": np.repeat(train.mean(axis=0, keepdims=True), 150, axis=0)}
    net, info = train_feature_net(train, ["T1"], steps=60, batch_size=64, width=8,
                                  feature_dim=32, seed=0, progress=False)
    ref_features = extract_features(net, info, train, ["T1"])
    rows = {}
    for name, candidate in candidates.items():
        inputs = MetricInputs(
            reference=train, candidate=candidate, heldout=heldout, channel_names=["T1"],
            data_range=2.0, settings=SETTINGS, seed=0, reference_features=ref_features,
            candidate_features=extract_features(net, info, candidate, ["T1"]))
        rows[name] = compute_metrics(inputs, NAMES)
    return {name: judge_health(row, rows["baseline"]) for name, row in rows.items()}, rows


@pytest.mark.parametrize(("control", "verdict"), [
    ("constant", "collapsed"), ("noise", "not_learned"), ("memorised", "memorised"),
    ("new_real", "learned")])
def test_controls_get_their_verdict(control_verdicts, control, verdict):
    verdicts, rows = control_verdicts
    assert verdicts[control].verdict == verdict, (verdicts[control], rows[control])


def test_metric_rows_carry_intervals_and_their_n(control_verdicts):
    _, rows = control_verdicts
    row = rows["new_real"]
    for key in ("domain_precision", "domain_recall", "domain_coverage", "domain_density",
                "rho", "msssim_mean", "memo_share_closer"):
        assert row[f"{key}_lo"] <= row[key] <= row[f"{key}_hi"], key
        assert row[f"{key}_hi"] > row[f"{key}_lo"], key
    assert row["domain_n_real"] == 300 and row["domain_n_fake"] == 150
    assert row["msssim_n_pairs"] == 200 and row["delplace_n"] == 150
