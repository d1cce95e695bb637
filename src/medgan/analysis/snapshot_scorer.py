"""The scorer of training snapshots: cheap metrics of a model's images while it trains.

:class:`SnapshotScorer` is what :func:`~medgan.training.loop.train_gan` takes as
``snapshot_scorer`` (see :mod:`medgan.training.snapshots`; training does not import this
module, the caller builds it: the workflow's ``train_gan`` script, or a user). Against a
*fixed* real reference (a seeded subsample of the model's training split, ``n_images``) it
scores a snapshot's images with

* ``domain``: FID, KID, precision/recall, density/coverage on the dataset's own feature network
  (:mod:`medgan.analysis.metrics.featurenet`; only when a feature network is given), with the
  reference's k-NN radii across patients as the metric suite's (``reference_groups``);
* ``msssim_mean``: MS-SSIM of ``msssim_pairs`` random image pairs (diversity; higher = less);
* ``rho``: Delplace's realism (PCA of the reference, ``n_components``);
* ``health``, ``health_reason``: the model's health rule (:mod:`medgan.analysis.health`) on these
  values against the real-vs-real baseline.

The baseline is the same metrics of the held-out real images (at most ``n_images``) against the
same reference, computed once. A snapshot has as many images as the baseline has held-out images
(at least ``min_images``, at most ``n_images``): FID and precision/recall depend on N, so the
two rows are compared at the same N. Non-finite images (a diverged generator) give no metric
and the verdict ``diverged``.

Cost (2 CPU threads): a snapshot of 256 images at 32 px with 4 channels takes about 0.5 s.

``python -m medgan.analysis.snapshot_scorer ARGS.json`` is one process of a torchrun training
run with snapshots (:mod:`medgan.training.launch`): it rebuilds the scorer from ARGS.json's
``snapshot_scorer`` (:attr:`SnapshotScorer.spec`) and runs ``train_gan`` with the rest.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from medgan.data.prepared import load_prepared
from medgan.data.split import load_split, split_indices
from medgan.errors import InputError

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {"n_images": 256, "min_images": 64, "msssim_pairs": 200,
                            "kid_subsets": 20, "n_components": 16, "seed": 0}
K_PR, K_DC = 3, 5  # precision/recall and density/coverage neighbours (as the metric suite)


def _subsample(idx: np.ndarray, n: int, seed: int) -> np.ndarray:
    if len(idx) <= n:
        return idx
    return np.sort(np.random.default_rng(seed).choice(idx, size=n, replace=False))


class SnapshotScorer:
    """Scores snapshot images against a fixed real ``reference`` (see the module docstring);
    ``heldout``: real images for the baseline (None or fewer than 2: no baseline);
    ``reference_groups``: the reference images' patients, for the k-NN radii across patients
    (:func:`~medgan.analysis.metrics.distribution.knn_radii`; None or too few: over all)."""

    entry_module = "medgan.analysis.snapshot_scorer"

    def __init__(self, reference: np.ndarray, heldout: np.ndarray | None, *,
                 channel_names: list[str], featurenet: str | os.PathLike | None = None,
                 settings: dict[str, Any] | None = None,
                 thresholds: dict[str, float] | None = None, spec: dict | None = None,
                 reference_groups: np.ndarray | None = None):
        from medgan.analysis.metrics.delplace import fit_real_pca
        from medgan.analysis.metrics.distribution import usable_groups

        self.settings = {**DEFAULTS, **(settings or {})}
        unknown = sorted(set(self.settings) - set(DEFAULTS))
        if unknown:
            raise ValueError(f"unknown snapshot setting(s) {unknown}; known: {sorted(DEFAULTS)}")
        self.reference = np.asarray(reference, dtype=np.float32)
        self.channel_names, self.thresholds, self.spec = list(channel_names), thresholds, spec
        self.data_range = float(self.reference.max() - self.reference.min()) or 1.0
        self.reference_groups = usable_groups(reference_groups, len(self.reference), K_DC)
        k = min(int(self.settings["n_components"]), len(self.reference) - 2)  # PCA needs N>=k+2
        self.pca = fit_real_pca(self.reference, n_components=k) if k >= 1 else None
        self.net = self.net_info = self.reference_features = None
        if featurenet is not None:
            from medgan.analysis.metrics.featurenet import load_feature_net

            self.net, self.net_info = load_feature_net(featurenet)
            self.reference_features = self._features(self.reference)
        lo, hi = int(self.settings["min_images"]), int(self.settings["n_images"])
        n_held = 0 if heldout is None else len(heldout)
        self.n_images = int(min(max(n_held, lo), hi))
        self.baseline = None
        if n_held >= 2:
            self.baseline = self._metrics(np.asarray(heldout, dtype=np.float32))

    @classmethod
    def from_files(cls, data_dir: str | os.PathLike, split: str | os.PathLike | None, *,
                   channels: list[str] | None, featurenet: str | os.PathLike | None = None,
                   settings: dict[str, Any] | None = None,
                   thresholds: dict[str, float] | None = None) -> SnapshotScorer:
        """The scorer of a model trained on ``channels`` of the prepared dataset ``data_dir``
        with ``split`` (its training rows are the reference; None: every image, no baseline)."""
        spec = {"data_dir": str(data_dir), "split": None if split is None else str(split),
                "channels": channels, "settings": settings, "thresholds": thresholds,
                "featurenet": None if featurenet is None else str(featurenet)}
        cfg = {**DEFAULTS, **(settings or {})}
        data = load_prepared(data_dir, channels=channels)
        n = data.images.shape[0]
        table = None if split is None else load_split(split, n)
        train, held = ((np.arange(n), np.arange(0)) if table is None
                       else split_indices(split, n, table=table))
        groups = None if table is None else table["group"].to_numpy()
        if len(train) < 2:
            raise InputError(split or data_dir, f"{len(train)} training image(s): snapshots "
                                                "need at least 2")
        seed = int(cfg["seed"])
        ref_idx = _subsample(train, int(cfg["n_images"]), seed)
        ref = np.asarray(data.images[ref_idx])
        heldout = np.asarray(data.images[_subsample(held, int(cfg["n_images"]), seed + 1)])
        return cls(ref, heldout, channel_names=list(data.info["channels"]), featurenet=featurenet,
                   settings=settings, thresholds=thresholds, spec=spec,
                   reference_groups=None if groups is None else groups[ref_idx])

    # --- scoring ------------------------------------------------------------------------------

    def _features(self, images: np.ndarray) -> np.ndarray:
        from medgan.analysis.metrics.featurenet import extract_features

        return extract_features(self.net, self.net_info, images, self.channel_names)

    def _metrics(self, images: np.ndarray) -> dict[str, Any]:
        from medgan.analysis.metrics.delplace import realism_rho
        from medgan.analysis.metrics.distribution import feature_metrics
        from medgan.analysis.metrics.msssim import msssim_diversity

        seed = int(self.settings["seed"])
        out: dict[str, Any] = {"n_images": len(images), "n_reference": len(self.reference)}
        if self.net is not None and len(images) > K_DC and len(self.reference) > K_DC:
            kid_size = min(1000, len(images), len(self.reference))
            out.update(feature_metrics(self.reference_features, self._features(images),
                                       seed=seed, kid_subsets=int(self.settings["kid_subsets"]),
                                       kid_subset_size=kid_size, k_pr=K_PR, k_dc=K_DC,
                                       real_groups=self.reference_groups))
        out["msssim_mean"] = msssim_diversity(
            images, n_pairs=int(self.settings["msssim_pairs"]), seed=seed,
            data_range=self.data_range)["msssim_mean"]
        if self.pca is not None:
            out["rho"] = realism_rho(images, self.pca)
        return out

    def __call__(self, images: np.ndarray, *, losses: list[dict] | None = None
                 ) -> dict[str, Any]:
        """The metrics and health verdict of a snapshot's ``images`` (N, C, H, W);
        ``losses``: the run's ``stats.jsonl`` rows so far (for the health rule)."""
        images = np.asarray(images, dtype=np.float32)
        if not np.isfinite(images).all():
            return {"health": "diverged",
                    "health_reason": "the generator makes non-finite values"}
        values = self._metrics(images)
        return {**values, **self._health(values, losses)}

    def _health(self, values: dict[str, Any], losses: list[dict] | None) -> dict[str, Any]:
        """The one place the health rule plugs in: ``health`` and ``health_reason``."""
        try:
            from medgan.analysis.health import judge_health
        except ImportError:  # no health rule in this version
            return {}
        verdict = judge_health(values, self.baseline or {}, thresholds=self.thresholds,
                               losses=losses)
        return {"health": verdict.verdict, "health_reason": verdict.reason}


def snapshot_scorer_for(schedule: dict[str, Any], data_dir: str | os.PathLike,
                        split: str | os.PathLike | None, *, channels: list[str] | None,
                        featurenet: str | os.PathLike | None = None,
                        settings: dict[str, Any] | None = None,
                        thresholds: dict[str, float] | None = None) -> SnapshotScorer | None:
    """The scorer of a model whose ``schedule`` asks for snapshots (None when it does not);
    ``settings``: the ``analysis.snapshots`` config (its ``feature_net`` is the workflow's: the
    caller passes the feature network or not)."""
    if not schedule.get("snapshot_every"):
        return None
    settings = {k: v for k, v in (settings or {}).items() if k != "feature_net"}
    return SnapshotScorer.from_files(data_dir, split, channels=channels, featurenet=featurenet,
                                     settings=settings, thresholds=thresholds)


def main(argv: list[str]) -> int:
    """One torchrun process of a training run with snapshots (see the module docstring)."""
    from medgan.training.loop import train_gan

    if len(argv) != 1:
        print("usage: python -m medgan.analysis.snapshot_scorer ARGS.json", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    kwargs = json.loads(Path(argv[0]).read_text())
    kwargs.pop("processes", None)
    spec = kwargs.pop("snapshot_scorer", None)
    scorer = None if spec is None else SnapshotScorer.from_files(**spec)
    train_gan(kwargs.pop("data_dir"), kwargs.pop("out_dir"), snapshot_scorer=scorer, **kwargs)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
