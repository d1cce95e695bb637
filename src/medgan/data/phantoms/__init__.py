"""Synthetic stand-ins for the real datasets, written in each release's own on-disk format."""

from medgan.data.phantoms.brats import (
    TISSUE_LABELS,
    brats_phantom_labels,
    brats_phantom_subject,
    make_brats2021_phantoms,
    make_brats_phantoms,
)

__all__ = [
    "make_phantoms",
    "TISSUE_LABELS",
    "brats_phantom_labels",
    "brats_phantom_subject",
    "make_brats_phantoms",
    "make_brats2021_phantoms",
]


def make_phantoms(kind: str, out_dir, **params):
    """Write the phantoms of dataset ``kind`` to ``out_dir``; ``params`` are its config keys."""
    if kind == "brats":
        if "shape" in params:
            params["shape"] = tuple(params["shape"])
        return make_brats_phantoms(out_dir, **params)
    if kind == "oasis":
        from medgan.data.phantoms.oasis import make_oasis_phantoms

        if "shape" in params:
            params["shape"] = tuple(params["shape"])
        return make_oasis_phantoms(out_dir, **params)
    if kind == "prostatex":
        from medgan.data.phantoms.prostatex import make_prostatex_phantoms

        return make_prostatex_phantoms(out_dir, **params)
    if kind == "fundus":
        from medgan.data.phantoms.fundus import make_fundus_phantoms

        return make_fundus_phantoms(out_dir, **params)
    raise ValueError(f"no phantom generator for dataset kind {kind!r}")
