"""A membership-inference audit: balanced member / non-member sets by patient, every attack of
:mod:`~medgan.analysis.privacy.attacks` on them, and the split-bias control.

Sets (all drawn with one seed):

* **primary**: members are images of training patients, non-members images of held-out
  patients. As many patients are drawn from each side (the smaller side's count, at most
  ``max_patients``), then the side with more images is subsampled to the other's count (at most
  ``max_images``), so both AUC levels compare equal numbers.
* **control** (split bias): the training patients are split into two seeded halves, and the
  same attacks tell one half ("members") from the other ("non-members"). Both are members, so
  an attack that scores well here learns a difference between groups of patients rather than
  membership; the verdict rests on the primary AUC's difference to this one.
* **reference**: the held-out images (at most ``max_reference``, seeded) - the attacker's
  sample of the population for the calibrated and density-ratio attacks; a query's own
  patient is left out of it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from medgan.analysis.privacy import attacks
from medgan.analysis.privacy.roc import SUMMARY_FPRS, difference_interval, score_attack, verdict

log = logging.getLogger(__name__)

ATTACKS = ("gan_leaks", "gan_leaks_calibrated", "domias", "logan")
DEFAULTS: dict[str, Any] = {"attacks": list(ATTACKS), "max_patients": 200, "max_images": 2000,
                            "max_reference": 2000, "domias_components": 8, "n_bootstrap": 500,
                            "confidence": 0.95, "seed": 0, "min_patients": 10}


@dataclass
class AuditData:
    """What an audit reads: real images split by patient, the model's synthetic images, and
    (optional) a feature map for DOMIAS and the discriminator for LOGAN."""

    train: np.ndarray
    train_groups: np.ndarray
    heldout: np.ndarray
    heldout_groups: np.ndarray
    synthetic: np.ndarray
    features: Callable[[np.ndarray], np.ndarray] | None = None
    discriminator: Callable[[np.ndarray, np.ndarray | None], np.ndarray] | None = None
    train_labels: np.ndarray | None = None  # class of each image (class-conditional D)
    heldout_labels: np.ndarray | None = None


def _draw_patients(groups: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    names = np.unique(groups)
    return np.sort(names[rng.permutation(len(names))[:n]])


def _balanced(a_groups: np.ndarray, b_groups: np.ndarray, *, max_patients: int,
              max_images: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices into a and b: as many patients each, then as many images each."""
    n = min(len(np.unique(a_groups)), len(np.unique(b_groups)), max_patients)
    if n < 1:
        raise ValueError("an audit needs at least 1 patient a side")
    a = np.flatnonzero(np.isin(a_groups, _draw_patients(a_groups, n, rng)))
    b = np.flatnonzero(np.isin(b_groups, _draw_patients(b_groups, n, rng)))
    m = min(len(a), len(b), max_images)
    return (np.sort(rng.choice(a, m, replace=False)), np.sort(rng.choice(b, m, replace=False)))


def membership_sets(train_groups: np.ndarray, heldout_groups: np.ndarray, *,
                    settings: dict[str, Any]) -> dict[str, Any]:
    """Index sets of the audit: ``primary`` (train idx, heldout idx), ``control`` (train idx,
    train idx of the other half) and ``reference`` (heldout idx)."""
    s = {**DEFAULTS, **settings}
    train_groups = np.asarray(train_groups).astype(str)
    heldout_groups = np.asarray(heldout_groups).astype(str)
    rng = np.random.default_rng([int(s["seed"]), 191])
    primary = _balanced(train_groups, heldout_groups, max_patients=s["max_patients"],
                        max_images=s["max_images"], rng=rng)
    names = np.unique(train_groups)
    if len(names) < 2:
        raise ValueError(f"the split-bias control needs at least 2 training patients, got "
                         f"{len(names)}")
    half = names[rng.permutation(len(names))[: len(names) // 2]]
    in_a = np.isin(train_groups, half)
    idx_a, idx_b = np.flatnonzero(in_a), np.flatnonzero(~in_a)
    ca, cb = _balanced(train_groups[idx_a], train_groups[idx_b], max_patients=s["max_patients"],
                       max_images=s["max_images"], rng=rng)
    ref = np.arange(len(heldout_groups))
    if len(ref) > s["max_reference"]:
        ref = np.sort(rng.choice(ref, s["max_reference"], replace=False))
    return {"primary": primary, "control": (idx_a[ca], idx_b[cb]), "reference": ref}


def _queries(data: AuditData, sets: dict[str, Any]) -> pd.DataFrame:
    """One row per query image: set, member flag, source split, index, patient."""
    rows = []
    for name, (pos, neg), neg_split in (("primary", sets["primary"], "heldout"),
                                        ("control", sets["control"], "train")):
        for flag, idx, split in ((True, pos, "train"), (False, neg, neg_split)):
            groups = data.train_groups if split == "train" else data.heldout_groups
            rows.append(pd.DataFrame({"set": name, "member": flag, "split": split,
                                      "index": idx, "patient": np.asarray(groups)[idx]}))
    return pd.concat(rows, ignore_index=True)


def _query_arrays(data: AuditData, q: pd.DataFrame, which: str) -> np.ndarray:
    arr = {"train": getattr(data, which.replace("X", "train")),
           "heldout": getattr(data, which.replace("X", "heldout"))}
    parts = [np.asarray(arr[s][i]) for s, i in zip(q["split"], q["index"], strict=True)]
    return np.stack(parts) if parts else np.empty((0,))


def attack_scores(data: AuditData, sets: dict[str, Any], settings: dict[str, Any]
                  ) -> tuple[pd.DataFrame, dict[str, str]]:
    """Every query's score under every attack that can run (columns named by attack) and
    why any attack did not (``{attack: reason}``)."""
    s = {**DEFAULTS, **settings}
    q = _queries(data, sets)
    images = _query_arrays(data, q, "X")
    ref_idx = sets["reference"]
    reference = data.heldout[ref_idx]
    exclude = attacks.same_patient(q["patient"].to_numpy(),
                                   np.asarray(data.heldout_groups)[ref_idx])
    skipped: dict[str, str] = {}
    for name in s["attacks"]:
        if name not in ATTACKS:
            raise ValueError(f"unknown privacy attack {name!r}; known: {list(ATTACKS)}")
        if name == "gan_leaks":
            q[name] = attacks.gan_leaks(images, data.synthetic)
        elif name == "gan_leaks_calibrated":
            q[name] = attacks.gan_leaks_calibrated(images, data.synthetic, reference,
                                                   exclude=exclude)
        elif name == "domias":
            feat = data.features or (lambda x: np.asarray(x, np.float64).reshape(len(x), -1))
            q[name] = attacks.domias(feat(images), feat(data.synthetic), feat(reference),
                                     components=s["domias_components"], exclude=exclude)
        elif data.discriminator is None:
            skipped[name] = "the checkpoint holds no usable discriminator"
        else:
            labels = None
            if data.train_labels is not None and data.heldout_labels is not None:
                labels = _query_arrays(data, q, "X_labels")
            q[name] = data.discriminator(images, labels)
        log.info("attack %s: %s", name, skipped.get(name, "scored"))
    return q, skipped


def summarise(q: pd.DataFrame, attack_names: list[str], settings: dict[str, Any]
              ) -> pd.DataFrame:
    """One row per attack, set (primary, control) and level (image, patient); the primary
    rows carry the difference to the control, its interval and the verdict."""
    s = {**DEFAULTS, **settings}
    rows = []
    for name in attack_names:
        scored = {}
        for set_name in ("primary", "control"):
            sub = q[q["set"] == set_name]
            scored[set_name] = score_attack(
                sub[name].to_numpy(), sub["member"].to_numpy(), sub["patient"].to_numpy(),
                n_bootstrap=s["n_bootstrap"], confidence=s["confidence"], seed=s["seed"],
                fprs=SUMMARY_FPRS)
        for level in ("image", "patient"):
            p, c = scored["primary"][level], scored["control"][level]
            low, high = difference_interval(p["auc_boot"], c["auc_boot"],
                                            confidence=s["confidence"])
            for set_name, r in (("primary", p), ("control", c)):
                row = {"attack": name, "set": set_name, "level": level,
                       **{k: v for k, v in r.items() if k != "auc_boot"}}
                if set_name == "primary":
                    row.update({"auc_minus_control": p["auc"] - c["auc"],
                                "diff_low": low, "diff_high": high,
                                "verdict": verdict(p["auc_low"], low)})
                rows.append(row)
    return pd.DataFrame(rows)


def headline_level(summary: pd.DataFrame, min_patients: int) -> str:
    """``patient`` when the primary set has at least ``min_patients`` patients a side, else
    ``image`` (a patient-level AUC of a handful of patients says little)."""
    rows = summary[(summary["set"] == "primary") & (summary["level"] == "patient")]
    if len(rows) and int(rows["n_nonmembers"].min()) >= min_patients:
        return "patient"
    return "image"


def run_audit(data: AuditData, settings: dict[str, Any] | None = None
              ) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """(summary, per-query scores, info: sets' sizes, skipped attacks, headline level)."""
    settings = {**DEFAULTS, **(settings or {})}
    sets = membership_sets(data.train_groups, data.heldout_groups, settings=settings)
    q, skipped = attack_scores(data, sets, settings)
    names = [a for a in settings["attacks"] if a in q.columns]
    summary = summarise(q, names, settings)
    info = {"skipped": skipped, "attacks": names,
            "headline_level": headline_level(summary, int(settings["min_patients"])),
            "n_reference": int(len(sets["reference"])), "n_synthetic": int(len(data.synthetic))}
    return summary, q, info
