"""Unit tests of the pure MRI transforms in medgan.data.preprocess.mri."""

from __future__ import annotations

import numpy as np
import pytest

from medgan.data.preprocess.mri import (
    apply_zscore,
    background_value,
    brain_mask,
    extract_slices,
    resize_masks,
    resize_slices,
    slice_indices,
    zscore_in_mask,
    zscore_stats,
)


def _head(shape=(24, 20, 16), *, background=0.0, seed=0):
    """A noisy ellipsoid 'brain' on a constant background."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    inside = sum(g**2 for g in grids) < 0.6
    volume = np.full(shape, background, dtype=np.float32)
    volume[inside] = rng.normal(100.0, 15.0, inside.sum()).astype(np.float32)
    return volume, inside


# --- zscore_in_mask ------------------------------------------------------------------


@pytest.mark.parametrize("background", ["min", "zero"])
def test_zscore_mean0_std1_inside_and_background_value(background):
    volume, inside = _head()
    z = zscore_in_mask(volume, inside, background=background)
    assert z.dtype == np.float32 and z.shape == volume.shape
    assert abs(z[inside].astype(np.float64).mean()) < 1e-5
    assert abs(z[inside].astype(np.float64).std() - 1.0) < 1e-5
    expected = 0.0 if background == "zero" else z[inside].min()
    assert np.all(z[~inside] == expected)
    if background == "min":
        assert z.min() == z[inside].min() < -1.0


def test_zscore_is_invariant_to_affine_intensity_change():
    volume, inside = _head()
    a = zscore_in_mask(volume, inside)
    b = zscore_in_mask(3.0 * volume + 7.0, inside)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_zscore_empty_mask_raises():
    volume, inside = _head()
    with pytest.raises(ValueError, match="empty"):
        zscore_in_mask(volume, np.zeros_like(inside))


def test_zscore_constant_volume_raises():
    _, inside = _head()
    with pytest.raises(ValueError, match="constant"):
        zscore_in_mask(np.full(inside.shape, 5.0, np.float32), inside)


def test_zscore_mask_shape_mismatch_raises():
    volume, _ = _head()
    with pytest.raises(ValueError, match="shape"):
        zscore_in_mask(volume, np.ones((2, 2, 2), bool))


# --- brain_mask ----------------------------------------------------------------------


def test_brain_mask_zero_background():
    volume, inside = _head(background=0.0)
    np.testing.assert_array_equal(brain_mask([volume]), inside)


def test_brain_mask_min_valued_background_like_brats2015():
    volume, inside = _head(background=0.0)
    z = zscore_in_mask(volume, inside, background="zero")
    z[~inside] = z[inside].min() - 0.5  # BraTS 2015: background = volume minimum, not 0
    assert background_value(z) == z.min() < -1.0
    np.testing.assert_array_equal(brain_mask([z]), inside)


def test_brain_mask_misses_brain_voxels_equal_to_the_background():
    # documented limitation: a brain voxel clipped to the background value is not in the mask
    volume, inside = _head(background=0.0)
    z = zscore_in_mask(volume, inside, background="min")
    at_min = inside & (z == z.min())
    assert at_min.sum() == 1
    np.testing.assert_array_equal(brain_mask([z]), inside & ~at_min)


def test_brain_mask_is_union_over_sequences():
    a, inside = _head(seed=1)
    b = np.zeros_like(a)
    b[0, 5, 5] = 0  # still background
    b[12, 10, 8] = 1.0  # inside anyway
    b[2, 2, 2] = 3.0  # outside the ellipsoid: joins the mask
    assert a[2, 2, 2] == 0.0
    mask = brain_mask([a, b])
    assert mask[2, 2, 2] and not inside[2, 2, 2]
    assert mask.sum() == inside.sum() + 1


def test_brain_mask_without_constant_corners_raises():
    volume = np.random.default_rng(0).normal(size=(8, 8, 8))
    with pytest.raises(ValueError, match="corner"):
        brain_mask([volume])


# --- slice_indices -------------------------------------------------------------------


def test_slice_indices_han2018_index_range():
    idx = slice_indices(240, start=80, stop=150)
    assert idx[0] == 80 and idx[-1] == 149 and len(idx) == 70


def test_slice_indices_fraction_agrees_with_index_for_240():
    np.testing.assert_array_equal(
        slice_indices(240, start=80 / 240, stop=150 / 240, units="fraction"),
        slice_indices(240, start=80, stop=150))


def test_slice_indices_fraction_scales_for_120():
    idx = slice_indices(120, start=80 / 240, stop=150 / 240, units="fraction")
    np.testing.assert_array_equal(idx, np.arange(40, 75))


@pytest.mark.parametrize("start, stop, units", [
    (80, 80, "index"), (100, 90, "index"), (-1, 10, "index"), (200, 241, "index"),
    (0.5, 0.5, "fraction"), (0.2, 1.2, "fraction"), (0.1, 0.5, "percent"), (10.5, 20, "index"),
])
def test_slice_indices_empty_or_out_of_range_raises(start, stop, units):
    with pytest.raises(ValueError):
        slice_indices(240, start=start, stop=stop, units=units)


# --- extract_slices ------------------------------------------------------------------


def test_extract_slices_shapes():
    volume = np.zeros((240, 240, 155), np.float32)
    idx = slice_indices(240, start=80, stop=150)
    assert extract_slices(volume, plane="sagittal", indices=idx).shape == (70, 155, 240)
    assert extract_slices(volume, plane="coronal", indices=[0, 1]).shape == (2, 155, 240)
    assert extract_slices(volume, plane="axial", indices=[5]).shape == (1, 240, 240)


def test_extract_slices_orientation_marker():
    # LPS array: axis0 -> Left, axis1 -> Posterior, axis2 -> Superior.
    shape = (10, 12, 8)
    volume = np.zeros(shape, np.float32)
    x, y, z = 3, 2, 6  # anterior (low y) and superior (high z), right of centre (low x)
    volume[x, y, z] = 1.0

    sag = extract_slices(volume, plane="sagittal", indices=[x])[0]
    assert sag.shape == (8, 12)
    r, c = np.argwhere(sag == 1.0)[0]
    assert (r, c) == (8 - 1 - z, y)  # superior up, anterior left
    assert r < sag.shape[0] / 2 and c < sag.shape[1] / 2
    np.testing.assert_array_equal(sag, volume[x].T[::-1, :])

    cor = extract_slices(volume, plane="coronal", indices=[y])[0]
    assert cor.shape == (8, 10)
    assert tuple(np.argwhere(cor == 1.0)[0]) == (8 - 1 - z, x)  # superior up, right on left

    axi = extract_slices(volume, plane="axial", indices=[z])[0]
    assert axi.shape == (12, 10)
    assert tuple(np.argwhere(axi == 1.0)[0]) == (y, x)  # anterior up, right on left

    assert extract_slices(volume, plane="sagittal", indices=[x + 1]).max() == 0.0


def test_extract_slices_bad_plane_or_index_raises():
    volume = np.zeros((4, 5, 6))
    with pytest.raises(ValueError, match="plane"):
        extract_slices(volume, plane="oblique", indices=[0])
    with pytest.raises(ValueError, match="outside"):
        extract_slices(volume, plane="axial", indices=[6])


# --- resize_slices -------------------------------------------------------------------


def test_resize_slices_shape_dtype_and_range():
    rng = np.random.default_rng(0)
    slices = rng.uniform(-2.0, 5.0, size=(3, 155, 240)).astype(np.float32)
    out = resize_slices(slices, 64)
    assert out.shape == (3, 64, 64) and out.dtype == np.float32
    assert out.min() >= slices.min() - 1e-6 and out.max() <= slices.max() + 1e-6
    assert abs(out.mean() - slices.mean()) < 0.05


def test_resize_slices_keeps_constant_image_and_order():
    slices = np.stack([np.full((31, 47), v, np.float32) for v in (-1.5, 0.0, 2.0)])
    out = resize_slices(slices, 16)
    np.testing.assert_allclose(out[:, 8, 8], [-1.5, 0.0, 2.0], atol=1e-6)
    np.testing.assert_allclose(out.min(axis=(1, 2)), out.max(axis=(1, 2)), atol=1e-6)


# --- resize_masks --------------------------------------------------------------------


@pytest.mark.parametrize("in_shape, size", [((155, 240), 64), ((240, 240), 256), ((31, 47), 16)])
def test_resize_masks_binary_and_disjoint(in_shape, size):
    # a blobby BraTS-like label map: three disjoint masks (edema, necrosis, enhancing)
    from scipy import ndimage

    rng = np.random.default_rng(1)
    field = ndimage.gaussian_filter(rng.normal(size=(2, *in_shape)), 10.0)
    seg = np.digitize(field, np.quantile(field, [0.4, 0.6, 0.8]))  # values 0..3
    masks = np.stack([seg == v for v in (1, 2, 3)], axis=1)  # (2, 3, H, W)
    out = np.stack([resize_masks(masks[:, k], size) for k in range(3)], axis=1)
    assert out.shape == (2, 3, size, size) and out.dtype == bool
    assert out.sum(axis=1).max() <= 1  # no pixel in two labels
    for k in range(3):  # roughly the same area fraction, nothing invented
        assert abs(out[:, k].mean() - masks[:, k].mean()) < 0.03


def test_resize_masks_follows_the_resized_image():
    mask = np.zeros((1, 155, 240), bool)
    mask[0, 40:100, 60:200] = True
    out = resize_masks(mask, 64)
    image = resize_slices(mask.astype(np.float32), 64)
    np.testing.assert_array_equal(out, image > 0.5)
    assert out[0, 18:40, 17:52].all() and not out[0, :12].any() and not out[0, :, 56:].any()


def test_resize_masks_empty_full_and_too_thin():
    masks = np.zeros((3, 40, 40), bool)
    masks[1] = True
    masks[2, :, 20] = True  # one pixel wide: under half an output pixel at 10 px
    out = resize_masks(masks, 10)
    assert not out[0].any() and out[1].all() and not out[2].any()
    assert resize_masks(np.zeros((0, 8, 8), bool), 4).shape == (0, 4, 4)
    with pytest.raises(ValueError, match="masks"):
        resize_masks(np.zeros((8, 8), bool), 4)


# --- zscore_stats / apply_zscore (z-scoring only the slices kept) --------------------


@pytest.mark.parametrize("background", ["min", "zero"])
def test_zscoring_slices_equals_slicing_the_zscored_volume(background):
    volume, inside = _head(seed=3)
    stats = zscore_stats(volume, inside, background=background)
    whole = zscore_in_mask(volume, inside, background=background)
    idx = [3, 7, 12]
    part = apply_zscore(extract_slices(volume, plane="coronal", indices=idx),
                        extract_slices(inside, plane="coronal", indices=idx), stats)
    assert part.dtype == np.float32
    np.testing.assert_array_equal(part, extract_slices(whole, plane="coronal", indices=idx))
    with pytest.raises(ValueError, match="shape"):
        apply_zscore(volume, inside[:-1], stats)
    with pytest.raises(ValueError, match="constant"):
        zscore_stats(np.where(inside, 5.0, 0.0), inside)
