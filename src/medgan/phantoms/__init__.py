"""Synthetic stand-ins for the real datasets, written in each release's own on-disk format."""

from medgan.phantoms.brats import (
    TISSUE_LABELS,
    brats_phantom_labels,
    brats_phantom_subject,
    make_brats_phantoms,
)

__all__ = [
    "TISSUE_LABELS",
    "brats_phantom_labels",
    "brats_phantom_subject",
    "make_brats_phantoms",
]
