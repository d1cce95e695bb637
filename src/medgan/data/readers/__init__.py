"""Readers: narrow functions that turn a release's files into ``(array, affine)``."""

from medgan.data.readers.brats import (
    BRATS_SEQUENCES,
    NAMING_PRESETS,
    BratsCase,
    discover_brats_cases,
    read_brats_case,
    resolve_naming,
)
from medgan.data.readers.nifti import CANONICAL_ORIENTATION, read_nifti

__all__ = [
    "BRATS_SEQUENCES",
    "CANONICAL_ORIENTATION",
    "NAMING_PRESETS",
    "BratsCase",
    "discover_brats_cases",
    "read_brats_case",
    "read_nifti",
    "resolve_naming",
]
