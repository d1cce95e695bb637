"""A study table's ``privacy_*`` columns from the models' ``privacy.tsv`` (written by
:mod:`medgan.analysis.privacy.run`)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd

from medgan.analysis.privacy.roc import SUMMARY_FPRS
from medgan.errors import InputError
from medgan.tables import read_table


def privacy_columns(tables: list[str | os.PathLike]) -> pd.DataFrame:
    """A study table's privacy columns, one row per model, from its ``privacy.tsv``: over the
    attacks at the headline level, ``privacy_auc_max`` (the largest primary AUC),
    ``privacy_auc_control`` (that attack's split-bias control), ``privacy_tpr_at_1pct_fpr``
    (the largest), ``privacy_n`` (members = non-members at that level), ``privacy_level``,
    ``privacy_verdict`` (``leak (<attacks>)`` if any attack leaks, else ``split bias?`` if any,
    else ``no evidence``) and ``privacy_epsilon`` (DP models)."""
    rows = []
    for path in tables:
        table = read_table(path, "the privacy table")
        need = {"model", "attack", "set", "level", "auc", "headline", "verdict"}
        if not need <= set(table.columns) or table.empty:
            raise InputError(path, f"not a privacy table (needs columns {sorted(need)})")
        rows.append(_privacy_headline(table))
    return pd.DataFrame(rows)


def _privacy_headline(table: pd.DataFrame) -> dict[str, Any]:
    head = table[table["headline"].astype(bool)]
    primary = head[head["set"] == "primary"]
    control = head[head["set"] == "control"].set_index("attack")
    top = primary.loc[primary["auc"].idxmax()]
    leaks = primary.loc[primary["verdict"] == "leak", "attack"].tolist()
    if leaks:
        verdict = f"leak ({', '.join(leaks)})"
    elif (primary["verdict"] == "split bias?").any():
        verdict = "split bias?"
    else:
        verdict = "no evidence"
    tpr = f"tpr_at_{SUMMARY_FPRS[0]:g}"
    return {"model": table["model"].iloc[0], "privacy_auc_max": float(top["auc"]),
            "privacy_auc_max_attack": top["attack"],
            "privacy_auc_control": float(control.loc[top["attack"], "auc"]),
            "privacy_tpr_at_1pct_fpr": float(primary[tpr].max()),
            "privacy_n": int(top["n_members"]), "privacy_level": top["level"],
            "privacy_verdict": verdict,
            "privacy_epsilon": float(table["epsilon"].iloc[0]) if "epsilon" in table else np.nan}
