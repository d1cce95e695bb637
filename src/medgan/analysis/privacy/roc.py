"""Scoring a membership-inference attack: ROC AUC with a patient bootstrap interval, TPR at a
low FPR, per image and per patient, and the verdict against the split-bias control.

Scores are "higher = more likely a member". The interval is a stratified cluster bootstrap
over patients: every replicate draws the member patients and the non-member patients with
replacement (each side separately, so both stay balanced) and takes every image of a drawn
patient as often as the patient was drawn; images of one patient are not independent (adjacent
slices, lesions of one prostate), so resampling images would give too narrow an interval. The
AUC of every replicate is computed at once from bootstrap weights (:func:`weighted_auc`).

TPR at FPR f (Carlini et al. 2022, "Membership inference attacks from first principles"): the
share of members scored above a threshold that at most a share f of the non-members exceed.
With n non-members the smallest FPR the data resolve is 1/n: below that the threshold must lie
above every non-member (``fpr_resolution`` in the table says which).
"""

from __future__ import annotations

from typing import Any

import numpy as np

SUMMARY_FPRS = (0.01, 0.001)  # the low FPRs an audit's table reports the TPR at


def weighted_auc(scores: np.ndarray, member: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC AUC (ties count 1/2) of ``scores`` (n,) with ``member`` (n,) bool, under each row
    of ``weights`` (B, n) (a bootstrap's multiplicities; a row of ones is the plain AUC).
    Returns (B,); NaN where a row has no member or no non-member weight."""
    scores = np.asarray(scores, dtype=np.float64)
    member = np.asarray(member, dtype=bool)
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    _, inverse = np.unique(scores, return_inverse=True)
    k = inverse.max() + 1 if len(inverse) else 0
    onehot = np.zeros((len(scores), k))
    onehot[np.arange(len(scores)), inverse] = 1.0
    wm = (weights * member) @ onehot  # (B, K) member weight at each distinct score
    wn = (weights * ~member) @ onehot
    below = np.cumsum(wn, axis=1) - wn  # non-member weight strictly below each score
    num = (wm * (below + 0.5 * wn)).sum(axis=1)
    den = wm.sum(axis=1) * wn.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def roc_curve(scores: np.ndarray, member: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) at every threshold, from (0, 0) to (1, 1), ties as one step."""
    scores = np.asarray(scores, dtype=np.float64)
    member = np.asarray(member, dtype=bool)
    order = np.argsort(-scores, kind="stable")
    s, m = scores[order], member[order]
    last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]  # last index of each tie block
    tp, fp = np.cumsum(m)[last], np.cumsum(~m)[last]
    n_pos, n_neg = max(int(m.sum()), 1), max(int((~m).sum()), 1)
    return np.r_[0.0, fp / n_neg], np.r_[0.0, tp / n_pos]


def tpr_at_fpr(scores: np.ndarray, member: np.ndarray, fpr: float) -> float:
    """The largest TPR of a threshold whose FPR is at most ``fpr``."""
    f, t = roc_curve(scores, member)
    return float(t[f <= fpr + 1e-12].max())


def patient_scores(scores: np.ndarray, groups: np.ndarray, member: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per patient: (names, mean score of the patient's images, member)."""
    groups = np.asarray(groups).astype(str)
    names, inverse = np.unique(groups, return_inverse=True)
    total = np.bincount(inverse, weights=np.asarray(scores, dtype=np.float64))
    count = np.bincount(inverse)
    is_member = np.zeros(len(names), dtype=bool)
    is_member[inverse] = np.asarray(member, dtype=bool)
    return names, total / count, is_member


def _bootstrap_weights(groups: np.ndarray, member: np.ndarray, n_boot: int,
                       rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n) image weights: each side's patients drawn with replacement."""
    names, inverse = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    side = np.zeros(len(names), dtype=bool)
    side[inverse] = member
    counts = np.zeros((n_boot, len(names)))
    for flag in (True, False):
        idx = np.flatnonzero(side == flag)
        if len(idx):
            draws = rng.integers(0, len(idx), size=(n_boot, len(idx)))
            np.add.at(counts, (np.arange(n_boot)[:, None], idx[draws]), 1.0)
    return counts[:, inverse]


def score_attack(scores: np.ndarray, member: np.ndarray, groups: np.ndarray, *,
                 n_bootstrap: int = 500, confidence: float = 0.95, seed: int = 0,
                 fprs: tuple[float, ...] = (0.01, 0.001)) -> dict[str, dict[str, Any]]:
    """The image-level and patient-level scores of one attack on one member/non-member set:
    ``{"image": {...}, "patient": {...}}`` with ``auc``, ``auc_low``, ``auc_high`` (the
    ``confidence`` interval of the patient bootstrap), ``tpr_at_<f>`` per FPR, ``n_members``,
    ``n_nonmembers``, ``fpr_resolution`` (1 / n_nonmembers) and ``auc_boot`` (the replicates,
    for differences between sets)."""
    scores = np.asarray(scores, dtype=np.float64)
    member = np.asarray(member, dtype=bool)
    groups = np.asarray(groups).astype(str)
    if not np.isfinite(scores).all():
        raise ValueError("attack scores hold NaN or inf values")
    rng = np.random.default_rng([seed, 19])
    weights = _bootstrap_weights(groups, member, n_bootstrap, rng)
    names, p_scores, p_member = patient_scores(scores, groups, member)
    # the patient-level replicates reuse the image replicates' patient draws
    _, inverse = np.unique(groups, return_inverse=True)
    first = np.zeros(len(names), dtype=int)
    first[inverse[::-1]] = np.arange(len(groups))[::-1]
    counts = weights[:, first]
    out = {}
    alpha = (1 - confidence) / 2
    for level, (s, m, w) in {"image": (scores, member, weights),
                             "patient": (p_scores, p_member, counts)}.items():
        boot = weighted_auc(s, m, w)
        row = {"auc": float(weighted_auc(s, m, np.ones((1, len(s))))[0]),
               "auc_low": float(np.nanquantile(boot, alpha)),
               "auc_high": float(np.nanquantile(boot, 1 - alpha)),
               "n_members": int(m.sum()), "n_nonmembers": int((~m).sum()),
               "fpr_resolution": 1.0 / max(int((~m).sum()), 1), "auc_boot": boot}
        for f in fprs:
            row[f"tpr_at_{f:g}"] = tpr_at_fpr(s, m, f)
        out[level] = row
    return out


def difference_interval(primary: np.ndarray, control: np.ndarray, *,
                        confidence: float = 0.95) -> tuple[float, float]:
    """Interval of AUC(primary) - AUC(control) from independent bootstrap replicates."""
    diff = np.asarray(primary) - np.asarray(control)
    alpha = (1 - confidence) / 2
    return float(np.nanquantile(diff, alpha)), float(np.nanquantile(diff, 1 - alpha))


VERDICTS = ("leak", "split bias?", "no evidence")


def verdict(auc_low: float, diff_low: float) -> str:
    """``leak``: the primary AUC's interval lies above 0.5 and so does its difference to the
    split-bias control's; ``split bias?``: above 0.5, but the members-only control scores as
    high (the attack may tell the patient groups apart, not members); else ``no evidence``."""
    if auc_low > 0.5:
        return "leak" if diff_low > 0 else "split bias?"
    return "no evidence"
