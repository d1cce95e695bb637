"""``write_synthetic`` and the ``medgan`` command line on a tiny trained checkpoint."""

import json

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from medgan.cli import main
from medgan.data.prepared import PreparedDatasetWriter
from medgan.errors import InputError
from medgan.training import generate_images, train_gan
from medgan.training.generate import read_manifest_rows, write_synthetic

CHANNELS = ["T1", "FLAIR"]
N = 5


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    rng = np.random.default_rng(0)
    images = rng.normal(size=(8, 2, 16, 16)).astype(np.float32)
    with PreparedDatasetWriter(root / "data", channels=CHANNELS, resolution=16) as w:
        w.append(images, [{"subject": f"s{i}", "slice": i} for i in range(8)])
    train_gan(root / "data", root / "run", channels=None, resolution=16,
              architecture={"name": "dcgan", "latent_dim": 8, "width": 4, "max_width": 8},
              loss={"name": "gan"}, optimizer={"name": "adam"},
              schedule={"steps": 2, "batch_size": 4, "log_every": 1, "sample_every": 0},
              seed=0, device="cpu", threads=1, progress=False)
    return root / "run" / "checkpoint.pt"


@pytest.fixture(scope="module")
def written(checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "synthetic"
    manifest = write_synthetic(checkpoint, out, n=N, seed=3, batch_size=2)
    return out, manifest


def test_files_manifest_and_values(written, checkpoint):
    out, manifest = written
    assert sorted(p.name for p in out.iterdir()) == [
        "latents.npy", "manifest.json", "manifest.tsv", "nifti", "png"]
    assert len(list((out / "nifti").iterdir())) == N * 2
    assert len(list((out / "png").iterdir())) == N * 2
    rows = read_manifest_rows(out)
    assert len(rows) == N
    assert [int(r["index"]) for r in rows] == list(range(N))
    assert {r["seed"] for r in rows} == {"3"}
    assert set(rows[0]) == {"index", "seed", "latent_index", "nifti_T1", "nifti_FLAIR",
                            "png_T1", "png_FLAIR"}
    latents = np.load(out / "latents.npy")
    assert latents.shape == (N, 8) and latents.dtype == np.float32

    expected = generate_images(checkpoint, N, seed=3)  # same latents, same images
    for r in rows:
        i = int(r["index"])
        for c, name in enumerate(CHANNELS):
            img = nib.load(out / r[f"nifti_{name}"])
            assert img.shape == (16, 16, 1)
            np.testing.assert_allclose(img.affine, np.diag([-1.0, -1.0, 1.0, 1.0]))
            np.testing.assert_allclose(img.get_fdata()[:, :, 0], expected[i, c], atol=1e-6)
            png = np.asarray(Image.open(out / r[f"png_{name}"]))
            assert png.shape == (16, 16) and png.dtype == np.uint8

    saved = json.loads((out / "manifest.json").read_text())
    assert saved == json.loads(json.dumps(manifest))
    assert saved["n"] == N and saved["seed"] == 3 and saved["channels"] == CHANNELS
    assert len(saved["checkpoint_sha256"]) == 64
    assert saved["png_window_source"] == "checkpoint"  # channel_stats min/max of the real data
    assert saved["model_config"]["architecture"]["name"] == "dcgan" and saved["step"] == 2


def test_deterministic_for_a_seed(written, checkpoint, tmp_path):
    out, _ = written
    again = tmp_path / "again"
    write_synthetic(checkpoint, again, n=N, seed=3, batch_size=2)
    for sub in ("nifti", "png"):
        for f in sorted((out / sub).iterdir()):
            assert (again / sub / f.name).read_bytes() == f.read_bytes(), f.name
    for f in ("manifest.tsv", "manifest.json", "latents.npy"):
        assert (again / f).read_bytes() == (out / f).read_bytes()
    other = tmp_path / "other"
    write_synthetic(checkpoint, other, n=N, seed=4, formats=["nifti"])
    assert (other / "nifti" / "000000_T1.nii.gz").read_bytes() != \
        (out / "nifti" / "000000_T1.nii.gz").read_bytes()


def test_multichannel_nifti_and_uint16_png(checkpoint, tmp_path):
    out = tmp_path / "mc"
    write_synthetic(checkpoint, out, n=2, formats=["nifti", "png"], nifti_layout="multichannel",
                    png_dtype="uint16")
    rows = read_manifest_rows(out)
    img = nib.load(out / rows[0]["nifti"])
    assert img.shape == (16, 16, 1, 2)
    png = np.asarray(Image.open(out / rows[0]["png_FLAIR"]))
    assert png.dtype == np.uint16 and png.max() > 255


def test_bad_checkpoint_leaves_nothing(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    for path in (tmp_path / "missing.pt", junk):
        with pytest.raises(InputError, match=str(path.name)):
            write_synthetic(path, tmp_path / "out", n=2)
        assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.pt"]  # no temp dirs either


def test_bad_arguments(checkpoint, tmp_path):
    with pytest.raises(ValueError, match="formats"):
        write_synthetic(checkpoint, tmp_path / "o", n=1, formats=["jpeg"])
    with pytest.raises(ValueError, match="n must be"):
        write_synthetic(checkpoint, tmp_path / "o", n=0)
    assert not (tmp_path / "o").exists()


def test_cli_generate(checkpoint, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["generate", str(checkpoint), str(out), "-n", "2", "--format", "png"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "latents.npy", "manifest.json", "manifest.tsv", "png"]


def test_cli_missing_checkpoint(tmp_path, capsys):
    missing = tmp_path / "nope.pt"
    assert main(["generate", str(missing), str(tmp_path / "out"), "-n", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope.pt" in err and "not found" in err
    assert not (tmp_path / "out").exists()


def test_cli_phantoms_unknown_kind(tmp_path, capsys):
    assert main(["phantoms", "nosuchkind", str(tmp_path / "p")]) == 2
    assert "nosuchkind" in capsys.readouterr().err


def test_uniform_latents_are_used_for_generation(tmp_path):
    rng = np.random.default_rng(1)
    with PreparedDatasetWriter(tmp_path / "data", channels=["T1"], resolution=16) as w:
        w.append(rng.normal(size=(4, 1, 16, 16)).astype(np.float32),
                 [{"subject": "s", "slice": i} for i in range(4)])
    train_gan(tmp_path / "data", tmp_path / "run", channels=None, resolution=16,
              architecture={"name": "dcgan", "latent_dim": 8, "width": 4, "max_width": 8},
              loss={"name": "gan"}, optimizer={"name": "adam"},
              schedule={"steps": 1, "batch_size": 4, "sample_every": 0,
                        "latent_distribution": "uniform"},
              seed=0, device="cpu", threads=1, progress=False)
    ckpt = tmp_path / "run" / "checkpoint.pt"
    write_synthetic(ckpt, tmp_path / "out", n=64, seed=2, formats=("nifti",))
    z = np.load(tmp_path / "out" / "latents.npy")
    assert z.min() >= -1.0 and z.max() <= 1.0 and z.min() < -0.5  # U(-1, 1), not N(0, 1)
    assert np.abs(z).max() < 1.0 + 1e-6
    img = nib.load(sorted((tmp_path / "out" / "nifti").iterdir())[0]).get_fdata()
    np.testing.assert_allclose(img[:, :, 0], generate_images(ckpt, 64, seed=2)[0, 0], atol=1e-5)
