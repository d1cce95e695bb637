"""Training snapshots (snapshots.jsonl, keep_best) and TensorBoard event files."""

import json

import numpy as np
import pytest
import torch

from medgan.analysis.metrics.featurenet import save_feature_net, train_feature_net
from medgan.analysis.snapshot_scorer import SnapshotScorer, snapshot_scorer_for
from medgan.data.prepared import PreparedDatasetWriter
from medgan.training import train_gan
from medgan.training.checkpoint import load_checkpoint
from medgan.training.schedule import resolve_schedule

ARGS = {"channels": None, "resolution": 16, "seed": 1, "device": "cpu", "threads": 1,
        "progress": False,
        "architecture": {"name": "dcgan", "latent_dim": 8, "width": 4, "max_width": 8},
        "loss": {"name": "gan"}, "optimizer": {"name": "adam", "lr": 1e-3}}
SCHEDULE = {"steps": 7, "batch_size": 4, "log_every": 2, "sample_every": 4}


@pytest.fixture(scope="module")
def images():
    yy, xx = np.mgrid[:16, :16]
    rng = np.random.default_rng(0)
    discs = [((yy - rng.uniform(5, 11)) ** 2 + (xx - rng.uniform(5, 11)) ** 2 < 16).astype(float)
             for _ in range(40)]
    return (np.stack(discs)[:, None] * 2 - 1 + rng.normal(0, 0.1, (40, 1, 16, 16))
            ).astype(np.float32)


@pytest.fixture(scope="module")
def data(images, tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "prepared"
    with PreparedDatasetWriter(path, channels=["T1"], resolution=16) as w:
        w.append(images, [{"subject": f"s{i}", "slice": i} for i in range(len(images))])
    return path


@pytest.fixture(scope="module")
def featurenet(images, tmp_path_factory):
    net, info = train_feature_net(images, ["T1"], steps=2, batch_size=16, width=4,
                                  feature_dim=8, progress=False)
    path = tmp_path_factory.mktemp("net") / "featurenet.pt"
    save_feature_net(path, net, info)
    return path


@pytest.fixture(scope="module")
def scorer(images, featurenet):
    return SnapshotScorer(images[:30], images[30:], channel_names=["T1"], featurenet=featurenet,
                          settings={"n_images": 30, "min_images": 12, "msssim_pairs": 20,
                                    "kid_subsets": 4})


@pytest.fixture(scope="module")
def run_dir(data, scorer, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "snap"
    train_gan(data, out, **ARGS, schedule={**SCHEDULE, "snapshot_every": 3,
                                           "keep_best": "domain_fid"},
              snapshot_scorer=scorer, tensorboard=out / "tensorboard")
    return out


def test_snapshot_rows(run_dir, scorer):
    rows = [json.loads(r) for r in (run_dir / "snapshots.jsonl").read_text().splitlines()]
    assert [(r["step"], r["source"]) for r in rows] == [
        (0, "real_heldout"), (3, "synthetic"), (6, "synthetic"), (7, "synthetic")]
    for r in rows:
        assert {"domain_fid", "domain_kid_mean", "domain_recall", "domain_coverage",
                "msssim_mean", "rho"} <= set(r)
        assert np.isfinite(r["domain_fid"]) and 0 <= r["domain_recall"] <= 1
    assert rows[0]["n_images"] == 10 and rows[1]["n_images"] == scorer.n_images == 12
    # the untrained generator is far from the real discs: its FID is above real-vs-real
    assert rows[1]["domain_fid"] > rows[0]["domain_fid"]


def test_keep_best_is_the_best_snapshot(run_dir):
    rows = [json.loads(r) for r in (run_dir / "snapshots.jsonl").read_text().splitlines()]
    best = min(rows[1:], key=lambda r: r["domain_fid"])
    ckpt = load_checkpoint(run_dir / "checkpoint_best.pt")
    assert ckpt["step"] == best["step"]
    final = load_checkpoint(run_dir / "checkpoint.pt")
    assert final["step"] == 7
    same = all(torch.equal(ckpt["generator"][k], final["generator"][k]) for k in ckpt["generator"])
    assert same == (best["step"] == 7)


def test_snapshots_do_not_change_the_weights(data, run_dir, tmp_path):
    plain = tmp_path / "plain"
    train_gan(data, plain, **ARGS, schedule=SCHEDULE)
    assert (plain / "snapshots.jsonl").read_text() == ""
    a, b = load_checkpoint(plain / "checkpoint.pt"), load_checkpoint(run_dir / "checkpoint.pt")
    for part in ("generator", "discriminator"):
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part])


def test_tensorboard_events_read_back(run_dir):
    accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator")
    events = list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1
    acc = accumulator.EventAccumulator(str(run_dir / "tensorboard"),
                                       size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    tags = acc.Tags()
    assert {"train/d_loss", "train/g_loss", "snapshot/domain_fid", "snapshot/msssim_mean",
            "baseline/domain_fid"} <= set(tags["scalars"])
    assert [e.step for e in acc.Scalars("train/d_loss")] == [2, 4, 6, 7]
    assert [e.step for e in acc.Scalars("snapshot/domain_fid")] == [3, 6, 7]
    rows = [json.loads(r) for r in (run_dir / "stats.jsonl").read_text().splitlines()]
    assert acc.Scalars("train/g_loss")[-1].value == pytest.approx(rows[-1]["g_loss"], rel=1e-6)
    assert [e.step for e in acc.Images("samples")] == [4, 7]


def test_schedule_keys():
    assert resolve_schedule({"snapshot_every": None})["snapshot_every"] == 0
    with pytest.raises(ValueError, match="keep_best"):
        resolve_schedule({"keep_best": "loss"})
    with pytest.raises(ValueError, match="snapshot_every"):
        resolve_schedule({"snapshot_every": -1})
    assert snapshot_scorer_for({"snapshot_every": 0}, "missing", None, channels=None) is None


def test_non_finite_images_are_diverged(scorer):
    images = np.full((12, 1, 16, 16), np.nan, np.float32)
    assert scorer(images)["health"] == "diverged"


def test_snapshot_precision_uses_radii_across_the_reference_patients(images, featurenet):
    """With the reference's patients (3 slices each), its k-NN radii skip a patient's own
    slices, as the metric suite's do (the same precision as the suite's function); one
    patient alone gives radii over all images."""
    from medgan.analysis.metrics.distribution import manifold_intervals

    groups = np.repeat(np.arange(10), 3)
    settings = {"n_images": 30, "min_images": 12, "msssim_pairs": 20, "kid_subsets": 4}
    plain, grouped = (SnapshotScorer(images[:30], images[30:], channel_names=["T1"],
                                     featurenet=featurenet, settings=settings,
                                     reference_groups=g) for g in (None, groups))
    candidates = images[::3]
    got = grouped(candidates)["domain_precision"]
    feats = grouped._features(candidates)
    assert got == manifold_intervals(grouped.reference_features, feats,
                                     real_groups=groups)["precision"]
    assert got >= plain(candidates)["domain_precision"]
    one = SnapshotScorer(images[:30], None, channel_names=["T1"], reference_groups=np.zeros(30))
    assert one.reference_groups is None
