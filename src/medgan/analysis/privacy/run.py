"""The ``privacy`` analysis of a trained model, files in and files out.

:func:`evaluate_privacy` reads a model's checkpoint, its prepared dataset and ``split.tsv``
(training patients are members, held-out patients non-members), makes ``n_synthetic`` images,
runs :func:`~medgan.analysis.privacy.audit.run_audit` and writes into ``out_dir``:

* ``privacy.tsv``: one row per attack, set (``primary``, ``control``) and level (``image``,
  ``patient``): ``auc`` with its interval, ``tpr_at_0.01``, ``tpr_at_0.001``, the set sizes
  (``n_members`` = ``n_nonmembers``), ``fpr_resolution``; primary rows add the difference to
  the control, its interval and the ``verdict``; ``epsilon`` is the DP budget spent when the
  model was trained with DP-SGD (:mod:`medgan.training.dp`), else empty;
* ``privacy_scores.tsv``: every query image's set, membership, patient and attack scores;
* ``privacy.json``: settings, sizes, skipped attacks, the DP record, timing, versions;
* ``privacy.png``: the ROC curves (:func:`~medgan.analysis.privacy.figure.plot_roc`).

:func:`medgan.analysis.privacy.columns.privacy_columns` gives a study table's ``privacy_*``
columns.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medgan import __version__
from medgan.analysis.privacy.audit import DEFAULTS, AuditData, run_audit
from medgan.atomic import write_json, write_tsv
from medgan.errors import InputError

log = logging.getLogger(__name__)
FLOAT_FORMAT = "%.6g"
RUN_DEFAULTS = {**DEFAULTS, "n_synthetic": 2000}


def load_discriminator(checkpoint: dict[str, Any], device: str = "cpu"):
    """The trained D of a checkpoint dict (eval mode), or None when it cannot be rebuilt
    (no ``discriminator`` entry, or a progressive D)."""
    import torch  # noqa: F401 - the models need it

    from medgan.models import build_discriminator

    config = checkpoint["config"]
    state = checkpoint.get("discriminator")
    if state is None or config["architecture"]["name"] == "pggan":
        return None
    D = build_discriminator(config["architecture"], channels=len(config["channels"]),
                            resolution=config["resolution"], condition=config.get("condition"))
    D.load_state_dict(state)
    return D.to(device).eval()


def _class_labels(config: dict[str, Any], meta: pd.DataFrame) -> np.ndarray | None:
    """Class index of every image of a class-conditional model (no class: 0), else None."""
    condition = config.get("condition")
    if not condition:
        return None
    from medgan.data.classes import encode_labels, label_column

    codes = encode_labels(label_column(meta, condition["column"]).tolist(), condition["classes"])
    return np.where(codes < 0, 0, codes)


def audit_data(checkpoint: str | os.PathLike, data_dir: str | os.PathLike,
               split: str | os.PathLike, *, settings: dict[str, Any],
               featurenet: str | os.PathLike | None = None, device: str = "cpu"
               ) -> tuple[AuditData, dict[str, Any]]:
    """The :class:`AuditData` of a model and its checkpoint's ``privacy`` record (or {})."""
    from medgan.analysis.evaluate import load_model_data
    from medgan.analysis.privacy.attacks import logan
    from medgan.training.checkpoint import load_checkpoint
    from medgan.training.generate import generate_from, load_generator

    ckpt = load_checkpoint(checkpoint)
    G, config = load_generator(checkpoint, device=device)
    data = load_model_data(checkpoint, data_dir, split, config=config)
    synthetic = generate_from(G, config, int(settings["n_synthetic"]), seed=int(settings["seed"]))
    if not np.isfinite(synthetic).all():
        raise InputError(checkpoint, "the generator makes non-finite values")
    features = None
    if featurenet is not None:
        from medgan.analysis.metrics.featurenet import extract_features, load_feature_net

        net, info = load_feature_net(featurenet)

        def features(x: np.ndarray) -> np.ndarray:
            return extract_features(net, info, x, data.channel_names, device=device)

    discriminator = None
    D = load_discriminator(ckpt, device=device)
    if D is not None:
        def discriminator(x: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
            return logan(D, x, labels=labels, device=device)

    audit = AuditData(train=data.train, train_groups=data.train_groups, heldout=data.heldout,
                      heldout_groups=data.heldout_groups, synthetic=synthetic,
                      features=features, discriminator=discriminator,
                      train_labels=_class_labels(config, data.train_meta),
                      heldout_labels=_class_labels(config, data.heldout_meta))
    return audit, dict(ckpt.get("privacy") or {})


def evaluate_privacy(checkpoint: str | os.PathLike, data_dir: str | os.PathLike,
                     split: str | os.PathLike, out_dir: str | os.PathLike, *,
                     settings: dict[str, Any] | None = None,
                     featurenet: str | os.PathLike | None = None,
                     model_name: str | None = None, device: str = "cpu") -> pd.DataFrame:
    """Write the privacy audit of the model in ``checkpoint`` into ``out_dir`` (see the module
    docstring); returns the summary table. ``settings``: the ``analysis.privacy`` section;
    ``featurenet``: the dataset's feature network (DOMIAS's space; None: pixels)."""
    from medgan.analysis.privacy.figure import plot_roc
    from medgan.training.distributed import resolve_device

    t0 = time.perf_counter()
    settings = {**RUN_DEFAULTS, **(settings or {})}
    model_name = model_name or Path(checkpoint).parent.name
    dev = str(resolve_device(device))
    data, dp = audit_data(checkpoint, data_dir, split, settings=settings,
                          featurenet=featurenet, device=dev)
    try:
        summary, scores, info = run_audit(data, settings)
    except ValueError as err:
        raise InputError(split, f"cannot audit {model_name}: {err}") from err
    epsilon = (dp.get("settings") or {}).get("epsilon")
    summary.insert(0, "model", model_name)
    summary["epsilon"] = np.nan if epsilon is None else _spent(dp)
    summary["headline"] = summary["level"] == info["headline_level"]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_roc(scores, info["attacks"], out_dir / "privacy.png", title=model_name)
    write_tsv(out_dir / "privacy_scores.tsv", scores, float_format=FLOAT_FORMAT)
    write_json(out_dir / "privacy.json", {
        "model": model_name, "checkpoint": str(checkpoint), "data_dir": str(data_dir),
        "split": str(split), "featurenet": None if featurenet is None else str(featurenet),
        "feature_space": "featurenet" if featurenet is not None else "pixels",
        "settings": settings, **info, "dp": dp or None,
        "seconds": time.perf_counter() - t0, "medgan_version": __version__})
    write_tsv(out_dir / "privacy.tsv", summary, float_format=FLOAT_FORMAT)  # last: complete
    log.info("%s: privacy audit in %.1f s", model_name, time.perf_counter() - t0)
    return summary


def _spent(dp: dict[str, Any]) -> float:
    """The accountant's epsilon after the checkpoint's D steps."""
    from opacus.accountants import create_accountant

    from medgan.training.dp import PrivateDiscriminator

    settings = dp["settings"]
    tracker = PrivateDiscriminator(settings, create_accountant(settings["accountant"]), None)
    tracker.load_state_dict(dp)
    return tracker.report()["epsilon_spent"]
