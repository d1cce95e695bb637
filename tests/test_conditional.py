"""Class-conditional GANs (medgan.models.conditional): label embedding in G, one-hot label maps
in D, around every architecture; trained with each real batch's classes; generation by class."""

import numpy as np
import pytest
import torch

from medgan.data.prepared import PreparedDatasetWriter
from medgan.errors import InputError
from medgan.models import build_discriminator, build_generator
from medgan.models.conditional import ConditionalDiscriminator, ConditionalGenerator, LabelSlot
from medgan.training.generate import generate_from, load_generator
from medgan.training.loop import train_gan

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CONDITION = {"column": "grade", "classes": ["high", "low", "mid"], "embed_dim": 4}
ARCHS = [{"name": "dcgan", "latent_dim": 8, "width": 4, "max_width": 8},
         {"name": "dcgan_delplace", "latent_dim": 8, "width": 4, "max_width": 8},
         {"name": "srresnet", "latent_dim": 8},
         {"name": "kitchen", "latent_dim": 5, "width": 4, "max_width": 8, "d_width": 4,
          "d_max_width": 8},
         {"name": "pggan", "latent_dim": 8, "filters": {"default": 8}}]


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: a["name"])
def test_every_architecture_takes_labels(arch):
    torch.manual_seed(0)
    slot = LabelSlot()
    G = build_generator(arch, channels=2, resolution=16, condition=CONDITION, slot=slot).eval()
    D = build_discriminator(arch, channels=2, resolution=16, condition=CONDITION, slot=slot)
    assert isinstance(G, ConditionalGenerator) and isinstance(D, ConditionalDiscriminator)
    assert G.latent_dim == arch["latent_dim"] and G.base.latent_dim == arch["latent_dim"] + 4
    z = torch.randn(3, G.latent_dim)
    with torch.no_grad():
        a, b = G(z, torch.tensor([0, 0, 0])), G(z, torch.tensor([1, 2, 0]))
    assert a.shape == (3, 2, 16, 16)
    assert not torch.allclose(a[:2], b[:2]) and torch.allclose(a[2], b[2])
    with torch.no_grad():
        assert torch.allclose(G(z), a)  # no labels, empty slot: class 0
    slot.labels = torch.tensor([1, 2, 0])
    with torch.no_grad():
        assert torch.allclose(G(z), b)  # without labels: the slot's
        D.eval()
        assert D(a).shape == (3,)
        assert torch.allclose(D(a), D(a, torch.tensor([1, 2, 0])))
    with pytest.raises(ValueError, match="labels for a batch"):
        G(z, torch.tensor([0, 1]))
    unconditional = build_generator(arch, channels=2, resolution=16)
    assert not isinstance(unconditional, ConditionalGenerator)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Images whose brightness is their class (low 0.2, mid 1, high 2, plus noise); two rows
    without a class; a class-conditional Kitchen GAN trained on them (linear output: with
    Kitchen's ReLU output this small G can start dead, all zeros)."""
    root = tmp_path_factory.mktemp("conditional")
    rng = np.random.default_rng(0)
    level = {"low": 0.2, "mid": 1.0, "high": 2.0}
    grades = [["low", "mid", "high"][i % 3] for i in range(60)] + ["", ""]
    images = np.stack([np.full((1, 16, 16), level.get(g, 5.0)) + rng.normal(0, 0.1, (1, 16, 16))
                       for g in grades]).astype(np.float32)
    with PreparedDatasetWriter(root / "data", channels=["T2"], resolution=16) as w:
        w.append(images, [{"subject": f"s{i}", "grade": g} for i, g in enumerate(grades)])
    record = train_gan(root / "data", root / "run", channels=["T2"], resolution=16,
                       architecture={"name": "kitchen", "latent_dim": 8, "width": 8,
                                     "max_width": 16, "d_width": 8, "d_max_width": 16,
                                     "output_activation": "none"},
                       loss={"name": "gan"}, optimizer={"name": "adam", "lr": 1e-3},
                       schedule={"steps": 200, "batch_size": 16, "log_every": 50,
                                 "sample_every": 0},
                       seed=0, device="cpu", threads=1, progress=False,
                       condition={"column": "grade"})
    return root, record


def test_conditional_run_records_classes_and_drops_unlabelled_rows(graded):
    _, record = graded
    condition = record["config"]["condition"]
    assert condition == {"column": "grade", "embed_dim": 8, "classes": ["high", "low", "mid"],
                         "class_counts": [20, 20, 20]}
    assert record["config"]["dataset"]["n_images"] == 60


def test_generated_images_follow_their_class(graded):
    root, _ = graded
    G, config = load_generator(root / "run" / "checkpoint.pt")
    means = {}
    for k, name in enumerate(config["condition"]["classes"]):
        images = generate_from(G, config, 32, seed=1, labels=np.full(32, k))
        means[name] = float(images.mean())
    assert means["low"] < means["mid"] < means["high"], means
    assert means["high"] - means["low"] > 0.8, means
    # no labels: classes drawn from the training frequencies, seeded
    a, b = generate_from(G, config, 12, seed=3), generate_from(G, config, 12, seed=3)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="class indices"):
        generate_from(G, config, 2, labels=[0, 3])


def test_condition_column_must_exist_and_hold_two_classes(tmp_path):
    images = np.zeros((4, 1, 16, 16), np.float32)
    with PreparedDatasetWriter(tmp_path / "data", channels=["T2"], resolution=16) as w:
        w.append(images, [{"subject": f"s{i}", "grade": "low"} for i in range(4)])
    kwargs = {"channels": ["T2"], "resolution": 16, "architecture": {"name": "kitchen"},
              "loss": {"name": "gan"}, "optimizer": {"name": "adam", "lr": 1e-3},
              "schedule": {"steps": 1, "batch_size": 2}, "seed": 0, "device": "cpu",
              "progress": False}
    with pytest.raises(InputError, match="meta.tsv.*no column 'zone'"):
        train_gan(tmp_path / "data", tmp_path / "run", condition={"column": "zone"}, **kwargs)
    with pytest.raises(InputError, match="1 class"):
        train_gan(tmp_path / "data", tmp_path / "run", condition={"column": "grade"}, **kwargs)


def test_written_synthetic_images_record_their_class(graded, tmp_path):
    from medgan.training.generate import write_synthetic

    root, _ = graded
    write_synthetic(root / "run" / "checkpoint.pt", tmp_path / "syn", n=6, seed=2,
                    formats=["png"])
    import pandas as pd

    manifest = pd.read_csv(tmp_path / "syn" / "manifest.tsv", sep="\t")
    assert set(manifest["class"]) <= {"high", "low", "mid"} and manifest["class"].nunique() > 1


def test_progressive_gan_trains_conditionally(graded, tmp_path):
    root, _ = graded
    record = train_gan(root / "data", tmp_path / "pg", channels=["T2"], resolution=16,
                       architecture={"name": "pggan", "latent_dim": 8,
                                     "filters": {"default": 8}},
                       loss={"name": "wgan_gp", "n_critic": 1},
                       optimizer={"name": "adam", "lr": 1e-3, "betas": [0.0, 0.99]},
                       schedule={"steps_per_phase": 1, "batch_sizes": {"default": 4},
                                 "log_every": 1, "sample_every": 2},
                       seed=0, device="cpu", threads=1, progress=False,
                       condition={"column": "grade"})
    assert record["config"]["condition"]["classes"] == ["high", "low", "mid"]
    G, config = load_generator(tmp_path / "pg" / "checkpoint.pt")
    assert G.current_resolution == 16
    images = generate_from(G, config, 4, labels=[0, 1, 2, 0])
    assert images.shape == (4, 1, 16, 16) and np.isfinite(images).all()


def test_two_processes_train_a_conditional_gan(graded, tmp_path, monkeypatch):
    """Data-parallel (gloo, 2 processes): each process's real rows come with their classes."""
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "lo")
    root, _ = graded
    kwargs = {"channels": ["T2"], "resolution": 16,
              "architecture": {"name": "dcgan", "latent_dim": 8, "width": 4, "max_width": 8},
              "loss": {"name": "gan"}, "optimizer": {"name": "adam", "lr": 1e-3},
              "schedule": {"steps": 3, "batch_size": 8, "log_every": 1, "sample_every": 0},
              "seed": 0, "device": "cpu", "threads": 2, "progress": False,
              "condition": {"column": "grade"}}
    one = train_gan(root / "data", tmp_path / "one", **kwargs)
    two = train_gan(root / "data", tmp_path / "two", processes=2, **kwargs)
    assert two["config"] == one["config"] and two["config"]["condition"]["classes"] == [
        "high", "low", "mid"]
    G, config = load_generator(tmp_path / "two" / "checkpoint.pt")
    assert np.isfinite(generate_from(G, config, 4, labels=[0, 1, 2, 1])).all()
