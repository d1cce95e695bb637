"""Membership-inference audit (medgan.analysis.privacy): controls with known answers, the
scoring, the split-bias control, files in and out, the study table's privacy columns."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from medgan.analysis.privacy.audit import AuditData, membership_sets, run_audit
from medgan.analysis.privacy.columns import privacy_columns
from medgan.analysis.privacy.roc import score_attack, tpr_at_fpr, verdict, weighted_auc

ATTACKS = ["gan_leaks", "gan_leaks_calibrated", "domias"]


def _patients(rng, n, k, prefix, size=16):
    """``n`` patients of ``k`` similar images each (a patient pattern plus noise)."""
    base = rng.normal(size=(n, 1, 1, size, size))
    images = base + 0.3 * rng.normal(size=(n, k, 1, size, size))
    groups = np.repeat([f"{prefix}{i:03d}" for i in range(n)], k)
    return images.reshape(n * k, 1, size, size).astype(np.float32), groups


@pytest.fixture(scope="module")
def population():
    rng = np.random.default_rng(0)
    train, train_groups = _patients(rng, 40, 5, "t")
    heldout, heldout_groups = _patients(rng, 20, 5, "h")
    unseen, _ = _patients(rng, 40, 5, "u")  # never trained on: a data-blind generator's
    return train, train_groups, heldout, heldout_groups, unseen


def _discriminator_remembering(train):
    """A white-box D that scores its training images high (a memorising LOGAN target)."""
    flat = train.reshape(len(train), -1)

    def score(x, labels):
        d = np.linalg.norm(x.reshape(len(x), -1)[:, None] - flat[None], axis=2)
        return -d.min(axis=1)
    return score


def test_memorising_generator_is_caught_and_flagged(population):
    train, tg, heldout, hg, _ = population
    data = AuditData(train, tg, heldout, hg, synthetic=train.copy(),
                     discriminator=_discriminator_remembering(train))
    summary, scores, info = run_audit(data, {"n_bootstrap": 200})
    primary = summary[summary["set"] == "primary"]
    assert set(primary["attack"]) == {*ATTACKS, "logan"}
    assert (primary["auc"] >= 0.9).all(), primary
    assert (primary["verdict"] == "leak").all()
    assert (primary["tpr_at_0.01"] > 0.5).all()  # exposed at a low FPR, not only on average
    # both halves of the control are members, copied alike: no difference between them
    control = summary[summary["set"] == "control"].set_index(["attack", "level"])
    assert (control["auc"] - 0.5).abs().max() < 0.15
    assert (primary["auc_minus_control"] > 0.3).all() and (primary["diff_low"] > 0).all()
    assert info["headline_level"] == "patient"  # 20 patients a side >= min_patients 10
    image = primary[primary["level"] == "image"]
    assert (image["n_members"] == 100).all() and (image["n_nonmembers"] == 100).all()


def test_data_blind_generator_scores_chance(population):
    train, tg, heldout, hg, unseen = population
    summary, _, _ = run_audit(AuditData(train, tg, heldout, hg, synthetic=unseen),
                              {"n_bootstrap": 200})
    primary = summary[summary["set"] == "primary"]
    assert ((primary["auc_low"] < 0.5) & (primary["auc_high"] > 0.5)).all(), primary
    assert (primary["verdict"] == "no evidence").all()
    assert set(primary["attack"]) == set(ATTACKS)  # no D given: LOGAN is skipped


def test_sets_are_balanced_disjoint_and_by_patient(population):
    train, tg, heldout, hg, _ = population
    sets = membership_sets(tg, hg, settings={"max_patients": 7, "seed": 3})
    members, nonmembers = sets["primary"]
    assert len(members) == len(nonmembers) == 35
    assert len(np.unique(tg[members])) == len(np.unique(hg[nonmembers])) == 7
    a, b = sets["control"]
    assert len(a) == len(b) and not set(tg[a]) & set(tg[b])  # two disjoint halves
    with pytest.raises(ValueError, match="at least 2 training patients"):
        membership_sets(np.array(["t0"] * 3), hg, settings={})


def test_weighted_auc_and_tpr_at_fpr_match_their_definitions():
    rng = np.random.default_rng(1)
    scores = np.round(rng.normal(size=200), 1)  # ties
    member = rng.random(200) < 0.5
    scores[member] += 0.5
    assert weighted_auc(scores, member, np.ones((1, 200)))[0] == pytest.approx(
        roc_auc_score(member, scores))
    w = rng.integers(0, 3, size=200).astype(float)
    rep = np.repeat(np.arange(200), w.astype(int))
    assert weighted_auc(scores, member, w[None])[0] == pytest.approx(
        roc_auc_score(member[rep], scores[rep]))
    s = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.1])
    m = np.array([True, False, True, True, False, False])
    assert tpr_at_fpr(s, m, 0.0) == pytest.approx(1 / 3)
    assert tpr_at_fpr(s, m, 1 / 3) == pytest.approx(1.0)


def test_patient_level_interval_resamples_patients():
    rng = np.random.default_rng(2)
    groups = np.repeat([f"p{i}" for i in range(20)], 10)
    member = np.repeat(np.arange(20) < 10, 10)
    scores = np.repeat(rng.normal(size=20), 10) + 0.01 * rng.normal(size=200)
    out = score_attack(scores, member, groups, n_bootstrap=300)
    assert out["patient"]["n_members"] == 10 and out["image"]["n_members"] == 100
    # images of one patient are near copies: the image-level interval must be as wide as the
    # patient-level one, not sqrt(10) times narrower
    width = {k: v["auc_high"] - v["auc_low"] for k, v in out.items()}
    assert width["image"] > 0.7 * width["patient"]
    assert out["image"]["fpr_resolution"] == pytest.approx(0.01)


def test_verdict_rests_on_the_difference_to_the_control():
    assert verdict(0.6, 0.05) == "leak"
    assert verdict(0.6, -0.02) == "split bias?"
    assert verdict(0.45, 0.2) == "no evidence"


def test_study_columns_name_the_leaking_attack(population, tmp_path):
    train, tg, heldout, hg, _ = population
    summary, _, info = run_audit(AuditData(train, tg, heldout, hg, synthetic=train.copy()),
                                 {"n_bootstrap": 50})
    summary.insert(0, "model", "copier")
    summary["epsilon"] = np.nan
    summary["headline"] = summary["level"] == info["headline_level"]
    summary.to_csv(tmp_path / "privacy.tsv", sep="\t", index=False)
    cols = privacy_columns([tmp_path / "privacy.tsv"]).iloc[0]
    assert cols["model"] == "copier" and cols["privacy_auc_max"] == 1.0
    assert cols["privacy_verdict"].startswith("leak (") and cols["privacy_level"] == "patient"
    assert cols["privacy_tpr_at_1pct_fpr"] == 1.0 and cols["privacy_n"] == 20
    (tmp_path / "bad.tsv").write_text("a\tb\n1\t2\n")
    from medgan.errors import InputError

    with pytest.raises(InputError, match="bad.tsv"):
        privacy_columns([tmp_path / "bad.tsv"])


def test_evaluate_privacy_writes_its_files_for_a_trained_model(tmp_path):
    """A few steps of a real GAN (checkpoint with D): every attack runs, LOGAN included."""
    from medgan.analysis.evaluate import study_metrics_table
    from medgan.analysis.privacy.run import evaluate_privacy
    from medgan.data.prepared import PreparedDatasetWriter
    from medgan.training import train_gan

    rng = np.random.default_rng(0)
    images, groups = _patients(rng, 12, 3, "p")
    with PreparedDatasetWriter(tmp_path / "data", channels=["T1"], resolution=16) as w:
        w.append(images, [{"subject": g, "slice": i} for i, g in enumerate(groups)])
    split = tmp_path / "split.tsv"
    pd.DataFrame({"index": range(len(groups)), "group": groups,
                  "split": np.where(groups >= "p008", "heldout", "train")}).to_csv(
        split, sep="\t", index=False)
    train_gan(tmp_path / "data", tmp_path / "model", channels=None, resolution=16, seed=0,
              device="cpu", threads=1, progress=False, split=split,
              architecture={"name": "dcgan", "latent_dim": 8, "width": 4, "max_width": 8},
              loss={"name": "gan"}, optimizer={"name": "adam", "lr": 1e-3},
              schedule={"steps": 3, "batch_size": 4, "log_every": 1, "sample_every": 0})
    out = tmp_path / "analysis"
    summary = evaluate_privacy(tmp_path / "model" / "checkpoint.pt", tmp_path / "data", split,
                               out, settings={"n_synthetic": 20, "n_bootstrap": 20})
    assert {p.name for p in out.iterdir()} == {"privacy.tsv", "privacy_scores.tsv",
                                               "privacy.json", "privacy.png"}
    table = pd.read_csv(out / "privacy.tsv", sep="\t")
    assert set(table["attack"]) == {*ATTACKS, "logan"} and len(table) == len(summary) == 16
    assert table["auc"].between(0, 1).all() and table["epsilon"].isna().all()
    assert (table["n_members"] == table["n_nonmembers"]).all()
    record = json.loads((out / "privacy.json").read_text())
    assert record["feature_space"] == "pixels" and record["dp"] is None
    scores = pd.read_csv(out / "privacy_scores.tsv", sep="\t")
    assert set(scores["set"]) == {"primary", "control"}
    study = study_metrics_table([], tmp_path / "metrics.tsv", privacy_files=[out / "privacy.tsv"])
    assert {"privacy_auc_max", "privacy_tpr_at_1pct_fpr", "privacy_verdict"} <= set(study.columns)


def test_a_dp_model_that_did_not_learn_says_it_trained_with_dp():
    from medgan.analysis.evaluate import _with_dp_reason

    verdicts = pd.DataFrame({"model": ["dp", "twin", "dp_ok"],
                             "health": ["not_learned", "not_learned", "learned"],
                             "health_reason": ["few in the manifold"] * 2 + ["every check"]})
    privacy = pd.DataFrame({"model": ["dp", "twin", "dp_ok"],
                            "privacy_epsilon": [10.0, np.nan, 3.0]})
    out = _with_dp_reason(verdicts, privacy).set_index("model")["health_reason"]
    assert out["dp"] == ("few in the manifold; trained with DP-SGD at epsilon 10, whose noise "
                         "costs fidelity (compare its non-DP twin)")
    assert out["twin"] == "few in the manifold" and out["dp_ok"] == "every check"
