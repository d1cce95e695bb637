"""Pure MRI preprocessing on arrays: brain mask, z-scoring, slice selection, resizing.

Volumes are 3-D arrays in the LPS-canonical orientation of
:func:`medgan.data.readers.read_nifti` (axis 0 towards Left, 1 towards Posterior, 2 towards
Superior), as BraTS releases lie on disk. Errors are ``ValueError`` with a message that
says what is wrong; callers that know the file add its name (``InputError``).
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Sequence

import numpy as np

PLANES = ("sagittal", "coronal", "axial")
_PLANE_AXIS = {"sagittal": 0, "coronal": 1, "axial": 2}


def background_value(volume: np.ndarray) -> float:
    """The value of a volume's background: its value at the 8 corners, which must agree.

    Skull-stripped releases fill the background with one constant: 0 in BraTS 2017-2023,
    the volume's minimum in the z-scored BraTS 2015 release. Raises ``ValueError`` when the
    corners differ (no constant background; give a brain-mask file instead).
    """
    volume = np.asarray(volume)
    if volume.ndim != 3 or min(volume.shape) == 0:
        raise ValueError(f"expected a non-empty 3-D volume, got shape {volume.shape}")
    corners = volume[np.ix_((0, -1), (0, -1), (0, -1))].ravel()
    if not np.all(corners == corners[0]):
        raise ValueError(f"no constant background: the 8 corner voxels differ "
                         f"({np.unique(corners).tolist()}); give a brain-mask file instead")
    return float(corners[0])


def brain_mask(volumes: Sequence[np.ndarray]) -> np.ndarray:
    """Voxels where any of the co-registered ``volumes`` differs from its background.

    Each volume's background is its constant corner value (:func:`background_value`), so
    both zero-background volumes and BraTS 2015's minimum-valued background work.
    Brain voxels that happen to equal the background value in every sequence (e.g. clipped
    to the minimum) are left out; use the release's mask file where it has one.
    Returns a bool array of the volumes' shape.
    """
    volumes = [np.asarray(v) for v in volumes]
    if not volumes:
        raise ValueError("brain_mask needs at least one volume")
    shape = volumes[0].shape
    mask = np.zeros_like(volumes[0], dtype=bool)  # the volumes' memory layout (C or Fortran)
    for i, volume in enumerate(volumes):
        if volume.shape != shape:
            raise ValueError(f"volume {i} has shape {volume.shape}, volume 0 has {shape}")
        mask |= volume != background_value(volume)
    return mask


def zscore_in_mask(volume: np.ndarray, mask: np.ndarray, *, background: str = "min") -> np.ndarray:
    """Z-score ``volume`` with the mean and standard deviation of the voxels in ``mask``.

    Inside the mask the result has mean 0 and standard deviation 1 (Beers et al. 2018,
    per-volume normalisation). Outside it is set to 0 (``background="zero"``) or to the
    smallest z-score inside the mask (``"min"``, the default: the background renders black,
    as in the BraTS 2015 release). Returns float32. Raises ``ValueError`` for an empty mask
    or a volume that is constant inside the mask.
    """
    volume = np.asarray(volume)
    mask = np.asarray(mask, dtype=bool)
    stats = zscore_stats(volume, mask, background=background)
    return apply_zscore(volume, mask, stats)


def zscore_stats(volume: np.ndarray, mask: np.ndarray, *,
                 background: str = "min") -> tuple[float, float, float]:
    """``(mean, std, fill)`` of :func:`zscore_in_mask`: the statistics of the voxels in
    ``mask`` and the value the background gets. Same errors as :func:`zscore_in_mask`."""
    if background not in ("min", "zero"):
        raise ValueError(f"background must be 'min' or 'zero', got {background!r}")
    volume = np.asarray(volume)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != volume.shape:
        raise ValueError(f"mask shape {mask.shape} differs from volume shape {volume.shape}")
    inside = _masked_values(volume, mask).astype(np.float64)
    if inside.size == 0:
        raise ValueError("the brain mask is empty: no voxels to normalise")
    if inside.max() == inside.min():
        raise ValueError(f"the volume is constant ({inside[0]:g}) inside the brain mask; "
                         f"cannot z-score it")
    mean = float(inside.mean())
    std = float(inside.std())
    fill = 0.0 if background == "zero" else (float(inside.min()) - mean) / std
    return mean, std, fill


def _masked_values(volume: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``volume[mask]``, in memory order where both arrays share their layout (3x faster than
    C-order indexing of Fortran-ordered volumes, as NIfTI files are read)."""
    if (volume.flags.f_contiguous and mask.flags.f_contiguous) or (
            volume.flags.c_contiguous and mask.flags.c_contiguous):
        return volume.ravel(order="K")[mask.ravel(order="K")]
    return volume[mask]


def apply_zscore(values: np.ndarray, mask: np.ndarray,
                 stats: tuple[float, float, float]) -> np.ndarray:
    """``(values - mean) / std`` as float32 where ``mask``, ``fill`` elsewhere.

    ``stats`` comes from :func:`zscore_stats` of the whole volume; ``values`` and ``mask``
    may be any matching part of it (e.g. the slices to keep), with the same result there as
    :func:`zscore_in_mask` of the whole volume.
    """
    mean, std, fill = stats
    values = np.asarray(values)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != values.shape:
        raise ValueError(f"mask shape {mask.shape} differs from values shape {values.shape}")
    out = ((values.astype(np.float64) - mean) / std).astype(np.float32)
    out[~mask] = fill
    return out


def _integral(value, name: str) -> int:
    if isinstance(value, numbers.Integral) or (isinstance(value, numbers.Real)
                                              and float(value).is_integer()):
        return int(value)
    raise ValueError(f"{name} must be an integer slice index, got {value!r}")


def slice_indices(n_slices: int, *, start: float, stop: float, units: str = "index") -> np.ndarray:
    """Indices ``start <= i < stop`` of the slices to keep along an axis of ``n_slices``.

    ``units="index"``: ``start`` and ``stop`` are slice indices (Han 2018: ``start=80,
    stop=150`` of 240 sagittal slices, i.e. #80-#149). ``units="fraction"``: they are
    fractions of ``n_slices`` in [0, 1], each rounded half up to the nearest index, so that
    ``80/240, 150/240`` gives exactly 80..149 of 240 and the same relative range (40..74)
    of 120. Raises ``ValueError`` for an empty or out-of-range selection.
    """
    n_slices = _integral(n_slices, "n_slices")
    if n_slices <= 0:
        raise ValueError(f"n_slices must be positive, got {n_slices}")
    if units == "index":
        lo, hi = _integral(start, "start"), _integral(stop, "stop")
    elif units == "fraction":
        for name, value in (("start", start), ("stop", stop)):
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{name} fraction {value!r} is outside [0, 1]")
        # round half up; the small epsilon absorbs float error in e.g. 150/240*240
        lo, hi = (int(np.floor(float(v) * n_slices + 0.5 + 1e-9)) for v in (start, stop))
    else:
        raise ValueError(f"units must be 'index' or 'fraction', got {units!r}")
    if not 0 <= lo < hi <= n_slices:
        raise ValueError(f"slice range [{start}, {stop}) ({units}) selects slices {lo}..{hi - 1}, "
                         f"which is empty or outside 0..{n_slices - 1}")
    return np.arange(lo, hi)


def extract_slices(volume: np.ndarray, *, plane: str = "sagittal",
                   indices: Sequence[int] | np.ndarray) -> np.ndarray:
    """2-D slices of an LPS-canonical volume, oriented for display, as ``(n, H, W)``.

    * ``"sagittal"`` (axis 0): superior up, anterior left; ``vol[i].T[::-1, :]``. A slice of a
      240x240x155 volume is 155x240.
    * ``"coronal"`` (axis 1): superior up, the patient's right on the image's left
      (radiological convention); ``vol[:, j].T[::-1, :]``, 155x240.
    * ``"axial"`` (axis 2): anterior up, the patient's right on the image's left;
      ``vol[:, :, k].T``, 240x240.
    """
    if plane not in _PLANE_AXIS:
        raise ValueError(f"plane must be one of {PLANES}, got {plane!r}")
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise ValueError(f"expected a 3-D volume, got shape {volume.shape}")
    axis = _PLANE_AXIS[plane]
    indices = np.asarray(indices, dtype=np.int64).ravel()
    n = volume.shape[axis]
    if indices.size and (indices.min() < 0 or indices.max() >= n):
        raise ValueError(f"{plane} slice indices {indices.min()}..{indices.max()} are outside "
                         f"0..{n - 1}")
    if indices.size > 1 and np.all(np.diff(indices) == 1):  # a range: a view, no copy yet
        taken = volume[(slice(None),) * axis + (slice(indices[0], indices[-1] + 1),)]
    else:
        taken = np.take(volume, indices, axis=axis)
    if plane == "sagittal":  # (n, A->P, I->S) -> (n, S->I, A->P)
        slices = taken.transpose(0, 2, 1)[:, ::-1, :]
    elif plane == "coronal":  # (R->L, n, I->S) -> (n, S->I, R->L)
        slices = taken.transpose(1, 2, 0)[:, ::-1, :]
    else:  # (R->L, A->P, n) -> (n, A->P, R->L)
        slices = taken.transpose(2, 1, 0)
    return _contiguous_copy(slices)


def _contiguous_copy(view: np.ndarray, *, block: int = 1 << 16) -> np.ndarray:
    """A C-contiguous copy of the 3-D ``view``, made in slabs along the axis that strides
    farthest in its source, so that each slab reads a compact part of the source (one pass
    of strided reads over a Fortran-ordered volume is 10x slower)."""
    out = np.empty(view.shape, dtype=view.dtype)
    axis = int(np.argmax(np.abs(view.strides)))
    step = max(1, block // max(1, view.size // max(1, view.shape[axis])))
    for start in range(0, view.shape[axis], step):
        part = (slice(None),) * axis + (slice(start, start + step),)
        out[part] = view[part]
    return out


def resize_slices(slices: np.ndarray, size: int) -> np.ndarray:
    """Resize ``(n, H, W)`` slices to ``(n, size, size)`` float32.

    Bilinear (``order=1``) with anti-aliasing, keeping the intensity range; the aspect ratio
    is not preserved (Han 2018 resizes 240x155 slices directly to 64x64 and 128x128). The
    result is scikit-image's ``resize(image, (size, size), order=1, mode="edge",
    anti_aliasing=True, preserve_range=True)`` of each slice, computed for all slices at once
    as ``A_H @ slice @ A_W.T`` (:func:`_resize_operator`: the Gaussian and the interpolation
    are separable and linear) and clipped to each slice's range as scikit-image does: five
    times faster than one call per slice.
    """
    size = _integral(size, "size")
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    slices = np.asarray(slices)
    if slices.ndim != 3:
        raise ValueError(f"expected (n, H, W) slices, got shape {slices.shape}")
    return _resize_linear(slices.astype(np.float64), size).astype(np.float32)


def _resize_linear(images: np.ndarray, size: int) -> np.ndarray:
    """``(n, H, W)`` float64 -> ``(n, size, size)`` float64, clipped to each image's range."""
    n, h, w = images.shape
    if n == 0 or h == 0 or w == 0:
        return np.zeros((n, size, size))
    across = (images.reshape(n * h, w) @ _resize_operator(w, size).T).reshape(n, h, size)
    out = np.matmul(_resize_operator(h, size), across)
    lo = images.min(axis=(1, 2))[:, None, None]
    hi = images.max(axis=(1, 2))[:, None, None]
    return np.clip(out, lo, hi, out=out)


@functools.lru_cache(maxsize=64)
def _resize_operator(n_in: int, n_out: int) -> np.ndarray:
    """The ``(n_out, n_in)`` matrix of scikit-image's 1-D anti-aliased bilinear resize
    (Gaussian of sigma ``max(0, (n_in / n_out - 1) / 2)``, edge mode, then linear
    interpolation on the pixel grid): the resize of the identity, column by column."""
    from skimage.transform import resize

    op = resize(np.eye(n_in), (n_out, n_in), order=1, mode="edge", anti_aliasing=True,
                preserve_range=True)
    op.setflags(write=False)
    return op


def resize_masks(masks: np.ndarray, size: int) -> np.ndarray:
    """Resize binary ``(n, H, W)`` masks to ``(n, size, size)`` bool without inventing labels.

    Each mask is resized as a 0/1 image with the same anti-aliased bilinear interpolation as
    :func:`resize_slices` (so each output pixel holds, roughly, the fraction of its area the
    mask covers) and thresholded at > 0.5. The output is strictly binary; it keeps the
    alignment of the resized images (nearest neighbour would shift edges by up to half an
    input pixel) and, for masks that do not overlap, a pixel lands in at most one of them
    (the interpolation weights are convex, so two fractions cannot both exceed 0.5).
    Structures thinner than about half an output pixel disappear.
    """
    size = _integral(size, "size")
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"expected (n, H, W) masks, got shape {masks.shape}")
    return _resize_linear(masks.astype(np.float64), size) > 0.5
