"""Preprocessing: pure array transforms (``mri``) and dataset preparation (``brats``)."""

from medgan.data.preprocess.brats import prepare_brats, prepare_brats_case
from medgan.data.preprocess.mri import (
    PLANES,
    background_value,
    brain_mask,
    extract_slices,
    resize_slices,
    slice_indices,
    zscore_in_mask,
)

__all__ = [
    "PLANES",
    "background_value",
    "brain_mask",
    "extract_slices",
    "prepare_brats",
    "prepare_brats_case",
    "resize_slices",
    "slice_indices",
    "zscore_in_mask",
]
