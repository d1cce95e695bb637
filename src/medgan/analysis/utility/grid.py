"""The comparison grid: training sets x real-data fractions x seeds, and its summary.

:func:`run_grid` trains one task network per cell and scores it on the held-out real images.
Training sets, for each real fraction ``f`` (the share of the training *patients*, a seeded
subset that is nested: the 10 % patients are among the 25 %):

* ``real``: the real images of the subset;
* ``augmented``: the same with classic augmentation (flips, small rotations, intensity);
* ``real+<source>`` at each ``ratio`` r: the real images plus r times as many from a synthetic
  source (the GAN, ``gan``; or a control);
* ``<source> only`` (train on synthetic, test on real): ``synthetic_only_ratio`` times as many
  synthetic images as the whole real training split, no real image; reported at fraction 0
  and compared with ``real`` at fraction 1 (Kovalev & Kazlouski 2019's question).

Class-conditional sources get class labels drawn from the real subset's class frequencies.
One seed ``s`` fixes, for every training set alike, the patient subsets, the task network's
initial weights and batches, and the synthetic draws, so that the comparison with ``real`` is
paired by seed. :func:`summarise` gives per cell the mean over seeds with a Student-t interval,
and the paired difference to ``real`` (mean, interval, paired t-test p) with a ``verdict``:
``helps`` when the whole interval of the difference is above 0, ``harms`` when below,
``none`` when every seed gave the same result as ``real``, else ``unclear``. With 3 seeds the
t quantile is 4.3: only consistent effects get a verdict.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from medgan.analysis.utility.fit import fit_task_net, score_task
from medgan.analysis.utility.tasks import CLASSIFICATION, Task, TaskData

log = logging.getLogger(__name__)

REAL, AUGMENTED, ONLY = "real", "augmented", "only"
RUN_COLUMNS = ["task", "training_set", "source", "ratio", "real_fraction", "seed", "n_groups",
               "n_real", "n_synthetic"]


@dataclass
class GridSettings:
    """The grid of :func:`run_grid` (the ``analysis.utility`` config section)."""

    fractions: list[float] = field(default_factory=lambda: [0.1, 0.25, 1.0])
    ratios: list[float] = field(default_factory=lambda: [1.0, 4.0])
    n_seeds: int = 3
    seed: int = 0
    training_sets: list[str] = field(default_factory=lambda: [
        "real", "augmented", "real_synthetic", "synthetic_only"])
    synthetic_only_ratio: float = 1.0
    fit: dict[str, Any] = field(default_factory=dict)
    augment: dict[str, Any] = field(default_factory=dict)
    confidence: float = 0.95


def patient_subsets(groups: np.ndarray, fractions: list[float], *, seed: int,
                    labels: np.ndarray | None = None, tries: int = 100) -> dict[float, np.ndarray]:
    """Image indices of nested seeded patient subsets, one per fraction (at least one patient);
    with ``labels`` (classification), resampled until the smallest holds every class of
    ``labels``."""
    names = np.unique(groups)
    rng = np.random.default_rng(seed)
    want = None if labels is None else set(np.unique(labels).tolist())
    for _ in range(tries):
        order = names[rng.permutation(len(names))]
        out = {}
        for f in fractions:
            k = min(len(names), max(1, round(f * len(names))))
            out[f] = np.flatnonzero(np.isin(groups, order[:k]))
        smallest = out[min(fractions)]
        if want is None or set(np.unique(labels[smallest]).tolist()) == want:
            return out
    raise ValueError(f"no subset of {min(fractions)} of the {len(names)} training patients "
                     f"holds every class in {tries} draws; raise the smallest fraction")


def _draw_labels(y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return y[rng.integers(len(y), size=n)]


def run_grid(task: Task, real: TaskData, test: TaskData, sources: list[Any], *,
             settings: GridSettings, n_classes: int = 2, device: str = "cpu",
             progress: bool | None = None) -> pd.DataFrame:
    """One row per trained task network: :data:`RUN_COLUMNS` and the task's metrics on
    ``test``. ``real``: the real training split; ``sources``: synthetic sources (see
    :mod:`medgan.analysis.utility.sources`)."""
    from tqdm import tqdm

    s = settings
    axes = (0, 2, 3)
    norm = (real.x.mean(axis=axes, dtype=np.float64),
            np.maximum(real.x.std(axis=axes, dtype=np.float64), 1e-6))
    cls = task.kind == CLASSIFICATION
    jobs = _jobs(s, sources)
    rows = []
    bar = tqdm(total=len(jobs) * s.n_seeds, desc=f"utility {task.name}", unit="net",
               disable=None if progress is None else not progress)
    for k in range(s.n_seeds):
        seed = s.seed + k
        subsets = patient_subsets(real.groups, sorted({*s.fractions, 1.0}), seed=seed,
                                  labels=real.y if cls else None)
        cache: dict[tuple[str, float], TaskData] = {}
        for name, source, ratio, fraction in jobs:
            idx = subsets[fraction or 1.0]
            part = real.take(idx) if fraction else TaskData(real.x[:0], real.y[:0])
            n_syn = 0
            if source is not None:
                n_base = len(idx) if fraction else len(real)
                n_syn = max(1, round(ratio * n_base))
                syn = _synthetic(cache, source, fraction, n_base, max(s.ratios + [ratio]),
                                 real.y[idx] if cls else None, seed)
                part = TaskData.concat([part, syn.take(np.arange(n_syn))])
            net = fit_task_net(task, part, norm=norm, seed=seed, n_classes=n_classes,
                               augment=s.augment if name == AUGMENTED else None,
                               device=device, **s.fit)
            scores = score_task(task, net, test, norm=norm, n_classes=n_classes, device=device)
            rows.append({"task": task.name, "training_set": name,
                         "source": "" if source is None else source.name, "ratio": ratio,
                         "real_fraction": fraction, "seed": seed,
                         "n_groups": len(np.unique(real.groups[idx])) if fraction else 0,
                         "n_real": len(part) - n_syn, "n_synthetic": n_syn, **scores})
            bar.update()
    bar.close()
    return pd.DataFrame(rows)


def _jobs(s: GridSettings, sources: list[Any]) -> list[tuple[str, Any, float, float]]:
    """(training set, source, ratio, real fraction) of every cell of one seed."""
    if "synthetic_only" in s.training_sets and 1.0 not in s.fractions:
        raise ValueError(f"synthetic_only is compared with real at fraction 1.0: fractions must "
                         f"include 1.0, got {s.fractions}")
    jobs = []
    for f in s.fractions:
        jobs.append((REAL, None, 0.0, f))
        if AUGMENTED in s.training_sets:
            jobs.append((AUGMENTED, None, 0.0, f))
        if "real_synthetic" in s.training_sets:
            jobs += [(f"real+{src.name}", src, float(r), f) for src in sources for r in s.ratios]
    if "synthetic_only" in s.training_sets:
        jobs += [(f"{src.name} {ONLY}", src, float(s.synthetic_only_ratio), 0.0)
                 for src in sources]
    return jobs


def _synthetic(cache: dict, source: Any, fraction: float, n_base: int, max_ratio: float,
               real_labels: np.ndarray | None, seed: int) -> TaskData:
    """The synthetic draw of one (source, fraction, seed), shared by its ratios (1x is the
    first part of 4x)."""
    key = (source.name, fraction)
    if key not in cache:
        n = max(1, round(max_ratio * n_base))
        rng = np.random.default_rng([seed, int(fraction * 1e6), 7])
        labels = None if real_labels is None else _draw_labels(real_labels, n, rng)
        cache[key] = source.draw(n, seed=int(rng.integers(2**31)), labels=labels)
    return cache[key]


def _interval(values: np.ndarray, confidence: float) -> tuple[float, float, float]:
    from scipy import stats

    values = values[np.isfinite(values)]
    if len(values) == 0:
        return math.nan, math.nan, math.nan
    mean = float(values.mean())
    if len(values) < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + confidence / 2, len(values) - 1)
                 * values.std(ddof=1) / math.sqrt(len(values)))
    return mean, mean - half, mean + half


def _paired(diff: np.ndarray, confidence: float) -> dict[str, Any]:
    from scipy import stats

    diff = diff[np.isfinite(diff)]
    mean, low, high = _interval(diff, confidence)
    if len(diff) >= 2 and np.ptp(diff) > 0:
        p = float(stats.ttest_1samp(diff, 0.0).pvalue)
    else:
        p = math.nan
    if len(diff) and not diff.any():
        verdict = "none"  # identical results: the source changed nothing
    elif not math.isfinite(low):
        verdict = "unclear"
    else:
        verdict = "helps" if low > 0 else "harms" if high < 0 else "unclear"
    return {"diff_vs_real": mean, "diff_ci_low": low, "diff_ci_high": high, "p_value": p,
            "verdict": verdict}


def summarise(runs: pd.DataFrame, metrics: list[str], *, confidence: float = 0.95
              ) -> pd.DataFrame:
    """Per (task, training set, ratio, fraction, metric): mean over seeds with its interval,
    and the difference to ``real`` paired by seed (see the module docstring)."""
    keys = ["task", "training_set", "source", "ratio", "real_fraction"]
    rows = []
    for key, cell in runs.groupby(keys, sort=False, dropna=False):
        base = dict(zip(keys, key, strict=True))
        ref_fraction = 1.0 if base["real_fraction"] == 0 else base["real_fraction"]
        ref = runs[(runs["task"] == base["task"]) & (runs["training_set"] == REAL)
                   & (runs["real_fraction"] == ref_fraction)].set_index("seed")
        for metric in metrics:
            if metric not in cell:
                continue
            values = cell[metric].to_numpy(np.float64)
            mean, low, high = _interval(values, confidence)
            row = {**base, "metric": metric, "n_seeds": int(np.isfinite(values).sum()),
                   "n_real": int(cell["n_real"].median()),
                   "n_synthetic": int(cell["n_synthetic"].median()),
                   "mean": mean, "ci_low": low, "ci_high": high}
            if base["training_set"] != REAL:
                paired = cell.set_index("seed")[metric] - ref[metric]
                row.update(_paired(paired.to_numpy(np.float64), confidence))
            rows.append(row)
    return pd.DataFrame(rows)
