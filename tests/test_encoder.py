"""The encoder that inverts a trained generator (Beers 2018): architectures, training, use."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from medgan.analysis.encoder import (
    build_encoder,
    encode,
    load_encoder,
    plot_reconstructions,
    reconstruct,
    reconstruction_table,
    train_encoder,
)
from medgan.data.prepared import PreparedDatasetWriter
from medgan.errors import InputError
from medgan.models import ARCHITECTURES
from medgan.training import draw_latents, load_generator, train_gan

SMALL = {
    "dcgan": {"width": 4, "max_width": 8},
    "dcgan_delplace": {"width": 4, "max_width": 8, "d_width": 4, "d_max_width": 8,
                       "d_dense_width": 8},
    "srresnet": {"width": 4, "n_blocks": 1, "d_width": 4, "d_max_width": 8,
                 "d_blocks_per_stage": 1, "minibatch_stddev": True},
    "kitchen": {"d_width": 4, "d_max_width": 8},
    "pggan": {"filters": 4},
    "stylegan2": {"latent_dim": 8, "w_dim": 8, "channel_base": 64, "channel_max": 8},
}
ARCH = {"name": "dcgan", "latent_dim": 4, "width": 4, "max_width": 16}


def test_small_configs_cover_every_architecture():
    assert set(SMALL) == set(ARCHITECTURES)


@pytest.mark.parametrize("name", sorted(SMALL))
@pytest.mark.parametrize("resolution", [16, 32])
@pytest.mark.parametrize("channels", [1, 4])
def test_build_encoder_every_architecture(name, resolution, channels):
    torch.manual_seed(0)
    E = build_encoder({"name": name, **SMALL[name]}, channels=channels, resolution=resolution,
                      latent_dim=7)
    x = torch.randn(4, channels, resolution, resolution)
    codes = E(x)
    assert codes.shape == (4, 7) and torch.isfinite(codes).all()
    codes.square().mean().backward()  # gradients flow to every layer in use
    unused = "from_rgb." if name == "pggan" else None  # fromRGB below full resolution
    assert all(p.grad is not None for n, p in E.named_parameters()
               if unused is None or unused not in n or n.endswith(f"{E.body.max_level}.weight")
               or n.endswith(f"{E.body.max_level}.bias"))
    E.eval()
    with torch.no_grad():  # per image: a code does not depend on the rest of the batch
        torch.testing.assert_close(E(x[:1]), E(x)[:1], atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="LatentEncoder input"):
        E(torch.randn(2, channels, resolution // 2, resolution // 2))


def test_minibatch_stddev_kept_on_request():
    arch = {"name": "pggan", **SMALL["pggan"]}
    E = build_encoder(arch, channels=1, resolution=16, latent_dim=3, minibatch_stddev=True)
    x = torch.randn(4, 1, 16, 16)
    with torch.no_grad():
        assert not torch.allclose(E(x[:1]), E(x)[:1])


def test_build_encoder_rejects_bad_latent_dim():
    with pytest.raises(ValueError, match="latent_dim"):
        build_encoder({"name": "dcgan"}, channels=1, resolution=16, latent_dim=0)


@pytest.fixture(scope="module")
def gan_checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("gan")
    rng = np.random.default_rng(0)
    with PreparedDatasetWriter(root / "data", channels=["T1", "seg"], resolution=16) as w:
        w.append(rng.normal(size=(16, 2, 16, 16)).astype(np.float32),
                 [{"subject": f"s{i}", "slice": i} for i in range(16)])
    train_gan(root / "data", root / "run", channels=None, resolution=16, architecture=ARCH,
              loss={"name": "gan"}, optimizer={"name": "adam", "lr": 2e-4},
              schedule={"steps": 2, "batch_size": 8, "sample_every": 0}, seed=0, device="cpu",
              threads=1, progress=False)
    return root / "run" / "checkpoint.pt"


@pytest.fixture(scope="module")
def trained(gan_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("enc") / "encoder.pt"
    summary = train_encoder(gan_checkpoint, out, steps=150, batch_size=16,
                            optimizer={"name": "adam", "lr": 2e-3}, seed=1, log_every=50,
                            progress=False)
    return out, summary


def test_train_encoder_recovers_latents(gan_checkpoint, trained):
    out, summary = trained
    G, _ = load_generator(gan_checkpoint)
    E, info = load_encoder(out)
    z = draw_latents(256, 4, generator=torch.Generator().manual_seed(123))
    with torch.no_grad():
        images = G(z).numpy()
    codes = encode(E, images, batch_size=100)
    mse = float(np.mean((codes - z.numpy()) ** 2))
    assert mse < 0.5 * float(z.var())  # far better than predicting the mean (MSE = var z)
    rows = [json.loads(line) for line in Path(summary["stats"]).read_text().splitlines()]
    assert [r["step"] for r in rows] == [50, 100, 150]
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert info["history"] == rows and info["step"] == 150
    assert info["generator_checkpoint"]["step"] == 2
    assert len(info["generator_checkpoint"]["sha256"]) == 64
    assert info["channels"] == ["T1", "seg"] and info["latent_dim"] == 4
    assert sorted(p.name for p in out.parent.iterdir()) == ["encoder.pt", "encoder_stats.jsonl"]


def test_train_encoder_defaults_and_determinism(gan_checkpoint, tmp_path):
    a = train_encoder(gan_checkpoint, tmp_path / "a.pt", steps=3, seed=5, progress=False,
                      stats_path=tmp_path / "a.jsonl")
    train_encoder(gan_checkpoint, tmp_path / "b.pt", steps=3, seed=5, progress=False)
    train_encoder(gan_checkpoint, tmp_path / "c.pt", steps=3, seed=6, progress=False)
    assert a["config"]["batch_size"] == 8  # the GAN's batch size
    assert a["config"]["optimizer"]["name"] == "adam" and a["config"]["optimizer"]["lr"] == 2e-4
    wa, wb, wc = (torch.load(tmp_path / f"{k}.pt", weights_only=True)["encoder"]
                  for k in "abc")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)
    assert (tmp_path / "a.jsonl").is_file() and (tmp_path / "b_stats.jsonl").is_file()


def test_load_encoder_refuses_gan_checkpoint(gan_checkpoint):
    with pytest.raises(InputError, match="not an encoder checkpoint") as err:
        load_encoder(gan_checkpoint)
    assert str(gan_checkpoint) in str(err.value)


def test_reconstruction_table_and_figure(gan_checkpoint, trained, tmp_path):
    G, _ = load_generator(gan_checkpoint)
    E, _ = load_encoder(trained[0])
    real = np.random.default_rng(0).normal(size=(5, 2, 16, 16)).astype(np.float32)
    codes, recon = reconstruct(G, E, real, batch_size=2)
    assert codes.shape == (5, 4) and recon.shape == real.shape
    meta = pd.DataFrame({"subject": list("abcde"), "slice": range(5)})
    table = reconstruction_table(real, recon, ["T1", "seg"], meta)
    assert list(table.columns) == ["index", "subject", "slice", "mse", "mse_T1", "mse_seg"]
    np.testing.assert_allclose(table["mse"], (table["mse_T1"] + table["mse_seg"]) / 2)
    np.testing.assert_allclose(table.loc[2, "mse_seg"], np.mean((real[2, 1] - recon[2, 1]) ** 2))
    with pytest.raises(ValueError, match="meta rows"):
        reconstruction_table(real, recon, ["T1", "seg"], meta.iloc[:3])
    with pytest.raises(ValueError, match="channel names"):
        reconstruction_table(real, recon, ["T1"])
    with pytest.raises(ValueError, match="encode"):
        encode(E, real[:, :1])
    plot_reconstructions(real, recon, ["T1", "seg"], tmp_path / "fig4.png", n=4,
                         windows=[(-2, 2), (0, 1)])
    assert (tmp_path / "fig4.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("name", sorted(SMALL))
def test_train_and_load_every_architecture(name, tmp_path):
    arch = {"name": name, **SMALL[name]}
    torch.manual_seed(0)
    G = ARCHITECTURES[name].build_generator(arch, channels=2, resolution=16)
    schedule = ({"batch_sizes": {"default": 4}} if name == "pggan" else {"batch_size": 4})
    torch.save({"generator": G.state_dict(), "step": 7,
                "config": {"architecture": arch, "channels": ["a", "b"], "resolution": 16,
                           "schedule": {**schedule, "latent_distribution": "uniform"},
                           "optimizer": {"name": "rmsprop", "lr": 1e-4}}},
               tmp_path / "gan.pt")
    summary = train_encoder(tmp_path / "gan.pt", tmp_path / "enc.pt", steps=2, log_every=1,
                            progress=False)
    assert summary["config"]["batch_size"] == 4 and summary["latent_variance"] == 1 / 3
    E, info = load_encoder(tmp_path / "enc.pt")
    assert info["architecture"]["name"] == name and info["latent_distribution"] == "uniform"
    codes = encode(E, np.zeros((3, 2, 16, 16), np.float32))
    assert codes.shape == (3, G.latent_dim) and np.isfinite(codes).all()


def test_reconstruction_table_refuses_clashing_meta():
    x = np.zeros((2, 1, 4, 4))
    with pytest.raises(ValueError, match="clash"):
        reconstruction_table(x, x, ["T1"], [{"mse": 1}, {"mse": 2}])
