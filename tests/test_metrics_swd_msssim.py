"""Sliced Wasserstein distance (Karras 2018) and MS-SSIM (Wang 2003) / MS-SSIM diversity."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.metrics import structural_similarity

from medgan.analysis.metrics.msssim import (
    ms_ssim,
    msssim_diversity,
    n_scales_for,
    random_distinct_pairs,
)
from medgan.analysis.metrics.swd import _pyr_up, laplacian_pyramid, sliced_wasserstein

FAST = {"n_directions": 64, "n_repeats": 2, "patches_per_image": 32}


def structured(n: int, *, channels: int = 1, size: int = 32, seed: int = 0, blur: float = 2.0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, channels, size, size))
    x = ndimage.gaussian_filter(x, (0, 0, blur, blur), mode="wrap")
    return (x / x.std()).astype(np.float32)


def test_swd_identical_sets_is_zero():
    a = structured(16)
    out = sliced_wasserstein(a, a.copy(), **FAST)
    assert set(out) == {"swd_32px", "swd_16px", "swd_mean"}
    assert all(v == 0.0 for v in out.values())


def test_swd_orders_same_distribution_blurred_and_noise():
    ref = structured(64, seed=1)
    same = structured(64, seed=2)
    blurred = ndimage.gaussian_filter(same, (0, 0, 1.5, 1.5)).astype(np.float32)
    noise = np.random.default_rng(3).normal(size=ref.shape).astype(np.float32)
    d_same = sliced_wasserstein(ref, same, **FAST)["swd_mean"]
    d_blur = sliced_wasserstein(ref, blurred, **FAST)["swd_mean"]
    d_noise = sliced_wasserstein(ref, noise, **FAST)["swd_mean"]
    assert 0 < d_same < d_blur < d_noise
    assert d_noise > 3 * d_same


@pytest.mark.parametrize(("channels", "size"), [(1, 16), (3, 64), (4, 16)])
def test_swd_channels_and_resolutions(channels, size):
    a = structured(6, channels=channels, size=size, seed=4)
    b = structured(9, channels=channels, size=size, seed=5)
    out = sliced_wasserstein(a, b, **FAST)
    levels = [r for r in (64, 32, 16) if r <= size]
    assert set(out) == {f"swd_{r}px" for r in levels} | {"swd_mean"}
    assert all(np.isfinite(v) and v > 0 for v in out.values())
    assert out == sliced_wasserstein(a, b, **FAST)  # seeded
    assert out != sliced_wasserstein(a, b, seed=1, **FAST)


def test_laplacian_pyramid_reconstructs_the_images():
    x = structured(2, channels=2, size=32)
    pyr = laplacian_pyramid(x, 2)
    assert [p.shape[-1] for p in pyr] == [32, 16]
    np.testing.assert_allclose(pyr[0] + _pyr_up(pyr[1]), x, atol=1e-5)


def test_swd_rejects_bad_input():
    a = structured(4)
    with pytest.raises(ValueError, match="channels and size"):
        sliced_wasserstein(a, structured(4, channels=2))
    with pytest.raises(ValueError, match="square"):
        sliced_wasserstein(a[:, :, :16], a[:, :, :16])
    with pytest.raises(ValueError, match="min_resolution"):
        sliced_wasserstein(a[:, :, :8, :8], a[:, :, :8, :8])
    with pytest.raises(ValueError, match="divisible"):
        sliced_wasserstein(structured(2, size=33), structured(2, size=33))
    bad = a.copy()
    bad[0, 0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        sliced_wasserstein(a, bad)


def skimage_ssim(a: np.ndarray, b: np.ndarray, data_range: float) -> np.ndarray:
    return np.array(
        [
            structural_similarity(
                x[0],
                y[0],
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
                data_range=data_range,
            )
            for x, y in zip(a, b, strict=True)
        ]
    )


@pytest.mark.parametrize("size", [16, 21])
def test_single_scale_ms_ssim_is_skimage_ssim(size):
    rng = np.random.default_rng(0)
    rand = rng.normal(size=(4, 1, size, size))
    smooth = structured(4, size=size, seed=1).astype(np.float64)
    for a, b in [
        (rand, rand + 0.5 * rng.normal(size=rand.shape)),
        (rand, rng.normal(size=rand.shape)),
        (smooth, structured(4, size=size, seed=2)),
        (smooth, smooth + 0.1),
    ]:
        assert n_scales_for(size, size) == 1
        ours = ms_ssim(a, b, data_range=5.0)
        np.testing.assert_allclose(ours, skimage_ssim(a, b, 5.0), atol=1e-4)


def test_ms_ssim_scales_identity_and_channel_mean():
    assert [n_scales_for(s, s) for s in (11, 21, 22, 44, 64, 256, 1024)] == [1, 1, 2, 3, 3, 5, 5]
    assert n_scales_for(10, 64) == 0
    a = structured(3, channels=3, size=64, seed=3)
    b = structured(3, channels=3, size=64, seed=4)
    np.testing.assert_allclose(ms_ssim(a, a, data_range=4.0), 1.0, atol=1e-12)
    from_tensors = ms_ssim(torch.from_numpy(a), torch.from_numpy(b), data_range=4.0)
    np.testing.assert_array_equal(from_tensors, ms_ssim(a, b, data_range=4.0))
    per_channel = np.stack(
        [ms_ssim(a[:, c : c + 1], b[:, c : c + 1], data_range=4.0) for c in range(3)]
    )
    np.testing.assert_allclose(ms_ssim(a, b, data_range=4.0), per_channel.mean(axis=0))
    noisy = ms_ssim(a, a + 0.3 * np.random.default_rng(0).normal(size=a.shape), data_range=4.0)
    assert np.all((noisy < 1) & (noisy > ms_ssim(a, b, data_range=4.0)))


def test_msssim_diversity_collapsed_vs_diverse():
    rng = np.random.default_rng(5)
    one = structured(1, size=32, seed=6)
    collapsed = (one + 0.01 * rng.normal(size=(30, 1, 32, 32))).astype(np.float32)
    diverse = structured(30, size=32, seed=7)
    out_c = msssim_diversity(collapsed, n_pairs=100)
    out_d = msssim_diversity(diverse, n_pairs=100, data_range=out_c["data_range"])
    assert out_c["msssim_mean"] > 0.98
    assert out_d["msssim_mean"] < 0.5
    assert out_c["scales"] == 2 and out_c["n_pairs"] == 100
    assert msssim_diversity(diverse, n_pairs=100) == msssim_diversity(diverse, n_pairs=100)
    small = msssim_diversity(diverse[:5], n_pairs=1000)
    assert small["n_pairs"] == 10  # all distinct pairs of 5 images


def test_random_distinct_pairs():
    pairs = random_distinct_pairs(50, 300, seed=1)
    assert pairs.shape == (300, 2)
    assert np.all(pairs[:, 0] < pairs[:, 1])
    assert len({tuple(p) for p in pairs}) == 300
    np.testing.assert_array_equal(pairs, random_distinct_pairs(50, 300, seed=1))


def test_ms_ssim_rejects_bad_input():
    a = structured(2, size=16)
    with pytest.raises(ValueError, match="data_range"):
        ms_ssim(a, a, data_range=0.0)
    with pytest.raises(ValueError, match="shapes differ"):
        ms_ssim(a, a[:1], data_range=1.0)
    with pytest.raises(ValueError, match="at least 11 px"):
        ms_ssim(a[:, :, :8, :8], a[:, :, :8, :8], data_range=1.0)
    with pytest.raises(ValueError, match="constant"):
        msssim_diversity(np.zeros((4, 1, 16, 16), dtype=np.float32))
    with pytest.raises(ValueError, match="at least 2"):
        msssim_diversity(a[:1])
