"""BraTS tumour label schemes and Beers 2018's three segmentation channels.

The BraTS releases encode the tumour sub-regions with different integers:

* ``"brats2015"`` (BraTS 2013-2016): 0 background, 1 necrosis, 2 edema, 3 non-enhancing
  tumour, 4 enhancing tumour;
* ``"brats2017"`` (BraTS 2017-2021): 0, 1 necrotic / non-enhancing tumour core (NCR/NET),
  2 edema (ED), 4 enhancing tumour (ET); there is no 3;
* ``"brats2023"``: 0, 1 necrotic tumour core (NCR), 2 edema (ED), 3 enhancing tumour (ET).

Beers et al. 2018 give the generator three binary label channels (:data:`LABEL_CHANNELS`):
``edema``, ``necrosis`` (necrosis or non-enhancing tumour) and ``enhancing``;
:func:`label_channels` maps a label map of any scheme to them.

The scheme is never guessed: 3 means non-enhancing tumour (-> ``necrosis``) in
``brats2015`` but enhancing tumour (-> ``enhancing``) in ``brats2023``, so a case without
label 4 cannot be told apart. It comes from config (``label_scheme``) or from the naming
preset (see :func:`medgan.data.readers.brats.implied_label_scheme`). Values outside the scheme
raise ``ValueError`` with a message saying which values and, where one fits, which scheme
would accept them; callers that know the file add its name (``InputError``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LABEL_CHANNELS = ("edema", "necrosis", "enhancing")


@dataclass(frozen=True)
class LabelScheme:
    """The label values of one BraTS release and which of them make each label channel."""

    name: str
    releases: str
    meanings: dict[int, str]
    channels: dict[str, tuple[int, ...]]

    @property
    def values(self) -> tuple[int, ...]:
        return tuple(sorted(self.meanings))


LABEL_SCHEMES: dict[str, LabelScheme] = {
    "brats2015": LabelScheme(
        name="brats2015", releases="BraTS 2013-2016",
        meanings={0: "background", 1: "necrosis", 2: "edema", 3: "non-enhancing tumour",
                  4: "enhancing tumour"},
        channels={"edema": (2,), "necrosis": (1, 3), "enhancing": (4,)}),
    "brats2017": LabelScheme(
        name="brats2017", releases="BraTS 2017-2021",
        meanings={0: "background", 1: "necrotic / non-enhancing tumour core", 2: "edema",
                  4: "enhancing tumour"},
        channels={"edema": (2,), "necrosis": (1,), "enhancing": (4,)}),
    "brats2023": LabelScheme(
        name="brats2023", releases="BraTS 2023",
        meanings={0: "background", 1: "necrotic tumour core", 2: "edema",
                  3: "enhancing tumour"},
        channels={"edema": (2,), "necrosis": (1,), "enhancing": (3,)}),
}


def get_label_scheme(scheme: str | LabelScheme) -> LabelScheme:
    """The :class:`LabelScheme` of a scheme name (``brats2015|brats2017|brats2023``)."""
    if isinstance(scheme, LabelScheme):
        return scheme
    if scheme not in LABEL_SCHEMES:
        raise ValueError(f"unknown label scheme {scheme!r}; schemes are {sorted(LABEL_SCHEMES)}")
    return LABEL_SCHEMES[scheme]


def label_values(seg: np.ndarray) -> list[int]:
    """The sorted distinct integer values of a label map.

    Raises ``ValueError`` for a boolean mask, NaN or infinite values and non-integer values.
    """
    seg = np.asarray(seg)
    if seg.dtype == bool:
        raise ValueError("label map is boolean (a mask), not a BraTS label map")
    if not (np.issubdtype(seg.dtype, np.integer) or np.issubdtype(seg.dtype, np.floating)):
        raise ValueError(f"label map has dtype {seg.dtype}, expected integers")
    if seg.size == 0:
        return []
    if np.issubdtype(seg.dtype, np.floating):
        finite = np.isfinite(seg)
        if not finite.all():
            raise ValueError(f"label map has {int(seg.size - finite.sum())} NaN or infinite "
                             f"values")
        frac = seg != np.rint(seg)
        if frac.any():
            raise ValueError(f"label map has non-integer values (e.g. {seg[frac].flat[0]:g})")
    lo, hi = int(seg.min()), int(seg.max())
    if lo < 0 or hi > 255:  # not a BraTS map; np.unique is fine for the error message
        return [int(v) for v in np.unique(seg)]
    # memory order: a C-order ravel of a Fortran-ordered NIfTI volume is a slow strided copy
    counts = np.bincount(seg.ravel(order="K").astype(np.uint8), minlength=hi + 1)
    return [int(v) for v in np.flatnonzero(counts)]


def check_label_values(seg: np.ndarray, scheme: str | LabelScheme) -> list[int]:
    """Check that every value of ``seg`` belongs to ``scheme``; return the values present.

    Raises ``ValueError`` naming the values outside the scheme, the scheme's values, and the
    schemes that would accept the map, if any.
    """
    scheme = get_label_scheme(scheme)
    present = label_values(seg)
    bad = [v for v in present if v not in scheme.meanings]
    if bad:
        fits = [s.name for s in LABEL_SCHEMES.values() if set(present) <= set(s.meanings)]
        hint = (f"; the values fit label_scheme {' or '.join(fits)}" if fits
                else "; it is not a BraTS label map")
        raise ValueError(f"label value(s) {bad} are not in the {scheme.name} label scheme "
                         f"({scheme.releases}: values {list(scheme.values)}){hint}")
    return present


def label_channels(seg: np.ndarray, scheme: str | LabelScheme, *,
                   dtype: type | np.dtype = bool) -> np.ndarray:
    """Beers 2018's binary label channels of a label map, stacked as ``(3, *seg.shape)``.

    The channels are :data:`LABEL_CHANNELS` = ``edema, necrosis, enhancing`` in that order
    (``necrosis`` holds necrosis and non-enhancing tumour). They are disjoint; a voxel of
    value 0 is in none. ``dtype`` is ``bool`` (default) or a float type (values 0 and 1).
    The map is checked first with :func:`check_label_values`; an all-zero map (no tumour)
    is valid and gives three empty channels.
    """
    scheme = get_label_scheme(scheme)
    check_label_values(seg, scheme)
    seg = np.asarray(seg)
    out = np.zeros((len(LABEL_CHANNELS), *seg.shape), dtype=bool)
    for i, name in enumerate(LABEL_CHANNELS):
        for value in scheme.channels[name]:
            out[i] |= seg == value
    return out if np.dtype(dtype) == np.bool_ else out.astype(dtype)
