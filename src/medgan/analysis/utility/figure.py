"""The utility figure: each task's main metric against the real-data fraction."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from medgan.plotting import _pyplot, save_figure


def _label(row: pd.Series) -> str:
    name = str(row["training_set"])
    return f"{name} {row['ratio']:g}x" if name.startswith("real+") else name


def plot_utility(summary: pd.DataFrame, main_metrics: dict[str, str], path: str | os.PathLike,
                 *, title: str = "") -> None:
    """One panel per task: the mean of its main metric over seeds with the interval, against
    the share of real training patients (log axis), one line per training set; the
    synthetic-only sets (no real image) as dashed horizontal lines."""
    plt = _pyplot()
    tasks = list(main_metrics)
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.8 * len(tasks), 3.8), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        rows = summary[(summary["task"] == task) & (summary["metric"] == main_metrics[task])]
        rows = rows.assign(label=rows.apply(_label, axis=1))
        fractions = sorted(rows.loc[rows["real_fraction"] > 0, "real_fraction"].unique())
        for i, (label, line) in enumerate(rows.groupby("label", sort=False)):
            color = f"C{i % 10}"
            line = line.sort_values("real_fraction")
            if (line["real_fraction"] == 0).all():
                mean = float(line["mean"].iloc[0])
                ax.axhline(mean, color=color, linestyle="--", label=label)
                continue
            err = np.vstack([line["mean"] - line["ci_low"], line["ci_high"] - line["mean"]])
            ax.errorbar(line["real_fraction"], line["mean"], yerr=np.nan_to_num(err),
                        marker="o", capsize=3, color=color, label=label)
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(fractions)
        ax.set_xticklabels([f"{f:g}" for f in fractions])
        ax.set_xlabel("share of real training patients")
        ax.set_ylabel(main_metrics[task])
        ax.set_title(f"{title}: {task}" if title else task, fontsize=10)
        ax.set_ylim(-0.02, 1.02)  # every metric is in [0, 1]; intervals may reach beyond
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    save_figure(fig, path)
