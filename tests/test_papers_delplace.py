"""Delplace 2019: the loss comparison's convergence criteria, and the paper's figures and tables
from a tiny run of the `delplace2019` target (and its plan on the default config)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from conftest import run

from medgan.studies.delplace2019 import (
    HELDOUT_ROW,
    PAPER_TABLE3,
    convergence_verdict,
    image_statistics,
)

REAL = {"finite": True, "rho": 0.8, "sigma_per_image": 100.0, "delta": 12}
GOOD = {"finite": True, "rho": 0.7, "sigma_per_image": 80.0, "delta": 10}


def series(d, g):
    return [{"step": 10 * (i + 1), "d_loss": float(a), "g_loss": float(b)}
            for i, (a, b) in enumerate(zip(d, g, strict=True))]


def test_a_converging_series_with_diverse_samples_converges():
    rng = np.random.default_rng(0)
    d = 1.2 + 0.05 * rng.normal(size=40)
    g = 0.8 + 0.05 * rng.normal(size=40)
    out = convergence_verdict(series(d, g), GOOD, REAL)
    assert out["verdict"] == "converged"
    assert out["rho_ratio"] == pytest.approx(0.7 / 0.8)
    assert out["max_abs_loss_tail"] < 2


def test_a_nan_loss_is_divergence_with_its_step():
    rows = series([1.0, 1.1, math.nan], [0.9, 0.8, math.nan])
    out = convergence_verdict(rows, {"finite": False}, REAL)
    assert out["verdict"] == "diverged" and "step 30" in out["reason"]


def test_exploding_losses_are_divergence_but_an_early_spike_is_not():
    d = np.concatenate([np.ones(30), np.geomspace(1, 1e4, 10)])
    out = convergence_verdict(series(d, np.ones(40)), GOOD, REAL)
    assert out["verdict"] == "diverged" and "loss" in out["reason"]
    early = np.concatenate([[1e4], np.ones(39)])  # outside the last 25% of the log
    assert convergence_verdict(series(early, np.ones(40)), GOOD, REAL)["verdict"] == "converged"
    # the threshold is a setting
    out = convergence_verdict(series(d, np.ones(40)), GOOD, REAL, {"loss_limit": 1e5})
    assert out["verdict"] == "converged"


def test_unrealistic_samples_are_divergence():
    noise = {**GOOD, "rho": 0.2}
    out = convergence_verdict(series(np.ones(20), np.ones(20)), noise, REAL)
    assert out["verdict"] == "diverged" and "rho" in out["reason"]


def test_samples_without_variety_are_collapse():
    flat = series(np.ones(20), np.ones(20))
    same = {**GOOD, "sigma_per_image": 0.5, "delta": 1}
    out = convergence_verdict(flat, same, REAL)
    assert out["verdict"] == "collapsed" and "sigma" in out["reason"]
    few_modes = {**GOOD, "delta": 2}  # 2 / 12 < 0.25
    out = convergence_verdict(flat, few_modes, REAL)
    assert out["verdict"] == "collapsed" and "delta" in out["reason"]


def test_criteria_are_checked():
    with pytest.raises(ValueError, match="criteria"):
        convergence_verdict(series([1.0], [1.0]), GOOD, REAL, {"loss_limt": 3})
    with pytest.raises(ValueError, match="no logged steps"):
        convergence_verdict([], GOOD, REAL)


def test_image_statistics_of_collapsed_and_diverse_sets():
    from medgan.analysis.metrics.controls import structured_images
    from medgan.analysis.metrics.delplace import fit_real_pca

    real = structured_images(120, resolution=16, seed=1)
    pca = fit_real_pca(real, n_components=8)
    real_stats = image_statistics(real, pca)
    collapsed = np.repeat(real[:1], 40, axis=0) + 1e-4 * np.random.default_rng(0).normal(
        size=(40, 1, 16, 16)).astype(np.float32)
    col_stats = image_statistics(collapsed, pca)
    rows = series(np.ones(10), np.ones(10))
    assert convergence_verdict(rows, col_stats, real_stats)["verdict"] == "collapsed"
    assert convergence_verdict(rows, image_statistics(real[:60], pca),
                               real_stats)["verdict"] == "converged"
    bad = real[:10].copy()
    bad[0, 0, 0, 0] = np.nan
    assert image_statistics(bad, pca)["finite"] is False


def test_table3_scores_every_row_at_the_same_n(tmp_path, monkeypatch):
    """Table 3: N = min(n, real images) in every row, the real row a seeded subsample; sigma
    and delta as evaluate_gan.py (np.cov of the images)."""
    from medgan.analysis.metrics.controls import structured_images
    from medgan.studies import delplace2019

    real = structured_images(70, resolution=16, seed=1)
    fake = structured_images(200, resolution=16, seed=2)
    monkeypatch.setattr(delplace2019, "_generate", lambda ckpt, n, seed: fake[:n])
    models, losses = {"DCGAN": "a.pt", "ProGAN": "b.pt"}, {"DCGAN": "dragan", "ProGAN": "wgan_gp"}
    t = delplace2019.table3(models, losses, real, tmp_path / "t3.tsv", n=50, n_components=8)
    assert list(t["N"]) == [50, 50, 50] and list(t["paper_N"]) == [11328] * 3
    flat = fake[:50].reshape(50, -1).astype(np.float64)
    cov = np.cov(flat - flat.mean(axis=0))
    assert t["sigma"][1] == pytest.approx(np.trace(cov), rel=1e-9)
    assert t["delta"][1] == int(np.sum(np.linalg.eigvalsh(cov) > 0.01 * np.trace(cov)))
    t = delplace2019.table3(models, losses, real, tmp_path / "t3.tsv", n=11328, n_components=8)
    assert list(t["N"]) == [70, 70, 70]  # fewer real images than n: all rows at 70
    assert list(pd.read_csv(tmp_path / "t3.tsv", sep="\t")["N"]) == [70, 70, 70]


def test_table3_has_a_held_out_row_scored_against_the_training_pca(tmp_path, monkeypatch):
    """With few real images the PCA of rho fits its own training images: held-out ones, which
    it has not seen, score lower, and Table 3 shows them as the fair reference."""
    from medgan.analysis.metrics.controls import structured_images
    from medgan.analysis.metrics.delplace import fit_real_pca, realism_rho
    from medgan.studies import delplace2019

    real = structured_images(30, resolution=16, seed=1)
    held = structured_images(12, resolution=16, seed=3)
    monkeypatch.setattr(delplace2019, "_generate", lambda ckpt, n, seed: real[:n])
    t = delplace2019.table3({"DCGAN": "a.pt"}, {"DCGAN": "dragan"}, real, tmp_path / "t3.tsv",
                            n=30, n_components=16, heldout=held)
    assert list(t["model"]) == ["Training dataset", HELDOUT_ROW, "DCGAN"]
    assert list(t["N"]) == [30, 12, 30]
    pca = fit_real_pca(real, n_components=16)
    assert t["rho"][1] == pytest.approx(realism_rho(held, pca), rel=1e-6)
    assert t["rho"][1] < t["rho"][0]
    assert math.isnan(t["paper_rho"][1])
    # no held-out images (or one): no row
    t = delplace2019.table3({"DCGAN": "a.pt"}, {"DCGAN": "dragan"}, real, tmp_path / "t3.tsv",
                            n=30, n_components=16, heldout=held[:1])
    assert HELDOUT_ROW not in set(t["model"])


@pytest.mark.workflow
def test_default_config_plans_delplace2019():
    proc = run(["snakemake", "-n", "--forceall", "--nolock", "--cores", "2", "delplace2019"])
    out = proc.stdout + proc.stderr
    table = {line.split()[0]: int(line.split()[1]) for line in out.splitlines()
             if len(line.split()) == 2 and line.split()[1].isdigit()}
    assert table["train_gan"] == 16  # 3 architectures x 5 losses, and StyleGAN2 + ADA
    for rule in ("fig1", "table3", "training_time", "loss_comparison", "interpolations"):
        assert table[f"delplace2019_{rule}"] == 1
    assert table["delplace2019"] == 1


@pytest.fixture
def tiny_delplace(tiny_run):
    """The Delplace figures of the tiny config's whole run (conftest.tiny_run)."""
    work, _ = tiny_run
    return work / "results" / "figures" / "delplace2019"


@pytest.mark.workflow
def test_tiny_delplace_tables(tiny_delplace):
    t3 = pd.read_csv(tiny_delplace / "table3.tsv", sep="\t")
    # training set, the held-out images (not in the paper), DCGAN, SRResNet, ProGAN, and the
    # paper's future work (issue 20)
    models = ["Training dataset", HELDOUT_ROW, "DCGAN", "SRResNet", "ProGAN", "StyleGAN2"]
    assert list(t3["model"]) == models
    assert list(t3["loss"]) == ["-", "-", "DRAGAN", "DRAGAN", "WGAN_GP", "logistic + R1 + ADA"]
    assert {"N", "rho", "sigma", "delta", "paper_N", "paper_rho",
            "paper_sigma", "paper_delta"} <= set(t3.columns)
    assert "sigma_per_image" not in t3.columns  # equal N: sigma itself compares
    others = t3.drop(index=1)  # the held-out row has its own N
    assert len(set(others["N"])) == 1 and t3["N"][0] <= 20  # min(delplace_n, real images)
    held = t3.iloc[1]
    assert 2 <= held["N"] and math.isnan(held["paper_rho"])
    # the PCA is fitted to the training images: they lie closer to it than unseen ones
    assert held["rho"] < t3["rho"][0]
    paper = t3.set_index("model").loc[list(PAPER_TABLE3), "paper_rho"]
    assert paper.tolist() == [v[1] for v in PAPER_TABLE3.values()]
    assert math.isnan(t3["paper_rho"].iloc[5])  # not in the paper
    assert ((t3["rho"] >= 0) & (t3["rho"] <= 1)).all() and (t3["delta"] >= 0).all()

    times = pd.read_csv(tiny_delplace / "training_time.tsv", sep="\t")
    assert list(times["model"]) == ["DCGAN", "SRResNet", "ProGAN", "StyleGAN2"]
    assert list(times["paper_hours"])[:3] == [45, 30, 58]
    assert (times["train_s"] > 0).all()

    comp = pd.read_csv(tiny_delplace / "loss_comparison.tsv", sep="\t")
    assert list(zip(comp["architecture"], comp["loss"], strict=True)) == [
        ("DCGAN", "GAN"), ("DCGAN", "DRAGAN"), ("SRResNet", "DRAGAN"), ("ProGAN", "WGAN_GP")]
    assert set(comp["verdict"]) <= {"diverged", "collapsed", "converged"}
    assert comp["reason"].notna().all()
    assert list(comp["paper"]) == ["not stable", "stable", "stable", "stable"]
    # rho is judged against the held-out images' rho (the same PCA as Table 3's)
    assert set(comp["rho_real_set"]) == {"held-out"}
    assert comp["rho_real"].to_numpy() == pytest.approx(held["rho"], rel=1e-3)
    assert comp["rho_ratio"].to_numpy() == pytest.approx(comp["rho"] / comp["rho_real"],
                                                         rel=1e-3)


@pytest.mark.workflow
def test_tiny_delplace_figures(tiny_delplace):
    from PIL import Image

    names = {"fig1.png", "interpolations.png", "loss_comparison.png", "real_T1.png",
             "samples.png", "synthetic_tiny_dp_dcgan_dragan.png", "loss_tiny_dp_dcgan_dragan.png"}
    assert names <= {p.name for p in tiny_delplace.iterdir()}
    sizes = {}
    for name in names:
        with Image.open(tiny_delplace / name) as im:
            sizes[name] = im.size
            assert im.size[0] > 50 and im.size[1] > 50
    # Fig. 1: four panels side by side; interpolations: three rows of 3 steps
    assert sizes["fig1.png"][0] > 2.5 * sizes["fig1.png"][1]
    assert sizes["interpolations.png"][1] > sizes["fig1.png"][1]


def test_a_diverging_run_stops_and_is_recorded_when_asked(tmp_path):
    """``schedule.stop_on_divergence``: a non-finite loss ends the run (recorded), else fails."""
    import json

    from medgan.data.prepared import PreparedDatasetWriter
    from medgan.plotting import read_stats
    from medgan.training import train_gan

    images = np.random.default_rng(0).normal(size=(8, 1, 16, 16)).astype(np.float32)
    with PreparedDatasetWriter(tmp_path / "data", channels=["T1"], resolution=16) as w:
        w.append(images, [{"subject": f"s{i}", "slice": i} for i in range(8)])
    args = {"channels": None, "resolution": 16, "loss": {"name": "lsgan"},
            "architecture": {"name": "dcgan", "latent_dim": 4, "width": 2, "max_width": 4},
            "optimizer": {"name": "adam", "lr": 1e38}, "seed": 0, "device": "cpu",  # explodes
            "threads": 1, "progress": False}
    schedule = {"steps": 4, "batch_size": 4, "log_every": 1, "sample_every": 0}
    with pytest.raises(FloatingPointError, match="diverged"):
        train_gan(tmp_path / "data", tmp_path / "fails", schedule=schedule, **args)
    run = train_gan(tmp_path / "data", tmp_path / "stops",
                    schedule={**schedule, "stop_on_divergence": True}, **args)
    assert run["diverged_at_step"] == 1
    assert json.loads((tmp_path / "stops" / "run.json").read_text())["diverged_at_step"] == 1
    rows = read_stats(tmp_path / "stops" / "stats.jsonl")
    assert len(rows) == 1 and not np.isfinite([rows[0]["d_loss"], rows[0]["g_loss"]]).all()
    assert (tmp_path / "stops" / "samples.png").is_file()
    verdict = convergence_verdict(rows, {"finite": False}, REAL)
    assert verdict["verdict"] == "diverged" and "step 1" in verdict["reason"]
