"""The metric suite: a registry of metric functions, each taking a :class:`MetricInputs` and
returning a flat dict of numbers (stylegan2-ada-pytorch's metric registry is the model).

Every metric compares a *candidate* set (synthetic images, or held-out real images for the
real-vs-real baseline) with the *reference* set (the real training images of the model):

* ``delplace``: Delplace 2019 realism rho (PCA of the reference) and diversity sigma, delta of the
  candidate (:mod:`medgan.analysis.metrics.delplace`);
* ``swd``: sliced Wasserstein distance on Laplacian-pyramid patches (Karras 2018;
  :mod:`medgan.analysis.metrics.swd`);
* ``msssim``: MS-SSIM of random candidate pairs, a diversity score (higher = less diverse;
  :mod:`medgan.analysis.metrics.msssim`);
* ``domain``: FID, KID, precision/recall and density/coverage on the features of the dataset's
  own feature network (:mod:`medgan.analysis.metrics.featurenet`,
  :mod:`medgan.analysis.metrics.distribution`) -
  *domain* metrics, not comparable with published Inception FIDs;
* ``inception``: standard FID with a user-given local Inception TorchScript file
  (:mod:`medgan.analysis.metrics.inception`);
* ``c2st``: classifier two-sample test, Han 2018's Table 1 counts and a p-value
  (:mod:`medgan.analysis.metrics.c2st`);
* ``memorisation``: nearest-training-image distances of the candidates against those of the
  held-out real images (:mod:`medgan.analysis.metrics.memorisation`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class MetricInputs:
    """What every metric may use. Images are float32 (N, C, H, W) in the dataset's units."""

    reference: np.ndarray
    candidate: np.ndarray
    heldout: np.ndarray
    channel_names: list[str]
    data_range: float
    settings: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    reference_groups: np.ndarray | None = None
    candidate_groups: np.ndarray | None = None
    reference_features: np.ndarray | None = None
    candidate_features: np.ndarray | None = None
    inception: Any = None
    windows: list[tuple[float, float]] | None = None
    # Delplace's sigma grows with N: its own, larger set of candidates (default: ``candidate``)
    delplace_candidate: np.ndarray | None = None
    # the classifier two-sample test's own, larger set of candidates (default: ``candidate``)
    c2st_candidate: np.ndarray | None = None
    # features of a larger candidate set for the domain precision and density, whose expected
    # value does not depend on the number of candidates (default: ``candidate_features``)
    precision_candidate_features: np.ndarray | None = None
    cache: dict[str, Any] = field(default_factory=dict)

    def option(self, key: str, default: Any) -> Any:
        return self.settings.get(key, default)


def _delplace(m: MetricInputs) -> dict[str, float]:
    from medgan.analysis.metrics.delplace import (
        diversity_sigma_delta,
        fit_real_pca,
        realism_rho_interval,
    )

    key = ("pca", m.option("n_components", 16))
    if key not in m.cache:
        m.cache[key] = fit_real_pca(m.reference, n_components=m.option("n_components", 16))
    images = m.candidate if m.delplace_candidate is None else m.delplace_candidate
    div = diversity_sigma_delta(images, threshold=m.option("delta_threshold", 0.01))
    rho = realism_rho_interval(images, m.cache[key], level=m.option("interval_level", 0.95),
                               n_boot=m.option("bootstrap", 1000), seed=m.seed)
    return {**rho, "sigma": div["sigma"], "sigma_per_image": div["sigma_per_image"],
            "delta": div["delta"], "delplace_n": len(images)}


def _swd(m: MetricInputs) -> dict[str, float]:
    from medgan.analysis.metrics.swd import sliced_wasserstein

    return sliced_wasserstein(m.reference, m.candidate, seed=m.seed,
                              patches_per_image=m.option("swd_patches_per_image", 128),
                              n_directions=m.option("swd_directions", 128),
                              n_repeats=m.option("swd_repeats", 4))


def _msssim(m: MetricInputs) -> dict[str, float]:
    from medgan.analysis.metrics.intervals import mean_interval
    from medgan.analysis.metrics.msssim import msssim_diversity

    out = msssim_diversity(m.candidate, n_pairs=m.option("msssim_pairs", 1000), seed=m.seed,
                           data_range=m.data_range)
    lo, hi = mean_interval(out["msssim_mean"], out["msssim_std"], out["n_pairs"],
                           level=m.option("interval_level", 0.95))
    return {"msssim_mean": out["msssim_mean"], "msssim_std": out["msssim_std"],
            "msssim_mean_lo": lo, "msssim_mean_hi": hi, "msssim_n_pairs": out["n_pairs"]}


def _domain(m: MetricInputs) -> dict[str, float]:
    from medgan.analysis.metrics.distribution import feature_metrics

    if m.reference_features is None or m.candidate_features is None:
        raise ValueError("the domain metrics need the feature network's features")
    manifold = dict(k_pr=m.option("k_precision_recall", 3),
                    k_dc=m.option("k_density_coverage", 5),
                    level=m.option("interval_level", 0.95), n_boot=m.option("bootstrap", 1000))
    real_groups = _reference_groups(m, max(manifold["k_pr"], manifold["k_dc"]))
    out = feature_metrics(m.reference_features, m.candidate_features, seed=m.seed,
                          kid_subsets=m.option("kid_subsets", 50),
                          kid_subset_size=m.option("kid_subset_size", 1000),
                          real_groups=real_groups, **manifold)
    out["domain_knn_across_groups"] = float(real_groups is not None)
    manifold["real_groups"] = real_groups
    if m.precision_candidate_features is not None:
        from medgan.analysis.metrics.distribution import manifold_intervals

        big = manifold_intervals(m.reference_features, m.precision_candidate_features,
                                 seed=m.seed, **manifold)
        for name in ("precision", "density"):
            out.update({f"domain_{name}{end}": big[f"{name}{end}"] for end in ("", "_lo", "_hi")})
        out["domain_n_fake_precision"] = big["n_fake"]
        out.update(_matched_recall_coverage(m, manifold))
    return out


def _reference_groups(m: MetricInputs, k: int) -> np.ndarray | None:
    """The patients of the reference features for the real k-NN radii
    (``knn_across_groups``, default true): a real image's radius is then its distance to the
    k-th nearest image of *another* patient. Adjacent slices of one patient are near-copies,
    so without it the radii measure the slice spacing and the real manifold shrinks to thin
    threads around each patient's slices: held-out patients fall outside it (issue 16: Han's
    Concat 16 real-vs-real precision 0.36 with them, 0.86 without). The candidates' radii
    (recall) stay over all their images, for synthetic and held-out rows alike. None without
    (usable) groups."""
    from medgan.analysis.metrics.distribution import usable_groups

    if not m.option("knn_across_groups", True):
        return None
    groups = usable_groups(m.reference_groups, len(m.reference_features), k)
    if groups is None and m.reference_groups is not None:
        log.warning("domain metrics: the reference has too few patients for k-NN radii across "
                    "patients (k=%d); radii over all images (domain_knn_across_groups = 0)", k)
    return groups


def _matched_recall_coverage(m: MetricInputs, manifold: dict[str, Any]) -> dict[str, float]:
    """Recall and coverage at the scored set's N, averaged over ``matched_subsets`` subsets of
    the larger precision set (one draw of N is noisy); {} when that set is not larger or
    ``matched_subsets`` is 0 (then they stay those of the scored set)."""
    from medgan.analysis.metrics.distribution import matched_recall_coverage

    subsets = int(m.option("matched_subsets", 100))
    n = len(m.candidate_features)
    if subsets == 0 or len(m.precision_candidate_features) <= n:
        return {}
    got = matched_recall_coverage(m.reference_features, m.precision_candidate_features, n,
                                  k_pr=manifold["k_pr"], k_dc=manifold["k_dc"],
                                  subsets=subsets, level=manifold["level"], seed=m.seed,
                                  real_groups=manifold["real_groups"])
    return {f"domain_{key}": value for key, value in got.items()}


def _inception(m: MetricInputs) -> dict[str, float]:
    from medgan.analysis.metrics.inception import inception_fid

    if m.inception is None or m.windows is None:
        raise ValueError("the standard FID needs a loaded Inception file and display windows")
    return inception_fid(m.inception, m.reference, m.candidate, m.windows, m.channel_names)


def _c2st(m: MetricInputs) -> dict[str, float]:
    from medgan.analysis.metrics.c2st import classifier_two_sample_test

    # synthetic images are unlimited: the test may use a larger set of its own
    candidate = m.candidate if m.c2st_candidate is None else m.c2st_candidate
    cand_groups = m.candidate_groups if m.c2st_candidate is None else None
    # patients must not sit in both parts (the classifier would learn them); a side with fewer
    # patients than parts cannot be split so, and falls back to an image split (recorded)
    parts = max(2, m.option("c2st_folds", 2))
    groups = [g if g is not None and len(np.unique(g)) >= parts else None
              for g in (m.reference_groups, cand_groups)]
    given = (m.reference_groups, cand_groups)
    fallback = any(g is None and g0 is not None for g, g0 in zip(groups, given, strict=True))
    if fallback:
        log.warning("c2st: fewer than two patients on one side; its halves split images, so "
                    "the classifier may recognise patients (c2st_group_aware = 0)")
    folds = m.option("c2st_folds", 2)
    out = classifier_two_sample_test(m.reference, candidate, real_groups=groups[0],
                                     synthetic_groups=groups[1], seed=m.seed,
                                     epochs=m.option("c2st_epochs", 8),
                                     width=m.option("c2st_width", 16),
                                     max_resolution=m.option("c2st_max_resolution", None),
                                     folds=folds if folds >= 2 else None,
                                     level=m.option("interval_level", 0.95))
    values = {f"c2st_{k}" if not k.startswith("c2st") else k: v for k, v in out.items()
              if isinstance(v, (int, float, np.number))}
    return {**values, "c2st_group_aware": float(not fallback)}


def _memorisation(m: MetricInputs) -> dict[str, float]:
    from medgan.analysis.metrics.intervals import proportion_interval
    from medgan.analysis.metrics.memorisation import memorisation_report

    summary, table = memorisation_report(m.reference, m.candidate, m.heldout,
                                         quantile=m.option("memorisation_quantile", 0.01))
    m.cache["memorisation_table"] = table
    below = int(table["below_threshold"].sum())
    summary["share_closer_lo"], summary["share_closer_hi"] = proportion_interval(
        below, len(table), level=m.option("interval_level", 0.95))
    return {f"memo_{k}": v for k, v in summary.items() if isinstance(v, (int, float, np.number))}


METRICS: dict[str, Callable[[MetricInputs], dict[str, float]]] = {
    "delplace": _delplace,
    "swd": _swd,
    "msssim": _msssim,
    "domain": _domain,
    "inception": _inception,
    "c2st": _c2st,
    "memorisation": _memorisation,
}


def compute_metrics(inputs: MetricInputs, names: list[str]) -> dict[str, float]:
    """Run the named metrics (``ValueError`` for an unknown name); one flat dict of results."""
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; known: {sorted(METRICS)}")
    out: dict[str, float] = {}
    for name in names:
        for key, value in METRICS[name](inputs).items():
            out[key] = float(value) if isinstance(value, (int, float, np.number)) else value
    return out


__all__ = ["METRICS", "MetricInputs", "compute_metrics"]
