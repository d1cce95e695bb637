"""Is a trained model healthy? One verdict per model from its metric row, the real-vs-real
baseline row and its training log.

:func:`judge_health` is pure: it compares the synthetic row of a model's metrics
(:mod:`medgan.analysis.evaluate`) with the baseline row (held-out real images scored against
the same training images, so every threshold is relative to what real images reach) and reads
the loss rows of ``stats.jsonl``. Verdicts:

* ``diverged``: a loss became non-finite, or exploded (the median absolute value of the last
  quarter of the log rows above ``loss_explode_factor`` x that of the first quarter, or of
  ``loss_explode_floor`` if larger);
* ``collapsed``: little diversity - MS-SSIM of synthetic pairs far above real pairs', or
  domain recall / coverage far below the baseline's (the synthetic set covers little of the
  real one; Kynkaanniemi 2019, Naeem 2020);
* ``memorised``: far more synthetic images lie closer to a training image than nearly every
  held-out real image does (:mod:`medgan.analysis.metrics.memorisation`; the "authenticity"
  idea of Alaa et al. 2022, "How faithful is your synthetic data?");
* ``not_learned``: far from real - domain precision (the share of synthetic images inside the
  real manifold) or Delplace's realism rho far below the baseline's (noise, checkerboards);
* ``learned``: no check failed and none was uncertain;
* ``uncertain``: no check failed, but the interval of at least one (``<metric>_lo``,
  ``<metric>_hi`` in the row) spans its threshold, or no check could be made; the reason says
  which.

The checks run in the order of :data:`RULES` (diversity before fidelity: a constant generator
is ``collapsed`` even when its one image is unrealistic, and noise - diverse and unrealistic -
is ``not_learned``); the first check that fails with its whole interval beyond the threshold
gives the verdict. A check whose metric or baseline is missing (the metric group was not
computed) is skipped. Thresholds: :data:`DEFAULT_THRESHOLDS`, the config's ``analysis.health``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medgan.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

VERDICTS = ("learned", "collapsed", "not_learned", "memorised", "diverged", "uncertain")

# Rationale of each default: see the schema (workflow/schemas/config.schema.yaml, analysis.health)
DEFAULT_THRESHOLDS: dict[str, float] = {
    "collapsed_msssim_gap": 0.5,
    "collapsed_recall_fraction": 0.25,
    "memorised_share_margin": 0.4,
    "not_learned_precision_fraction": 0.25,
    "not_learned_rho_fraction": 0.5,
    "loss_explode_factor": 100.0,
    "loss_explode_floor": 1.0,
}


@dataclass(frozen=True)
class HealthCheck:
    """One threshold test: ``metric`` of the model (with its interval ``lo``-``hi``) against
    ``threshold`` (from the baseline value ``baseline``); it fails when the value is on the
    ``fails_when`` side (``above`` or ``below``). ``outcome``: fail, pass or uncertain."""

    verdict: str
    metric: str
    value: float
    lo: float
    hi: float
    baseline: float
    threshold: float
    fails_when: str
    outcome: str

    def describe(self) -> str:
        interval = "" if self.lo == self.hi else f" [{self.lo:.3g}, {self.hi:.3g}]"
        return (f"{self.metric} {self.value:.3g}{interval} vs threshold {self.threshold:.3g} "
                f"(real {self.baseline:.3g})")


@dataclass(frozen=True)
class HealthVerdict:
    """A model's verdict (one of :data:`VERDICTS`), its reason in words, and the numbers used:
    ``numbers`` holds ``<metric>``, ``<metric>_threshold`` of every check made."""

    verdict: str
    reason: str
    numbers: Mapping[str, float] = field(default_factory=dict)
    checks: tuple[HealthCheck, ...] = ()


@dataclass(frozen=True)
class Rule:
    verdict: str
    metric: str
    fails_when: str
    threshold: Callable[[float, Mapping[str, float]], float]
    meaning: str


RULES: tuple[Rule, ...] = (
    Rule("collapsed", "msssim_mean", "above",
         lambda b, t: b + t["collapsed_msssim_gap"] * (1.0 - b),
         "synthetic pairs are far more alike than real pairs (MS-SSIM)"),
    Rule("memorised", "memo_share_closer", "above",
         lambda b, t: b + t["memorised_share_margin"],
         "synthetic images sit closer to training images than held-out real ones do"),
    Rule("not_learned", "domain_precision", "below",
         lambda b, t: t["not_learned_precision_fraction"] * b,
         "few synthetic images lie in the real images' feature manifold (precision)"),
    Rule("not_learned", "rho", "below", lambda b, t: t["not_learned_rho_fraction"] * b,
         "synthetic images lie outside the real images' PCA subspace (Delplace's rho)"),
    Rule("collapsed", "domain_recall", "below",
         lambda b, t: t["collapsed_recall_fraction"] * b,
         "the synthetic set covers little of the real manifold (recall)"),
    Rule("collapsed", "domain_coverage", "below",
         lambda b, t: t["collapsed_recall_fraction"] * b,
         "few real images have a synthetic neighbour (coverage)"),
)


def _number(row: Mapping[str, Any], key: str) -> float | None:
    try:
        value = float(row[key])
    except (KeyError, TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _check(rule: Rule, model: Mapping[str, Any], baseline: Mapping[str, Any],
           thresholds: Mapping[str, float]) -> HealthCheck | None:
    value, base = _number(model, rule.metric), _number(baseline, rule.metric)
    if value is None or base is None:
        return None
    lo = _number(model, f"{rule.metric}_lo")
    hi = _number(model, f"{rule.metric}_hi")
    lo = value if lo is None else min(lo, value)
    hi = value if hi is None else max(hi, value)
    thr = float(rule.threshold(base, thresholds))
    if rule.fails_when == "above":
        outcome = "fail" if lo > thr else "pass" if hi <= thr else "uncertain"
    else:
        outcome = "fail" if hi < thr else "pass" if lo >= thr else "uncertain"
    return HealthCheck(rule.verdict, rule.metric, value, lo, hi, base, thr, rule.fails_when,
                       outcome)


def loss_divergence(losses: Sequence[Mapping[str, Any]], *, factor: float,
                    floor: float) -> str | None:
    """Why the loss rows (``stats.jsonl``) show a divergence, or None: a non-finite value of a
    ``*loss*`` column, or one whose last quarter's median |value| exceeds ``factor`` x
    max(first quarter's median |value|, ``floor``) (needs at least 8 rows)."""
    keys = sorted({k for row in losses for k in row if "loss" in k})
    for key in keys:
        values = [row[key] for row in losses if isinstance(row.get(key), (int, float))]
        bad = [(row.get("step"), row[key]) for row in losses
               if isinstance(row.get(key), (int, float)) and not math.isfinite(row[key])]
        if bad:
            return f"{key} became {bad[0][1]} at step {bad[0][0]}"
        if len(values) >= 8:
            q = len(values) // 4
            head = sorted(abs(v) for v in values[:q])[q // 2]
            tail = sorted(abs(v) for v in values[-q:])[q // 2]
            limit = factor * max(head, floor)
            if tail > limit:
                return (f"|{key}| grew to {tail:.3g} in the last quarter of training (limit "
                        f"{limit:.3g}: {factor:g} x the first quarter's {head:.3g})")
    return None


def judge_health(model: Mapping[str, float], baseline: Mapping[str, float], *,
                 thresholds: Mapping[str, float] | None = None,
                 losses: Sequence[Mapping[str, Any]] | None = None) -> HealthVerdict:
    """The health verdict of a model from its metric row ``model``, the real-vs-real
    ``baseline`` row (the same metrics of held-out real images) and, if given, its loss rows
    ``losses`` (``stats.jsonl``). ``thresholds``: overrides of :data:`DEFAULT_THRESHOLDS`
    (unknown keys raise ``ValueError``). See the module docstring for the rules."""
    unknown = set(thresholds or {}) - set(DEFAULT_THRESHOLDS)
    if unknown:
        raise ValueError(f"unknown health threshold(s) {sorted(unknown)}; known: "
                         f"{sorted(DEFAULT_THRESHOLDS)}")
    t = {**DEFAULT_THRESHOLDS, **{k: float(v) for k, v in (thresholds or {}).items()}}
    if losses:
        why = loss_divergence(losses, factor=t["loss_explode_factor"],
                              floor=t["loss_explode_floor"])
        if why:
            return HealthVerdict("diverged", why)
    checks = tuple(c for c in (_check(r, model, baseline, t) for r in RULES) if c is not None)
    numbers = {k: v for c in checks for k, v in
               ((c.metric, c.value), (f"{c.metric}_threshold", c.threshold))}
    meaning = {(r.verdict, r.metric): r.meaning for r in RULES}
    for c in checks:
        if c.outcome == "fail":
            return HealthVerdict(c.verdict, f"{meaning[c.verdict, c.metric]}: {c.describe()}",
                                 numbers, checks)
    doubtful = [c for c in checks if c.outcome == "uncertain"]
    if doubtful:
        reason = "; ".join(f"{c.describe()}: its interval spans the {c.verdict} threshold"
                           for c in doubtful)
        return HealthVerdict("uncertain", reason, numbers, checks)
    if not checks:
        return HealthVerdict("uncertain", "no metric of the health checks was computed "
                             "(needs msssim, memorisation, domain or delplace metrics)")
    passed = ", ".join(c.metric for c in checks)
    c2st = _c2st_note(model)
    return HealthVerdict("learned", f"every check passed ({passed}){c2st}", numbers, checks)


def _c2st_note(model: Mapping[str, Any]) -> str:
    acc, lo = _number(model, "c2st_accuracy"), _number(model, "c2st_accuracy_lo")
    if acc is None:
        return ""
    if lo is not None and lo > 0.5:
        return f"; a classifier still tells them from real (C2ST accuracy {acc:.2f}, lower " \
               f"bound {lo:.2f} > 0.5)"
    return f"; a classifier does not tell them from real (C2ST accuracy {acc:.2f})"


# --- tables of a study (files) --------------------------------------------------------------------

HEALTH_COLUMNS = ["model", "health", "health_reason"]


def read_losses(path: str | os.PathLike | None) -> list[dict[str, Any]] | None:
    """The rows of a ``stats.jsonl`` (None when ``path`` is None or absent)."""
    if path is None or not Path(path).exists():
        return None
    from medgan.plotting import read_stats

    try:
        return read_stats(path)
    except (OSError, ValueError) as err:
        raise InputError(path, f"cannot read the training log ({err})") from err


def read_last_snapshot(path: str | os.PathLike | None) -> dict[str, Any] | None:
    """The last synthetic row of a ``snapshots.jsonl`` that carries a verdict (None when
    ``path`` is None, absent or has none)."""
    if path is None or not Path(path).exists():
        return None
    import json

    last = None
    try:
        for line in Path(path).read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                if row.get("source") == "synthetic" and row.get("health"):
                    last = row
    except (OSError, ValueError) as err:
        raise InputError(path, f"cannot read the snapshot log ({err})") from err
    return last


def snapshot_verdict(row: Mapping[str, Any]) -> HealthVerdict:
    """The verdict of a model judged by its last training snapshot ``row`` (see
    :mod:`medgan.analysis.snapshot_scorer`: the same rule on a fixed real subset)."""
    where = f"last training snapshot (step {row.get('step')}"
    if row.get("n_images") is not None:
        where += f", {row['n_images']} images against {row.get('n_reference')} real"
    return HealthVerdict(str(row["health"]), f"{where}): {row.get('health_reason', '')}",
                         {k: float(row[k]) for k in ("msssim_mean", "rho", "domain_precision",
                                                     "domain_recall", "domain_coverage")
                          if isinstance(row.get(k), (int, float))})


def study_health(metric_tables: Sequence[pd.DataFrame], stats_files: Mapping[str, Any], *,
                 thresholds: Mapping[str, float] | None = None,
                 snapshot_files: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """One row per model (``model``, ``health``, ``health_reason``, the numbers used): every
    model of the ``metric_tables`` (each a model's ``metrics.tsv``: its ``synthetic`` row
    judged against its own ``real_heldout`` row) and every model of ``stats_files``
    (model -> ``stats.jsonl``). A model without metrics is judged on its losses and, if they
    did not diverge, by its last training snapshot (``snapshot_files``: model ->
    ``snapshots.jsonl``): the same rule on the snapshot's fixed real subset."""
    import pandas as pd

    rows: dict[str, dict[str, Any]] = {}
    for table in metric_tables:
        base = table[table["source"] == "real_heldout"]
        for _, row in table[table["source"] == "synthetic"].iterrows():
            name = str(row["model"])
            losses = read_losses(stats_files.get(name))
            v = (judge_health(row.to_dict(), base.iloc[0].to_dict(), thresholds=thresholds,
                              losses=losses) if len(base) else
                 HealthVerdict("uncertain", "the metrics table has no real-vs-real row"))
            rows[name] = {"model": name, "health": v.verdict, "health_reason": v.reason,
                          **v.numbers}
    for name, path in stats_files.items():
        if name in rows:
            continue
        v = judge_health({}, {}, thresholds=thresholds, losses=read_losses(path))
        snapshot = read_last_snapshot((snapshot_files or {}).get(name))
        if v.verdict == "uncertain" and snapshot is not None:
            v = snapshot_verdict(snapshot)
        elif v.verdict == "uncertain":
            v = HealthVerdict("uncertain", "no metric suite for this model (its `analyses` "
                                           "lack `metrics`) and no training snapshot; its "
                                           "losses stayed finite")
        rows[name] = {"model": name, "health": v.verdict, "health_reason": v.reason,
                      **v.numbers}
    return pd.DataFrame(list(rows.values()), columns=None if rows else HEALTH_COLUMNS)


def format_health(tables: Mapping[str, pd.DataFrame]) -> str:
    """The health tables of studies (study -> ``health.tsv`` table) as text, one line per
    model; a model of several studies is listed once."""
    lines, seen = [], set()
    for study, table in tables.items():
        for _, row in table.iterrows():
            if row["model"] in seen:
                continue
            seen.add(row["model"])
            lines.append((str(row["model"]), study, str(row["health"]),
                          str(row["health_reason"])))
    if not lines:
        return "model health: no health table was written"
    w = [max(len(x[i]) for x in lines + [("model", "study", "health", "")]) for i in range(3)]
    out = ["model health (results/figures/<study>/health.tsv):",
           f"{'model':<{w[0]}}  {'study':<{w[1]}}  {'health':<{w[2]}}  reason"]
    out += [f"{m:<{w[0]}}  {s:<{w[1]}}  {h:<{w[2]}}  {r}" for m, s, h, r in lines]
    return "\n".join(out)


def print_health(paths: Sequence[str | os.PathLike]) -> None:
    """Print :func:`format_health` of the ``health.tsv`` files among ``paths`` that exist
    (study = the file's folder name); for the end of a workflow run."""
    import pandas as pd

    tables = {Path(p).parent.name: pd.read_csv(p, sep="\t") for p in paths if Path(p).exists()}
    print(format_health(tables), flush=True)
