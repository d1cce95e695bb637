"""CUDA speed switches (no-ops on CPU), the loss-curve figure and the latent distribution."""

import json

import numpy as np
import pytest
import torch
from conftest import noise_dataset

from medgan.training import (
    accel,
    draw_latents,
    generate_images,
    load_generator,
    resolve_schedule,
    train_gan,
)
from medgan.training.checkpoint import load_checkpoint

ARCH = {"name": "dcgan", "latent_dim": 8, "width": 4, "max_width": 8}
SCHEDULE = {"steps": 2, "batch_size": 4, "log_every": 1, "sample_every": 0}
ALL_ON = {"bf16_autocast": True, "channels_last": True, "tf32": True, "cudnn_benchmark": True,
          "compile": True}
ALL_OFF = dict.fromkeys(ALL_ON, False)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return noise_dataset(tmp_path_factory.mktemp("data") / "prepared")


def _train(data, out, **kw):
    args = {"channels": None, "resolution": 16, "architecture": ARCH, "loss": {"name": "gan"},
            "optimizer": {"name": "adam"}, "schedule": SCHEDULE, "seed": 0, "device": "cpu",
            "threads": 1, "progress": False}
    return train_gan(data, out, **{**args, **kw})


def test_resolve_performance():
    assert accel.resolve_performance(None) == accel.PERFORMANCE_DEFAULTS
    assert accel.resolve_performance({}) == {"bf16_autocast": True, "channels_last": True,
                                             "tf32": True, "cudnn_benchmark": True,
                                             "compile": False}
    assert accel.resolve_performance({"compile": True})["compile"] is True
    with pytest.raises(ValueError, match="fp16"):
        accel.resolve_performance({"fp16": True})
    with pytest.raises(ValueError, match="tf32"):
        accel.resolve_performance({"tf32": "yes"})


def test_cpu_switches_are_no_ops():
    with accel.autocast(ALL_ON, "cpu"):
        y = torch.ones(2, 2) @ torch.ones(2, 2)
    assert y.dtype == torch.float32 and not torch.is_autocast_enabled()
    m = torch.nn.Conv2d(1, 2, 3)
    assert accel.prepare_module(m, ALL_ON, torch.device("cpu")) is m
    assert m.weight.is_contiguous()
    x = torch.zeros(2, 1, 4, 4)
    assert accel.prepare_batch(x, ALL_ON) is x
    benchmark = torch.backends.cudnn.benchmark
    accel.configure_backends({"cudnn_benchmark": not benchmark}, "cpu")
    assert torch.backends.cudnn.benchmark == benchmark
    assert accel.has_gradient_penalty(type("L", (), {"config": {"name": "wgan_gp"}})())


def test_performance_switches_leave_cpu_weights_bit_identical(data, tmp_path):
    on = _train(data, tmp_path / "on", performance=ALL_ON)
    _train(data, tmp_path / "off", performance=ALL_OFF)
    a, b = (load_checkpoint(tmp_path / d / "checkpoint.pt") for d in ("on", "off"))
    for key in ("generator", "discriminator"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key])
    assert on["config"]["performance"] == ALL_ON
    # a resumed run may change the switches
    _train(data, tmp_path / "on", performance=ALL_OFF, schedule={**SCHEDULE, "steps": 3})


def test_losses_png(data, tmp_path):
    run = _train(data, tmp_path / "run")
    assert "losses.png" in run["files"]
    assert (tmp_path / "run" / "losses.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "run" / "run.json").read_text())["files"] == run["files"]


def test_uniform_latents(data, tmp_path):
    assert resolve_schedule({})["latent_distribution"] == "normal"
    with pytest.raises(ValueError, match="latent_distribution"):
        resolve_schedule({"latent_distribution": "cauchy"})
    z = draw_latents(1000, 4, distribution="uniform", generator=torch.Generator().manual_seed(0))
    assert z.min() >= -1 and z.max() <= 1 and z.min() < -0.9 and z.max() > 0.9
    out = tmp_path / "uniform"
    _train(data, out, schedule={**SCHEDULE, "latent_distribution": "uniform"})
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["config"]["schedule"]["latent_distribution"] == "uniform"
    assert ckpt["fixed_z"].abs().max() <= 1
    # generate_images draws uniform latents too
    G, _ = load_generator(out / "checkpoint.pt")
    z = draw_latents(3, G.latent_dim, distribution="uniform",
                     generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = G(z).numpy()
    np.testing.assert_allclose(generate_images(out / "checkpoint.pt", 3, seed=5), expected,
                               atol=1e-6)
