"""Progressive (PGGAN) training through train_gan: stages, outputs, exact resume, config."""

import json

import numpy as np
import pytest
import torch
from conftest import tensors_by_name

from medgan.data.prepared import PreparedDatasetWriter
from medgan.models.pggan import pggan_schedule, stage_at
from medgan.training import EpochSampler, generate_images, resolve_schedule, train_gan
from medgan.training.checkpoint import load_checkpoint
from medgan.training.progressive import ProgressiveSchedule, real_batch

ARCH = {"name": "pggan", "latent_dim": 8, "filters": 8, "mbstd_group_size": 2}
# 16 px from 4 px: phases 4 stable, 8 fade, 8 stable, 16 fade, 16 stable of 2 steps: 10 steps
SCHEDULE = {"steps_per_phase": 2, "batch_sizes": {"default": 4, "16": 2}, "start_resolution": 4,
            "log_every": 1, "sample_every": 0, "ema_decay": 0.9}
ARGS = {"resolution": 16, "seed": 5, "device": "cpu", "threads": 1, "progress": False,
        "architecture": ARCH, "loss": {"name": "wgan_gp", "n_critic": 2},
        "optimizer": {"name": "adam", "lr": 1e-3, "betas": [0.0, 0.99]}}


def _dataset(path, channels, n=6):
    rng = np.random.default_rng(channels)
    images = rng.uniform(-1, 1, size=(n, channels, 16, 16)).astype(np.float32)
    names = [f"c{i}" for i in range(channels)]
    with PreparedDatasetWriter(path, channels=names, resolution=16) as w:
        w.append(images, [{"subject": f"s{i}", "slice": i} for i in range(n)])
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return _dataset(tmp_path_factory.mktemp("data") / "prepared", 1)


def _train(data, out, **kw):
    return train_gan(data, out, **{**ARGS, "channels": None, "schedule": SCHEDULE, **kw})


def _rows(out):
    return [json.loads(r) for r in (out / "stats.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def whole(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "whole"
    _train(data, out)
    return out


def test_logged_stages_follow_the_schedule(whole):
    phases = pggan_schedule(16, start_resolution=4, steps_per_phase=2,
                            batch_sizes=SCHEDULE["batch_sizes"])
    rows = _rows(whole)
    assert [r["step"] for r in rows] == list(range(1, 11))
    for r in rows:
        level, alpha, batch = stage_at(r["step"] - 1, phases)
        assert (r["level"], r["alpha"], r["batch_size"]) == (level, alpha, batch)
        assert r["resolution"] == 4 * 2**level
    assert [r["level"] for r in rows] == [0, 0, 1, 1, 1, 1, 2, 2, 2, 2]
    assert [r["alpha"] for r in rows] == [1, 1, 0, 0.5, 1, 1, 0, 0.5, 1, 1]
    assert [r["batch_size"] for r in rows] == [4] * 6 + [2] * 4
    run = json.loads((whole / "run.json").read_text())
    assert run["config"]["schedule"]["steps"] == 10


@pytest.mark.parametrize("channels", [1, 7])
def test_outputs_are_full_resolution(tmp_path, channels):
    data = _dataset(tmp_path / "prepared", channels)
    out = tmp_path / "run"
    _train(data, out, schedule={**SCHEDULE, "steps_per_phase": 1, "log_every": 5,
                                "sample_every": 2})  # samples at 8 px and 16 px on the way
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["generator"]["_extra_state"] == {"level": 2, "alpha": 1.0}
    assert ckpt["generator_ema"]["_extra_state"] == {"level": 2, "alpha": 1.0}
    images = generate_images(out / "checkpoint.pt", 3, seed=1)
    assert images.shape == (3, channels, 16, 16) and np.isfinite(images).all()
    from PIL import Image

    with Image.open(out / "samples.png") as im:  # 16 px tiles, not 4 px
        assert min(im.size) >= 4 * 16


class Killed(BaseException):
    """Stands in for SIGKILL: nothing after it runs."""


@pytest.mark.parametrize("reset", [False, True])
def test_resume_across_a_fade_is_exact(data, whole, tmp_path, monkeypatch, reset):
    import medgan.training.loop

    schedule = {**SCHEDULE, "reset_optimizer_per_level": reset}
    if reset:
        whole = tmp_path / "whole"
        _train(data, whole, schedule=schedule)
    out = tmp_path / "killed"
    real_step, calls = medgan.training.loop.train_step, []

    def dying_step(*args, **kw):
        calls.append(1)
        if len(calls) == 8:  # checkpoint at step 6 (8 px stable): killed in step 8 (16 px fade)
            raise Killed
        return real_step(*args, **kw)

    monkeypatch.setattr(medgan.training.loop, "train_step", dying_step)
    with pytest.raises(Killed):
        _train(data, out, schedule={**schedule, "checkpoint_every": 3})
    monkeypatch.setattr(medgan.training.loop, "train_step", real_step)
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["step"] == 6
    assert ckpt["generator"]["_extra_state"] == {"level": 1, "alpha": 1.0}  # stage of step 6

    # the new level (and its optimiser reset) starts at step 7, after the resume
    run = _train(data, out, schedule={**schedule, "checkpoint_every": 3})
    assert run["resumed_from_step"] == 6
    a, b = load_checkpoint(whole / "checkpoint.pt"), load_checkpoint(out / "checkpoint.pt")
    assert a["step"] == b["step"] == 10
    keys = ("generator", "discriminator", "generator_ema", "g_optimizer", "d_optimizer")
    ta, tb = tensors_by_name({k: a[k] for k in keys}), tensors_by_name({k: b[k] for k in keys})
    assert ta.keys() == tb.keys() and len(ta) > 20
    assert not [k for k in ta if not torch.equal(ta[k], tb[k])]
    assert a["generator"]["_extra_state"] == b["generator"]["_extra_state"]
    assert [r["d_loss"] for r in _rows(out)] == [r["d_loss"] for r in _rows(whole)]
    assert [r["alpha"] for r in _rows(out)] == [r["alpha"] for r in _rows(whole)]


def test_reset_optimizer_per_level(tmp_path):
    schedule = resolve_schedule({**SCHEDULE, "reset_optimizer_per_level": True},
                                architecture="pggan", resolution=16)
    progressive = ProgressiveSchedule(schedule, 16)
    assert [s for s in range(1, 11) if progressive.starts_level(s)] == [3, 7]
    p = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.Adam([p])
    p.grad = torch.ones(2)
    opt.step()
    progressive.enter(4, [], [opt])
    assert opt.state  # not a new level
    progressive.enter(7, [], [opt])
    assert not opt.state


def test_real_batches_are_pooled_and_blended():
    progressive = ProgressiveSchedule(resolve_schedule(SCHEDULE, architecture="pggan",
                                                       resolution=16), 16)
    x = torch.arange(4 * 16 * 16, dtype=torch.float32).reshape(4, 1, 16, 16)
    assert real_batch(x, progressive.stage(1)).shape == (4, 1, 4, 4)
    faded = real_batch(x, progressive.stage(3))  # 8 px, alpha 0
    assert faded.shape == (4, 1, 8, 8)
    assert torch.equal(faded[:, :, ::2, ::2], faded[:, :, 1::2, 1::2])


def test_schedule_keys():
    cfg = resolve_schedule({}, architecture="pggan", resolution=16)
    assert cfg["steps"] == 5 * 20000 and cfg["ema_decay"] == 0.999 and "batch_size" not in cfg
    assert cfg["batch_sizes"] == {"default": 16, "512": 8}
    assert resolve_schedule({"ema_decay": None}, architecture="pggan",
                            resolution=16)["ema_decay"] is None
    assert resolve_schedule({"batch_sizes": {8: 2, "default": 4}, "steps": 10**6},
                            architecture="pggan", resolution=16)["batch_sizes"] == {
        "8": 2, "default": 4}
    with pytest.raises(ValueError, match="steps 5 < 100000"):
        resolve_schedule({"steps": 5}, architecture="pggan", resolution=16)
    with pytest.raises(ValueError, match="batch_sizes"):
        resolve_schedule({"batch_size": 4}, architecture="pggan", resolution=16)
    with pytest.raises(ValueError, match="start_resolution"):
        resolve_schedule({"start_resolution": 32}, architecture="pggan", resolution=16)
    with pytest.raises(ValueError, match="start_resolution"):
        resolve_schedule({"start_resolution": 6}, architecture="pggan", resolution=16)
    with pytest.raises(ValueError, match="steps_per_phase"):
        resolve_schedule({"steps_per_phase": 0}, architecture="pggan", resolution=16)
    with pytest.raises(ValueError, match="reset_optimizer_per_level"):
        resolve_schedule({"reset_optimizer_per_level": "yes"}, architecture="pggan",
                         resolution=16)


@pytest.mark.parametrize("key", ["steps_per_phase", "batch_sizes", "start_resolution",
                                 "reset_optimizer_per_level"])
def test_progressive_keys_are_refused_for_other_architectures(data, tmp_path, key):
    with pytest.raises(ValueError, match=key):
        train_gan(data, tmp_path / "dcgan", channels=None, resolution=16, seed=0,
                  architecture={"name": "dcgan", "latent_dim": 8, "width": 4, "max_width": 8},
                  loss={"name": "gan"}, optimizer={"name": "adam"},
                  schedule={"steps": 1, "batch_size": 2, key: SCHEDULE.get(key, True)},
                  device="cpu", progress=False)
    assert not (tmp_path / "dcgan").exists()


def test_sampler_takes_a_batch_size_per_call():
    s = EpochSampler(5, 4, torch.Generator().manual_seed(0))
    assert len(s.next(2)) == 2 and len(s.next(2)) == 2
    assert len(s.next(2)) == 2 and s.pos == 2  # a new epoch: 1 item left was too few
    assert len(s.next(9)) == 5
