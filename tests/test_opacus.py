"""Differentially private training of D with Opacus (medgan.training.dp): the budget is kept,
resume is exact, what DP-SGD cannot train is refused, and DP defeats the over-training control
of the membership-inference audit."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from medgan.data.prepared import PreparedDatasetWriter
from medgan.training import train_gan
from medgan.training.checkpoint import load_checkpoint
from medgan.training.dp import PoissonSampler, resolve_dp

ARCH = {"name": "dcgan", "latent_dim": 8, "width": 4, "max_width": 8, "d_norm": "group"}
ARGS = {"channels": None, "resolution": 16, "seed": 1, "device": "cpu", "threads": 1,
        "progress": False, "architecture": ARCH, "loss": {"name": "gan"},
        "optimizer": {"name": "adam", "lr": 1e-3},
        "schedule": {"steps": 6, "batch_size": 8, "log_every": 2, "sample_every": 0}}
DP = {"dp": {"epsilon": 3.0, "max_grad_norm": 1.0}}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("dp") / "prepared"
    images = np.random.default_rng(0).normal(size=(40, 1, 16, 16)).astype(np.float32)
    with PreparedDatasetWriter(path, channels=["T1"], resolution=16) as w:
        w.append(images, [{"subject": f"s{i // 2}", "slice": i} for i in range(40)])
    return path


@pytest.fixture(scope="module")
def dp_run(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("dp_run") / "whole"
    return out, train_gan(data, out, **ARGS, privacy=DP)


def test_dp_run_reports_epsilon_within_its_target(dp_run):
    out, record = dp_run
    privacy = record["privacy"]
    assert 0 < privacy["epsilon_spent"] <= privacy["epsilon_target"] == 3.0
    assert privacy["epsilon_spent"] > 0.9 * 3.0  # the noise is not needlessly large
    assert privacy["delta"] == pytest.approx(1 / 400) and privacy["d_steps_taken"] == 6
    assert privacy["sample_rate"] == pytest.approx(8 / 40) and privacy["noise_multiplier"] > 0
    assert json.loads((out / "run.json").read_text())["privacy"] == privacy
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["config"]["privacy"]["dp"]["noise_multiplier"] == privacy["noise_multiplier"]
    assert len(ckpt["privacy"]["history"]) == 1 and ckpt["privacy"]["history"][0][2] == 6
    # the checkpoint's D loads into a plain (not Opacus-wrapped) discriminator
    from medgan.analysis.privacy.run import load_discriminator

    assert load_discriminator(ckpt)(torch.zeros(2, 1, 16, 16)).shape == (2,)


def test_dp_resume_is_exact(data, dp_run, tmp_path, monkeypatch):
    import medgan.training.loop

    whole, _ = dp_run
    out = tmp_path / "killed"
    real_step, calls = medgan.training.loop.train_step, []

    def dying_step(*args, **kw):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real_step(*args, **kw)

    schedule = {**ARGS["schedule"], "checkpoint_every": 3}
    monkeypatch.setattr(medgan.training.loop, "train_step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        train_gan(data, out, **{**ARGS, "schedule": schedule}, privacy=DP)
    monkeypatch.setattr(medgan.training.loop, "train_step", real_step)
    assert load_checkpoint(out / "checkpoint.pt")["privacy"]["history"][0][2] == 3
    record = train_gan(data, out, **{**ARGS, "schedule": schedule}, privacy=DP)
    assert record["resumed_from_step"] == 3
    a, b = load_checkpoint(whole / "checkpoint.pt"), load_checkpoint(out / "checkpoint.pt")
    for key in ("generator", "discriminator"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), (key, name)
    assert a["privacy"] == b["privacy"]
    assert record["privacy"]["epsilon_spent"] == json.loads(
        (whole / "run.json").read_text())["privacy"]["epsilon_spent"]


@pytest.mark.parametrize(("change", "message"), [
    ({"architecture": {**ARCH, "d_norm": "batch"}}, "d_norm: group"),
    ({"loss": {"name": "wgan_gp"}}, "wgan_gp"),
    ({"architecture": {"name": "dcgan_delplace", "latent_dim": 8, "width": 4, "max_width": 8,
                       "minibatch_stddev": True}}, "minibatch"),
    ({"schedule": {**ARGS["schedule"], "batch_size": 64}}, "smaller than the training set"),
])
def test_dp_refuses_what_dp_sgd_cannot_train(data, tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        train_gan(data, tmp_path / "refused", **{**ARGS, **change}, privacy=DP)
    assert not (tmp_path / "refused" / "checkpoint.pt").exists()


def test_dp_settings_are_checked():
    with pytest.raises(ValueError, match="epsilon"):
        resolve_dp({"dp": {"delta": 1e-5}}, n_images=100, batch_size=10, steps=10)
    with pytest.raises(ValueError, match="unknown privacy.dp"):
        resolve_dp({"dp": {"epsilon": 1, "sigma": 2}}, n_images=100, batch_size=10, steps=10)
    with pytest.raises(ValueError, match="positive"):
        resolve_dp({"dp": {"epsilon": -1}}, n_images=100, batch_size=10, steps=10)
    assert resolve_dp(None, n_images=100, batch_size=10, steps=10) is None


def test_poisson_sampler_draws_each_image_at_its_rate():
    sampler = PoissonSampler(200, 0.1, torch.Generator().manual_seed(0))
    sizes = [len(sampler.next()) for _ in range(300)]
    assert abs(np.mean(sizes) - 20) < 1.5 and np.std(sizes) > 2  # Binomial(200, 0.1)
    assert len(set(sizes)) > 5 and sampler.last_size == sizes[-1]


def test_dp_defeats_the_over_training_control(tmp_path):
    """A GAN over-trained on 8 patients' 16 images: its D remembers them (LOGAN's AUC 1, a
    leak); the same run with D trained under epsilon = 1 is not told apart from chance (AUC
    0.42, interval 0.23-0.55 when written)."""
    from medgan.analysis.privacy.run import evaluate_privacy

    rng = np.random.default_rng(0)
    images = rng.normal(size=(32, 1, 16, 16)).astype(np.float32)
    groups = [f"p{i // 2:02d}" for i in range(32)]
    with PreparedDatasetWriter(tmp_path / "data", channels=["T1"], resolution=16) as w:
        w.append(images, [{"subject": g, "slice": i} for i, g in enumerate(groups)])
    split = tmp_path / "split.tsv"
    pd.DataFrame({"index": range(32), "group": groups,
                  "split": ["heldout" if g >= "p08" else "train" for g in groups]}).to_csv(
        split, sep="\t", index=False)
    args = {**ARGS, "seed": 0, "split": split,
            "architecture": {**ARCH, "width": 16, "max_width": 64},
            "optimizer": {"name": "adam", "lr": 2e-3, "betas": [0.5, 0.999]},
            "schedule": {"steps": OVERTRAIN_STEPS, "batch_size": 8, "log_every": 50,
                         "sample_every": 0}}
    auc = {}
    for name, privacy in (("plain", None), ("dp", {"dp": {"epsilon": 1.0}})):
        record = train_gan(tmp_path / "data", tmp_path / name, **args, privacy=privacy)
        table = evaluate_privacy(tmp_path / name / "checkpoint.pt", tmp_path / "data", split,
                                 tmp_path / f"audit_{name}",
                                 settings={"attacks": ["logan"], "n_synthetic": 16,
                                           "n_bootstrap": 200})
        auc[name] = table[(table["set"] == "primary") & (table["level"] == "image")].iloc[0]
        if privacy:
            assert record["privacy"]["epsilon_spent"] <= 1.0
            assert table["epsilon"].iloc[0] == pytest.approx(record["privacy"]["epsilon_spent"])
    assert auc["plain"]["auc"] >= 0.9 and auc["plain"]["verdict"] == "leak"
    assert auc["dp"]["auc_low"] < 0.5 and auc["dp"]["verdict"] == "no evidence"
    assert abs(auc["dp"]["auc"] - 0.5) < abs(auc["plain"]["auc"] - 0.5)


OVERTRAIN_STEPS = 400  # 200: AUC 0.91, too few control patients to call it a leak
