"""The ROC figure of a privacy audit: one panel per level (image, patient), one colour per
attack, the primary attack solid and its split-bias control dashed, on log-log axes (Carlini et
al. 2022: what matters is the TPR at low FPR), with the chance diagonal."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from medgan.analysis.privacy.roc import patient_scores, roc_curve, weighted_auc
from medgan.plotting import _pyplot, save_figure


def _curves(sub: pd.DataFrame, attack: str, level: str):
    s, m = sub[attack].to_numpy(), sub["member"].to_numpy()
    if level == "patient":
        _, s, m = patient_scores(s, sub["patient"].to_numpy(), m)
    fpr, tpr = roc_curve(s, m)
    auc = float(weighted_auc(s, m, np.ones((1, len(s))))[0])
    return fpr, tpr, auc, max(int((~m.astype(bool)).sum()), 1)


def plot_roc(scores: pd.DataFrame, attacks: list[str], path: str | os.PathLike, *,
             title: str = "") -> None:
    """ROC curves of ``scores`` (:func:`~medgan.analysis.privacy.audit.attack_scores`);
    written atomically."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, level in zip(axes, ("image", "patient"), strict=True):
        floor = 1.0
        for i, attack in enumerate(attacks):
            for set_name, style in (("primary", "-"), ("control", "--")):
                sub = scores[scores["set"] == set_name]
                fpr, tpr, auc, n_neg = _curves(sub, attack, level)
                floor = min(floor, 1.0 / n_neg)
                label = f"{attack} AUC {auc:.2f}" if set_name == "primary" else \
                    f"  control {auc:.2f}"
                ax.step(np.maximum(fpr, 0.5 / n_neg), np.maximum(tpr, 0.5 / n_neg), where="post",
                        ls=style, color=colours[i % len(colours)], lw=1.2, label=label)
        lim = 0.5 * floor
        ax.plot([lim, 1], [lim, 1], color="0.6", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lim, 1.02)
        ax.set_ylim(lim, 1.02)
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        n = int((scores[(scores["set"] == "primary")]["member"]).sum()) if level == "image" \
            else scores[(scores["set"] == "primary") & scores["member"]]["patient"].nunique()
        ax.set_title(f"per {level} ({n} members, {n} non-members)", fontsize=9)
        ax.legend(fontsize=6, loc="lower right")
    fig.suptitle(f"{title}: membership inference (dashed: split-bias control)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
