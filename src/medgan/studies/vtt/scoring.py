"""Score a kit's answer files: Han 2018 Table 1 per image type, pooled and per reader.

``synthetic`` is the positive class: sensitivity is the share of synthetic images called
synthetic, specificity the share of real images called real (Park et al. 2021 report both).
Accuracy near 0.5 means the readers could not tell real from synthetic. The p-value is an
exact two-sided binomial test of the correct answers against chance (0.5); for pooled rows it
treats every reader's answer as a trial, which overstates the evidence when readers agree.
Fleiss' kappa measures agreement between readers beyond chance on the same images (pooled
rows, two readers or more). With confidences (1..L), ``weighted_accuracy`` weights each answer
by its confidence, and ``rating_auc`` is the ROC AUC of the rating +c (synthetic) / -c (real)
for synthetic against real images - 0.5 is chance, as for accuracy. With a ``readers.tsv``
(reader -> group) in the answer folder, pooled rows are added per group (Park et al. 2021
compare readers by experience); ``group`` is ``all`` for rows pooled over every reader.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medgan.errors import InputError
from medgan.studies.vtt.answers import read_answers, read_reader_groups
from medgan.tables import read_table

POOLED = "pooled"
ALL_GROUPS = "all"
ALL_TYPES = "all"
SOURCE = "visual_turing_test"
COUNTS = ["real_as_real", "real_as_synthetic", "synthetic_as_real", "synthetic_as_synthetic"]
TABLE1_COLUMNS = [
    "model",
    "image_type",
    "round",
    "reader",
    "group",
    "n_readers",
    "source",
    *COUNTS,
    "accuracy",
]


def confusion(frame: pd.DataFrame) -> dict[str, int]:
    """Han's four counts of answers (``truth``, ``answer`` columns)."""
    t, a = frame["truth"], frame["answer"]
    return {
        f"{x}_as_{y}": int(((t == x) & (a == y)).sum())
        for x in ("real", "synthetic")
        for y in ("real", "synthetic")
    }


def binomial_p(correct: int, n: int) -> float:
    """Exact two-sided binomial p-value of ``correct`` of ``n`` against 0.5."""
    from scipy.stats import binomtest

    return float(binomtest(int(correct), int(n), 0.5).pvalue) if n else float("nan")


def fleiss_kappa(ratings: np.ndarray) -> float:
    """Fleiss' kappa of (items, categories) counts, every item rated by the same number of
    raters (>= 2); NaN when undefined (one rater, or every answer in one category)."""
    ratings = np.asarray(ratings, dtype=np.float64)
    n = ratings.sum(axis=1)
    if len(ratings) == 0 or n[0] < 2 or not np.all(n == n[0]):
        return float("nan")
    n = n[0]
    p_item = ((ratings**2).sum(axis=1) - n) / (n * (n - 1))
    p_cat = ratings.sum(axis=0) / ratings.sum()
    p_e = float((p_cat**2).sum())
    if p_e >= 1.0:
        return float("nan")
    return float((p_item.mean() - p_e) / (1.0 - p_e))


def _kappa(frame: pd.DataFrame) -> float:
    synth = (frame["answer"] == "synthetic").groupby(frame["item"]).agg(["sum", "count"])
    return fleiss_kappa(np.stack([synth["sum"], synth["count"] - synth["sum"]], axis=1))


def _rating_auc(frame: pd.DataFrame) -> float:
    from scipy.stats import rankdata

    rating = np.where(frame["answer"] == "synthetic", 1.0, -1.0) * frame["confidence"].to_numpy(
        dtype=np.float64
    )
    pos = (frame["truth"] == "synthetic").to_numpy()
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if not n_pos or not n_neg:
        return float("nan")
    ranks = rankdata(rating)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _stats_row(frame: pd.DataFrame, *, pooled: bool) -> dict[str, Any]:
    c = confusion(frame)
    n = len(frame)
    correct = c["real_as_real"] + c["synthetic_as_synthetic"]
    n_syn = c["synthetic_as_real"] + c["synthetic_as_synthetic"]
    n_real = c["real_as_real"] + c["real_as_synthetic"]
    row: dict[str, Any] = {
        **c,
        "accuracy": correct / n if n else float("nan"),
        "n_answers": n,
        "sensitivity": c["synthetic_as_synthetic"] / n_syn if n_syn else float("nan"),
        "specificity": c["real_as_real"] / n_real if n_real else float("nan"),
        "p_value": binomial_p(correct, n),
        "fleiss_kappa": _kappa(frame) if pooled else float("nan"),
    }
    if frame["confidence"].notna().all() and n:
        conf = frame["confidence"].to_numpy(dtype=np.float64)
        ok = (frame["truth"] == frame["answer"]).to_numpy()
        row.update(
            {
                "weighted_accuracy": float((conf * ok).sum() / conf.sum()),
                "mean_confidence_correct": float(conf[ok].mean()) if ok.any() else float("nan"),
                "mean_confidence_wrong": float(conf[~ok].mean()) if (~ok).any() else float("nan"),
                "rating_auc": _rating_auc(frame),
            }
        )
    return row


def score_table(
    merged: pd.DataFrame, models: list[str], groups: dict[str, str] | None = None
) -> pd.DataFrame:
    """One row per round, model (and ``all``), and reader (and ``pooled``, over every reader
    and, with ``groups`` (reader -> group), over each group's readers): counts, accuracy,
    sensitivity, specificity, p-value, kappa and confidence results."""
    readers = sorted(merged["reader"].unique())
    groups = groups or {}
    pools = [(ALL_GROUPS, readers)]
    pools += [(g, [r for r in readers if groups[r] == g]) for g in sorted(set(groups.values()))]
    rows = []
    for rnd in sorted(merged["round"].unique()):
        in_round = merged[merged["round"] == rnd]
        blocks = [(m, in_round[in_round["model"] == m]) for m in models]
        blocks.append((ALL_TYPES, in_round))
        for model, frame in blocks:
            kind = frame["image_type"].iloc[0] if model != ALL_TYPES else ALL_TYPES
            base = {"model": model, "image_type": kind, "round": int(rnd), "source": SOURCE}
            for group, members in pools:
                if members:
                    part = frame[frame["reader"].isin(members)]
                    rows.append(
                        {
                            **base,
                            "reader": POOLED,
                            "group": group,
                            "n_readers": len(members),
                            **_stats_row(part, pooled=True),
                        }
                    )
            for r in readers:
                part = frame[frame["reader"] == r]
                rows.append(
                    {
                        **base,
                        "reader": r,
                        "group": groups.get(r, ""),
                        "n_readers": 1,
                        **_stats_row(part, pooled=False),
                    }
                )
    return pd.DataFrame(rows)


def _load_kit(key_path: Path, record_path: Path) -> tuple[dict[str, Any], pd.DataFrame]:
    try:
        record = json.loads(Path(record_path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(record_path, f"cannot read the kit record ({err})") from err
    key = read_table(key_path, "the answer key", dtype={"item": str}, keep_default_na=False)
    missing = {"item", "truth", "model", "image_type"} - set(key.columns)
    if missing:
        raise InputError(key_path, f"missing column(s) {sorted(missing)}")
    if len(key) != record.get("n_items"):
        raise InputError(
            key_path,
            f"has {len(key)} items but {record_path} says "
            f"{record.get('n_items')} (key and record of different kits)",
        )
    return record, key


def plot_scores(table: pd.DataFrame, path: str | os.PathLike, *, title: str = "") -> None:
    """Accuracy per model (bars: pooled, dots: readers), one panel per round; chance at 0.5."""
    from medgan.plotting import _pyplot, save_figure

    plt = _pyplot()
    rounds = sorted(table["round"].unique())
    models = list(dict.fromkeys(table["model"]))
    fig, axes = plt.subplots(
        1,
        len(rounds),
        squeeze=False,
        figsize=(max(4.0, 0.55 * len(models) + 1.5) * len(rounds), 3.4),
    )
    for ax, rnd in zip(axes[0], rounds, strict=True):
        t = table[table["round"] == rnd]
        pooled = t[(t["reader"] == POOLED) & (t["group"] == ALL_GROUPS)]
        pooled = pooled.set_index("model").loc[models]
        x = np.arange(len(models))
        ax.bar(x, pooled["accuracy"], color="#8ab", label="pooled")
        for i, m in enumerate(models):
            acc = t[(t["model"] == m) & (t["reader"] != POOLED)]["accuracy"]
            ax.plot(np.full(len(acc), i), acc, "k.", ms=5)
        ax.axhline(0.5, ls="--", c="r", lw=1, label="chance")
        ax.set_xticks(
            x,
            [f"{m}\n{k}" for m, k in zip(models, pooled["image_type"], strict=True)],
            rotation=60,
            ha="right",
            fontsize=7,
        )
        ax.set_ylim(0, 1)
        ax.set_ylabel("accuracy")
        ax.set_title(f"{title} round {rnd}".strip(), fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


def score_answers(
    *,
    answers_dir: str | os.PathLike,
    key_path: str | os.PathLike,
    record_path: str | os.PathLike,
    table1_path: str | os.PathLike,
    scores_path: str | os.PathLike,
    readers_path: str | os.PathLike,
    figure_path: str | os.PathLike,
) -> pd.DataFrame:
    """The workflow's ``vtt_score``: check every answer file, then write Table 1 (Han's
    counts and accuracy, with a ``source`` column to sit beside the C2ST rows), the full
    statistics, the list of readers and files, and the figure. Nothing is written unless every
    file is valid."""
    from medgan.atomic import write_tsv

    record, key = _load_kit(Path(key_path), Path(record_path))
    answers = read_answers(
        answers_dir,
        kit_id=record["kit_id"],
        items=key["item"].tolist(),
        rounds=record["rounds"],
        levels=record["confidence_levels"],
    )
    merged = answers.merge(key[["item", "truth", "model", "image_type"]], on="item")
    models = record.get("models") or list(dict.fromkeys(key["model"]))
    groups = read_reader_groups(answers_dir, readers=sorted(answers["reader"].unique()))
    table = score_table(merged, models, groups)
    readers = answers.groupby(["reader", "file"]).size().rename("n_answers").reset_index()
    readers["group"] = [(groups or {}).get(r, "") for r in readers["reader"]]
    write_tsv(scores_path, table, float_format="%.6g")
    write_tsv(table1_path, table[TABLE1_COLUMNS], float_format="%.6g")
    write_tsv(readers_path, readers)
    plot_scores(table, figure_path, title=record.get("name", ""))
    return table
