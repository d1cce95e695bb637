"""A study table's ``utility_*`` columns from the models' ``utility.tsv`` (written by
:mod:`medgan.analysis.utility.run`)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd

from medgan.errors import InputError
from medgan.tables import read_table


def utility_columns(tables: list[str | os.PathLike]) -> pd.DataFrame:
    """The study table's utility columns, one row per model: the first task's main metric,
    real + GAN at the smallest ratio against real only at the smallest real fraction (the
    scarce-data case): ``utility_task``, ``utility_metric``, ``utility_fraction``,
    ``utility_real``, ``utility_gain`` (the paired difference) and ``utility_verdict``."""
    rows = []
    for path in tables:
        table = read_table(path, "the utility table")
        rows.append(_headline(table, path))
    return pd.DataFrame(rows)


def _headline(table: pd.DataFrame, path: Any) -> dict[str, Any]:
    need = {"model", "task", "metric", "main", "training_set", "ratio", "real_fraction", "mean"}
    if not need <= set(table.columns) or table.empty:
        raise InputError(path, f"not a utility table (needs columns {sorted(need)})")
    task = table["task"].iloc[0]
    rows = table[(table["task"] == task) & table["main"].astype(bool)]
    metric = rows["metric"].iloc[0]
    rows = rows[rows["real_fraction"] > 0]
    fraction = rows["real_fraction"].min()
    rows = rows[rows["real_fraction"] == fraction]
    real = rows[rows["training_set"] == "real"]
    mixed = rows[rows["training_set"] == "real+gan"].sort_values("ratio")
    gain = mixed.iloc[0] if len(mixed) else None
    return {"model": table["model"].iloc[0], "utility_task": task, "utility_metric": metric,
            "utility_fraction": fraction,
            "utility_real": float(real["mean"].iloc[0]) if len(real) else np.nan,
            "utility_gain": np.nan if gain is None else float(gain["diff_vs_real"]),
            "utility_verdict": "" if gain is None else gain["verdict"]}
