"""Latent interpolation (Kitchen 2017 Fig. 5, Delplace 2019): paths, figures, walk GIFs."""

import numpy as np
import pytest
import torch
from PIL import Image

from medgan.analysis.interpolation import (
    interpolate_latents,
    interpolation_figure,
    interpolation_images,
    latent_walk,
    lerp,
    plot_interpolation,
    slerp,
    walk_latents,
    write_walk_gif,
)
from medgan.models import build_generator

ARCH = {"name": "dcgan", "latent_dim": 6, "width": 4, "max_width": 8}


@pytest.fixture(scope="module")
def generator():
    torch.manual_seed(0)
    return build_generator(ARCH, channels=3, resolution=16).eval()


def test_lerp_and_slerp_endpoints_and_norms():
    rng = np.random.default_rng(0)
    z0, z1 = rng.normal(size=8), rng.normal(size=8)
    z1 *= np.linalg.norm(z0) / np.linalg.norm(z1)  # equal norms
    for f in (lerp, slerp):
        np.testing.assert_array_equal(f(z0, z1, 0.0), z0)
        np.testing.assert_array_equal(f(z0, z1, 1.0), z1)
    t = np.linspace(0, 1, 11)
    path = slerp(z0, z1, t)
    assert path.shape == (11, 8)
    np.testing.assert_allclose(np.linalg.norm(path, axis=1), np.linalg.norm(z0), rtol=1e-12)
    np.testing.assert_allclose(lerp(z0, z1, 0.5), (z0 + z1) / 2)
    assert np.linalg.norm(lerp(z0, z1, 0.5)) < np.linalg.norm(z0)  # the straight line dips
    # slerp at t = 1/2 lies halfway in angle
    mid = slerp(z0, z1, 0.5)
    cos = lambda a, b: a @ b / np.linalg.norm(a) / np.linalg.norm(b)  # noqa: E731
    assert cos(mid, z0) == pytest.approx(cos(mid, z1))


def test_slerp_parallel_and_batched():
    z = np.array([1.0, 2.0, 2.0])
    np.testing.assert_allclose(slerp(z, 2 * z, 0.5), 1.5 * z)  # parallel: the line
    np.testing.assert_allclose(slerp(z, z, np.linspace(0, 1, 4)), np.tile(z, (4, 1)))
    np.testing.assert_allclose(slerp(z, -z, 0.5), 0 * z, atol=1e-12)  # antiparallel: the line
    zero = np.zeros(3)
    assert np.isfinite(slerp(zero, z, 0.3)).all()
    pairs0, pairs1 = np.eye(3)[:2], np.eye(3)[1:]
    path = interpolate_latents(pairs0, pairs1, 5, method="spherical")
    assert path.shape == (2, 5, 3)
    np.testing.assert_allclose(np.linalg.norm(path, axis=-1), 1.0)
    np.testing.assert_allclose(path[0, 2], [2**-0.5, 2**-0.5, 0])
    with pytest.raises(ValueError, match="steps"):
        interpolate_latents(z, z, 1)
    with pytest.raises(ValueError, match="method"):
        interpolate_latents(z, z, 3, method="cubic")
    with pytest.raises(ValueError, match="one shape"):
        lerp(z, z[:2], 0.5)


def test_interpolation_images_and_figure(generator, tmp_path):
    pairs = np.random.default_rng(1).normal(size=(2, 2, 6))
    images = np.stack([interpolation_images(generator, pairs, 5, m)
                       for m in ("linear", "spherical")])
    assert images.shape == (2, 2, 5, 3, 16, 16)
    with torch.no_grad():
        ends = generator(torch.from_numpy(pairs[:, 1].astype(np.float32))).numpy()
    np.testing.assert_allclose(images[1, :, -1], ends, atol=1e-5)
    again = interpolation_images(generator, pairs, 5, "linear")
    np.testing.assert_array_equal(images[0], again)
    plot_interpolation(images, ["T2", "ADC", "Ktrans"], tmp_path / "interp.png",
                       windows=[(-1, 1)] * 3)
    assert (tmp_path / "interp.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="channels"):
        plot_interpolation(images, ["T2"], tmp_path / "bad.png")
    with pytest.raises(ValueError, match="pairs_z"):
        interpolation_images(generator, pairs[:, :, :4], 5)


def test_walk_gif_frames_and_size(generator, tmp_path):
    keypoints = np.random.default_rng(2).normal(size=(3, 6))
    z = walk_latents(keypoints, 4)
    assert z.shape == (12, 6)
    np.testing.assert_array_equal(z[::4], keypoints)
    info = write_walk_gif(generator, keypoints, tmp_path / "walk.gif", frames_per_segment=4,
                          channel_names=["T2", "ADC", "Ktrans"], duration_ms=50, scale=2)
    assert info["frames"] == 12 and info["size"] == [3 * 16 * 2, 16 * 2]
    with Image.open(tmp_path / "walk.gif") as gif:
        assert gif.n_frames == 12 and gif.size == (96, 32) and gif.info.get("loop") == 0
    assert [p.name for p in tmp_path.iterdir()] == ["walk.gif"]  # no temporary left


@pytest.fixture(scope="module")
def checkpoint(generator, tmp_path_factory):
    path = tmp_path_factory.mktemp("gan") / "checkpoint.pt"
    torch.save({"generator": generator.state_dict(), "step": 0,
                "config": {"architecture": ARCH, "channels": ["T2", "ADC", "Ktrans"],
                           "resolution": 16, "schedule": {"latent_distribution": "uniform"}}},
               path)
    return path


def test_checkpoint_helpers_deterministic(checkpoint, tmp_path):
    a = latent_walk(checkpoint, tmp_path / "a.gif", n_keypoints=2, frames_per_segment=3, seed=4)
    latent_walk(checkpoint, tmp_path / "b.gif", n_keypoints=2, frames_per_segment=3, seed=4)
    assert a["frames"] == 6 and a["size"] == [3 * 16 * 8, 16 * 8]  # default scale: 128 px high
    assert (tmp_path / "a.gif").read_bytes() == (tmp_path / "b.gif").read_bytes()
    x = interpolation_figure(checkpoint, tmp_path / "f.png", n_pairs=1, steps=3, seed=1)
    y = interpolation_figure(checkpoint, tmp_path / "g.png", n_pairs=1, steps=3, seed=1)
    assert x.shape == (2, 1, 3, 3, 16, 16)
    np.testing.assert_array_equal(x, y)
    assert (tmp_path / "f.png").is_file()
