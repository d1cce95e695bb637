"""The GAN training loop, its run directory, checkpoints and generation from a checkpoint."""

import json

import numpy as np
import pytest
import torch

from medgan.data.prepared import PreparedDatasetWriter
from medgan.errors import InputError
from medgan.training import EpochSampler, generate_images, load_generator, train_gan
from medgan.training.checkpoint import (
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)

ARCH = {"name": "dcgan", "latent_dim": 8, "width": 4, "max_width": 16}
ADAM = {"name": "adam", "lr": 2e-4, "betas": [0.5, 0.999]}
SCHEDULE = {"steps": 3, "batch_size": 8, "log_every": 2, "sample_every": 0}


def _dataset(path, *, n=20, channels=("T1", "T2"), resolution=16, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(n, len(channels), resolution, resolution)).astype(np.float32)
    with PreparedDatasetWriter(path, channels=list(channels), resolution=resolution) as w:
        w.append(images, [{"subject": f"s{i}", "slice": i} for i in range(n)])
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return _dataset(tmp_path_factory.mktemp("data") / "prepared")


def _train(data, out, **kw):
    args = {"channels": None, "resolution": 16, "architecture": ARCH, "loss": {"name": "gan"},
            "optimizer": ADAM, "schedule": SCHEDULE, "seed": 0, "device": "cpu", "threads": 1,
            "progress": False}
    return train_gan(data, out, **{**args, **kw})


@pytest.fixture(scope="module")
def run_dir(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "dcgan"
    _train(data, out, channels=["T2"], provenance={"rule": "train"})
    return out


def test_run_directory(run_dir):
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "checkpoint.pt", "losses.png", "run.json", "samples.png", "snapshots.jsonl",
        "stats.jsonl"]  # no temp files; no snapshots asked for: an empty log
    ckpt = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 3
    assert {"generator", "discriminator", "g_optimizer", "d_optimizer", "rng"} <= set(ckpt)
    cfg = ckpt["config"]
    assert cfg["channels"] == ["T2"] and cfg["resolution"] == 16 and cfg["seed"] == 0
    assert cfg["architecture"]["kernel_size"] == 4  # defaults recorded
    assert cfg["dataset"]["n_images"] == 20 and list(cfg["dataset"]["channel_stats"]) == ["T2"]
    rows = [json.loads(line) for line in (run_dir / "stats.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 3]
    for r in rows:
        assert {"d_loss", "g_loss", "d_real", "d_fake", "images_per_s", "elapsed_s"} <= set(r)
        assert all(np.isfinite(v) for v in r.values())
    run = json.loads((run_dir / "run.json").read_text())
    assert run["provenance"] == {"rule": "train"} and run["seed"] == 0
    assert run["config"]["loss"] == {"name": "gan", "n_critic": 1}
    assert run["timing"]["s_per_step"] > 0 and "medgan_version" in run
    assert (run_dir / "samples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_generate_images(run_dir):
    G, cfg = load_generator(run_dir / "checkpoint.pt")
    assert not G.training and cfg["channels"] == ["T2"]
    a = generate_images(run_dir / "checkpoint.pt", 5, seed=3, batch_size=2)
    b = generate_images(run_dir / "checkpoint.pt", 5, seed=3)
    c = generate_images(run_dir / "checkpoint.pt", 5, seed=4)
    assert a.shape == (5, 1, 16, 16) and a.dtype == np.float32 and np.isfinite(a).all()
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert not np.allclose(a, c)


def _weights(out):
    ckpt = load_checkpoint(out / "checkpoint.pt")
    return {**{f"G.{k}": v for k, v in ckpt["generator"].items()},
            **{f"D.{k}": v for k, v in ckpt["discriminator"].items()}}


def test_same_seed_same_weights(data, run_dir, tmp_path):
    _train(data, tmp_path / "again", channels=["T2"])
    _train(data, tmp_path / "other", channels=["T2"], seed=1)
    first, again = _weights(run_dir), _weights(tmp_path / "again")
    other = _weights(tmp_path / "other")
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first if k.endswith("weight"))


def test_wgan_run_clips_critic(data, tmp_path):
    out = tmp_path / "wgan"
    _train(data, out, loss={"name": "wgan", "clip": 0.02, "n_critic": 2},
           optimizer={"name": "rmsprop", "lr": 5e-5}, schedule={**SCHEDULE, "steps": 2})
    ckpt = load_checkpoint(out / "checkpoint.pt")
    params = dict(ckpt["discriminator"])
    params = {k: v for k, v in params.items() if "running" not in k and "num_batches" not in k}
    assert max(v.abs().max().item() for v in params.values()) <= 0.02
    row = json.loads((out / "stats.jsonl").read_text().splitlines()[-1])
    assert np.isfinite(row["wasserstein"])
    assert ckpt["config"]["optimizer"]["name"] == "rmsprop"


def test_dataset_smaller_than_a_batch(tmp_path):
    data = _dataset(tmp_path / "small", n=3, channels=("FLAIR",))
    run = _train(data, tmp_path / "run", schedule={**SCHEDULE, "steps": 1, "batch_size": 64})
    assert run["final"]["images_per_s"] > 0


class Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


class Custom:
    pass


@pytest.mark.parametrize("obj", [Custom(), Payload()])
def test_checkpoint_with_python_objects_is_refused(tmp_path, obj):
    path = tmp_path / "evil.pt"
    torch.save({"generator": obj, "config": {}, "step": 0}, path)
    with pytest.raises(InputError, match=r"evil\.pt: refused.*Python objects"):
        load_checkpoint(path)
    with pytest.raises(InputError, match="evil.pt"):
        load_generator(path)


def test_bad_checkpoint_files(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match=r"junk\.pt: not a readable"):
        load_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(InputError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"step": 1}, tmp_path / "partial.pt")
    with pytest.raises(InputError, match="lacks"):
        load_checkpoint(tmp_path / "partial.pt")


def test_resolution_mismatch(data, tmp_path):
    with pytest.raises(InputError, match="resolution 32") as err:
        _train(data, tmp_path / "out", resolution=32)
    assert str(data) in str(err.value)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_unknown_channel_and_config_keys(data, tmp_path):
    with pytest.raises(InputError, match="FLAIR"):
        _train(data, tmp_path / "out", channels=["FLAIR"])
    with pytest.raises(ValueError, match="epochs"):
        _train(data, tmp_path / "out", schedule={**SCHEDULE, "epochs": 3})
    with pytest.raises(ValueError, match="momentum"):
        _train(data, tmp_path / "out", optimizer={"name": "adam", "momentum": 0.9})


def test_epoch_sampler():
    s = EpochSampler(10, 4, torch.Generator().manual_seed(0))
    batches = [set(s.next().tolist()) for _ in range(4)]  # 2 batches per epoch, 2 items dropped
    assert all(len(b) == 4 for b in batches)
    assert not batches[0] & batches[1] and not batches[2] & batches[3]
    assert batches[:2] != batches[2:]  # reshuffled
    whole = EpochSampler(3, 64, torch.Generator().manual_seed(0))
    assert sorted(whole.next().tolist()) == [0, 1, 2]


def test_rng_state_round_trip(tmp_path):
    import random

    g = torch.Generator().manual_seed(5)

    def draw():
        return (random.random(), np.random.random(),  # noqa: NPY002 - the legacy global state
                torch.rand(1).item(), torch.rand(1, generator=g).item())

    save_checkpoint(tmp_path / "rng.pt", {"rng": capture_rng_state({"data": g})})
    first = draw()
    restore_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True)["rng"], {"data": g})
    assert draw() == first


def test_load_checkpoint_names_a_short_junk_file(tmp_path):
    from medgan.errors import InputError
    from medgan.training.checkpoint import load_checkpoint

    junk = tmp_path / "short.pt"
    junk.write_bytes(b"\x80\x02")
    with pytest.raises(InputError, match="short.pt"):
        load_checkpoint(junk)


def test_ema_generator_is_used_for_generation(data, run_dir, tmp_path):
    out = tmp_path / "ema"
    _train(data, out, schedule={**SCHEDULE, "ema_decay": 0.5})
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["config"]["schedule"]["ema_decay"] == 0.5
    ema, raw = ckpt["generator_ema"], ckpt["generator"]
    assert not all(torch.equal(ema[k], raw[k]) for k in raw)
    G, _ = load_generator(out / "checkpoint.pt")
    assert all(torch.equal(v, ema[k]) for k, v in G.state_dict().items())
    G_raw, _ = load_generator(out / "checkpoint.pt", ema=False)
    assert all(torch.equal(v, raw[k]) for k, v in G_raw.state_dict().items())
    # without ema_decay the checkpoint holds none and generation uses the trained generator
    assert load_checkpoint(run_dir / "checkpoint.pt")["generator_ema"] is None


def test_separate_learning_rates_and_generator_steps(data, tmp_path):
    import medgan.training.schedule as train

    opt = {**ADAM, "lr_g": 1e-3, "lr_d": 1e-4}
    out = tmp_path / "lr"
    _train(data, out, optimizer=opt, loss={"name": "gan", "g_steps": 3, "label_smoothing": 0.1})
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["g_optimizer"]["param_groups"][0]["lr"] == 1e-3
    assert ckpt["d_optimizer"]["param_groups"][0]["lr"] == 1e-4
    assert ckpt["config"]["optimizer"]["lr_g"] == 1e-3
    assert ckpt["config"]["loss"]["g_steps"] == 3
    g_state = next(iter(ckpt["g_optimizer"]["state"].values()))
    d_state = next(iter(ckpt["d_optimizer"]["state"].values()))
    assert g_state["step"].item() == 3 * SCHEDULE["steps"]  # three G steps per D step
    assert d_state["step"].item() == SCHEDULE["steps"]
    assert "lr_g" not in train.resolve_optimizer(ADAM)  # recorded only when given
    with pytest.raises(ValueError, match="lr_d"):
        train.resolve_optimizer({**ADAM, "lr_d": 0})


@pytest.mark.parametrize(("schedule", "match"), [
    ({"checkpoint_every": -1}, "checkpoint_every"),
    ({"ema_decay": 1.0}, "ema_decay"),
    ({"ema_decay": "fast"}, "ema_decay"),
])
def test_bad_schedule_values(schedule, match):
    from medgan.training import resolve_schedule

    with pytest.raises(ValueError, match=match):
        resolve_schedule(schedule)


def test_stats_log_gradient_norms(tmp_path):
    rng = np.random.default_rng(0)
    with PreparedDatasetWriter(tmp_path / "data", channels=["T1"], resolution=16) as w:
        w.append(rng.normal(size=(4, 1, 16, 16)).astype(np.float32),
                 [{"subject": "s", "slice": i} for i in range(4)])
    train_gan(tmp_path / "data", tmp_path / "run", channels=None, resolution=16,
              architecture={"name": "dcgan", "latent_dim": 8, "width": 4, "max_width": 8},
              loss={"name": "gan"}, optimizer={"name": "adam"},
              schedule={"steps": 2, "batch_size": 4, "log_every": 1, "sample_every": 0},
              seed=0, device="cpu", threads=1, progress=False)
    rows = [json.loads(r) for r in (tmp_path / "run" / "stats.jsonl").read_text().splitlines()]
    assert all(r["d_grad_norm"] > 0 and r["g_grad_norm"] > 0 for r in rows)
