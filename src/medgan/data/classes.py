"""Class labels of a prepared dataset: a meta.tsv column read as class names and indices.

Used by the class-conditional generator (:mod:`medgan.models.conditional`, the model's
``condition.column``) and by the downstream classification tasks
(:mod:`medgan.analysis.utility`), so that both number the classes alike: the sorted distinct
names of the column (``False``/``True`` for ProstateX ``ClinSig``, ``L``/``R`` for fundus
``laterality``). The column ``tumour`` is derived from BraTS' ``tumour_px`` (``yes`` above 0,
``no`` at 0) when meta.tsv has no such column. Missing values ("", NaN) have no class.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

DERIVED_COLUMNS = {"tumour": ("tumour_px", "no", "yes")}  # name: (source, at 0, above 0)
MISSING = {"", "nan", "none", "na"}


def label_column(meta: pd.DataFrame, column: str) -> pd.Series:
    """The class names of ``column`` of meta.tsv as strings ("" where missing); ``tumour`` is
    derived from ``tumour_px`` (``yes`` above 0, ``no`` at 0) when meta.tsv has no such
    column. ``KeyError`` naming the columns when it has neither."""
    if column not in meta.columns and column in DERIVED_COLUMNS:
        source, low, high = DERIVED_COLUMNS[column]
        if source in meta.columns:
            px = pd.to_numeric(meta[source], errors="coerce")
            return pd.Series(np.where(px.isna(), "", np.where(px > 0, high, low)),
                             index=meta.index, dtype=object)
    if column not in meta.columns:
        raise KeyError(f"meta.tsv has no column {column!r}; it has {list(meta.columns)}")
    values = meta[column].astype(str).str.strip()
    return values.where(~values.str.lower().isin(MISSING), "")


def class_names(values: Sequence[Any]) -> list[str]:
    """The sorted distinct non-missing class names of a label column."""
    return sorted({str(v) for v in values if str(v).strip().lower() not in MISSING})


def encode_labels(values: Sequence[Any], classes: Sequence[str]) -> np.ndarray:
    """Class indices of ``values`` (-1 where missing); ``ValueError`` on an unknown class."""
    index = {c: i for i, c in enumerate(classes)}
    out = np.full(len(values), -1, dtype=np.int64)
    for i, v in enumerate(values):
        v = str(v)
        if v.strip().lower() in MISSING:
            continue
        if v not in index:
            raise ValueError(f"class {v!r} is not among {list(classes)}")
        out[i] = index[v]
    return out
