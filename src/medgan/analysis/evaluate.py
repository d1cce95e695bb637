"""The metric suite over a trained model and its prepared dataset (files in, files out).

:func:`load_model_data` reads a model's real images split into training (the *reference*) and
held-out images; :func:`evaluate_model` scores the model's synthetic images and, as the
real-vs-real baseline, the held-out real images against the reference with every metric of
:mod:`medgan.analysis.metrics`, and writes ``metrics.tsv`` (one row per scored set),
``metrics.json``
(the same with the settings and provenance), ``memorisation.tsv`` (per synthetic image) and
``memorisation.png`` (the closest synthetic/training pairs). :func:`study_metrics_table`
collects the models of a study into one table; it needs no torch, which only the functions
that load a model import (a study-table job does not pay torch's start-up).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medgan import __version__
from medgan.analysis.metrics import MetricInputs, compute_metrics
from medgan.atomic import write_json, write_tsv
from medgan.data.prepared import load_prepared
from medgan.data.split import load_split, split_indices
from medgan.errors import InputError
from medgan.plotting import channel_windows
from medgan.tables import read_table

log = logging.getLogger(__name__)

DELPLACE_N = 11328  # Delplace 2019: N generated images for rho, sigma and delta
DEFAULT_METRICS = ["delplace", "swd", "msssim", "domain", "c2st", "memorisation"]
SOURCE_SYNTHETIC, SOURCE_HELDOUT = "synthetic", "real_heldout"
FLOAT_FORMAT = "%.6g"
FIRST_COLUMNS = ["model", "source", "health", "dataset", "channels", "resolution",
                 "n_reference", "n_candidate", "health_reason"]


@dataclass
class ModelData:
    """A model's real images: the training split (reference) and the held-out split."""

    train: np.ndarray
    heldout: np.ndarray
    train_meta: pd.DataFrame
    heldout_meta: pd.DataFrame
    train_groups: np.ndarray
    heldout_groups: np.ndarray
    channel_names: list[str]
    info: dict[str, Any]
    config: dict[str, Any]


def _subsample(idx: np.ndarray, n_max: int | None, seed: int) -> np.ndarray:
    if n_max is None or len(idx) <= n_max:
        return idx
    return np.sort(np.random.default_rng(seed).choice(idx, size=n_max, replace=False))


def load_model_data(checkpoint: str | os.PathLike, data_dir: str | os.PathLike,
                    split: str | os.PathLike, *, max_reference: int | None = None,
                    seed: int = 0, need_heldout: bool = True,
                    config: dict[str, Any] | None = None) -> ModelData:
    """The real images of the model in ``checkpoint``: its channels of ``data_dir``, split by
    ``split.tsv``. ``max_reference`` caps the training images (a seeded subsample).
    ``config``: the run's config when the caller has already loaded the checkpoint."""
    if config is None:
        from medgan.training.checkpoint import load_checkpoint

        config = load_checkpoint(checkpoint)["config"]
    try:
        channels, resolution = list(config["channels"]), int(config["resolution"])
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(checkpoint, f"not a medgan GAN checkpoint ({err})") from err
    data = load_prepared(data_dir, channels=channels)
    n, _, h, w = data.images.shape
    if (h, w) != (resolution, resolution):
        raise InputError(data_dir, f"images are {h}x{w} px but the model in {checkpoint} makes "
                                   f"{resolution} px images")
    table = load_split(split, n)
    train_idx, held_idx = split_indices(split, table=table)
    if need_heldout and len(held_idx) < 2:
        raise InputError(split, f"holds {len(held_idx)} held-out image(s); the analyses need at "
                                "least 2 (raise the dataset's holdout.fraction)")
    train_idx = _subsample(train_idx, max_reference, seed)
    groups = table["group"].to_numpy()
    return ModelData(
        train=np.asarray(data.images[train_idx], dtype=np.float32),
        heldout=np.asarray(data.images[held_idx], dtype=np.float32),
        train_meta=data.meta.iloc[train_idx].reset_index(drop=True),
        heldout_meta=data.meta.iloc[held_idx].reset_index(drop=True),
        train_groups=groups[train_idx], heldout_groups=groups[held_idx],
        channel_names=channels, info=data.info, config=config)


def synthetic_count(setting: int | str, n_heldout: int) -> int:
    """``analysis.metrics.n_synthetic``: an integer, or ``"heldout"`` (as many as held out)."""
    if setting == "heldout":
        return n_heldout
    if isinstance(setting, bool) or not isinstance(setting, int) or setting < 2:
        raise ValueError(f"n_synthetic must be an integer >= 2 or 'heldout', got {setting!r}")
    return setting


def c2st_count(setting: int | str, n_reference: int, n_synthetic: int) -> int:
    """``analysis.metrics.c2st_n_synthetic``: an integer, ``"reference"`` (as many as the
    reference set: the classes then balance at the reference's size) or ``"heldout"`` (the
    scored synthetic set itself, ``n_synthetic``)."""
    if setting == "reference":
        return n_reference
    if setting == "heldout":
        return n_synthetic
    if isinstance(setting, bool) or not isinstance(setting, int) or setting < 4:
        raise ValueError(f"c2st_n_synthetic must be an integer >= 4, 'reference' or "
                         f"'heldout', got {setting!r}")
    return setting


def evaluate_model(checkpoint: str | os.PathLike, data_dir: str | os.PathLike,
                   split: str | os.PathLike, out_dir: str | os.PathLike, *,
                   settings: dict[str, Any] | None = None,
                   featurenet: str | os.PathLike | None = None, model_name: str | None = None,
                   device: str = "cpu") -> pd.DataFrame:
    """Score a model's synthetic images and the held-out real images; write ``out_dir``.

    ``settings``: the ``analysis.metrics`` config section (see the schema); ``featurenet``:
    the dataset's feature-network checkpoint (needed by the ``domain`` metrics). Returns the
    metrics table (one row per scored set).
    """
    from medgan.training.generate import load_generator

    settings = dict(settings or {})
    names = list(settings.get("include", DEFAULT_METRICS))
    seed = int(settings.get("seed", 0))
    out_dir = Path(out_dir)
    model_name = model_name or Path(checkpoint).parent.name
    t0 = time.perf_counter()
    G, config = load_generator(checkpoint, device=device)
    data = load_model_data(checkpoint, data_dir, split, seed=seed, config=config,
                           max_reference=settings.get("max_reference"))
    sets = _synthetic_sets(G, config, data, names, settings, checkpoint)
    feats = _features(names, featurenet, data, sets)
    detector = None
    inception_path = settings.get("inception_weights") or ""
    if inception_path:
        from medgan.analysis.metrics.inception import load_inception

        detector = load_inception(inception_path)
        names.append("inception")
    table, memo = _score_sets(data, sets, feats, detector, names, settings,
                              model_name=model_name, dataset=Path(data_dir).name)

    out_dir.mkdir(parents=True, exist_ok=True)
    write_tsv(out_dir / "memorisation.tsv", memo if memo is not None else pd.DataFrame())
    _plot_memorisation(out_dir / "memorisation.png", sets["synthetic"], data, memo,
                       n=int(settings.get("memorisation_pairs", 8)),
                       windows=channel_windows(data.train), title=model_name)
    write_json(out_dir / "metrics.json", {
        "model": model_name, "checkpoint": str(checkpoint), "data_dir": str(data_dir),
        "split": str(split), "featurenet": None if featurenet is None else str(featurenet),
        "settings": settings, "metrics": names, "rows": table.to_dict(orient="records"),
        "seconds": time.perf_counter() - t0, "medgan_version": __version__})
    # last: marks the analysis complete
    write_tsv(out_dir / "metrics.tsv", table, float_format=FLOAT_FORMAT)
    return table


def _synthetic_sets(G, config: dict[str, Any], data: ModelData, names: list[str],
                    settings: dict[str, Any], checkpoint) -> dict[str, np.ndarray | None]:
    """The synthetic images a model is scored on: ``synthetic`` (``n_synthetic``), and the
    larger sets of Delplace's metrics (``delplace``, ``delplace_n`` images) and of the
    two-sample test (``c2st``, ``c2st_n_synthetic``) and of the domain precision and density
    (``precision``, ``precision_n_synthetic``); None where the scored set serves."""
    from medgan.training.generate import generate_from

    seed = int(settings.get("seed", 0))
    n_syn = synthetic_count(settings.get("n_synthetic", "heldout"), len(data.heldout))
    sets: dict[str, np.ndarray | None] = {
        "synthetic": generate_from(G, config, n_syn, seed=seed), "delplace": None, "c2st": None}
    if not np.isfinite(sets["synthetic"]).all():
        raise InputError(checkpoint, "the generator makes non-finite values")
    # Delplace's rho, sigma, delta on the paper's N = 11,328 images (``delplace_n``) where the
    # data allow: any number of synthetic images, at most all held-out real ones
    delplace_n = int(settings.get("delplace_n", DELPLACE_N))
    if "delplace" in names and delplace_n != n_syn:
        sets["delplace"] = generate_from(G, config, delplace_n, seed=seed + 1)
    # the two-sample test: synthetic images are unlimited, so as many as the real reference
    n_c2st = c2st_count(settings.get("c2st_n_synthetic", "reference"), len(data.train), n_syn)
    if "c2st" in names and n_c2st != n_syn:
        sets["c2st"] = generate_from(G, config, n_c2st, seed=seed + 2)
    # precision and density do not depend on N in expectation: as many as the reference
    n_prec = c2st_count(settings.get("precision_n_synthetic", "reference"), len(data.train),
                        n_syn)
    sets["precision"] = None
    if "domain" in names and n_prec != n_syn:
        same = sets["c2st"] is not None and len(sets["c2st"]) == n_prec
        sets["precision"] = sets["c2st"] if same else generate_from(G, config, n_prec,
                                                                    seed=seed + 3)
    return sets


def _features(names: list[str], featurenet, data: ModelData,
              sets: dict[str, np.ndarray | None]) -> dict[str, np.ndarray | None]:
    """Domain features of the training, held-out and synthetic images, and of the precision
    set when it has its own (None without ``domain``)."""
    feats: dict[str, np.ndarray | None] = {"train": None, "heldout": None, "synthetic": None,
                                           "precision": None}
    if "domain" not in names:
        return feats
    if featurenet is None:
        raise ValueError("the domain metrics need the dataset's feature network")
    from medgan.analysis.metrics.featurenet import extract_features, load_feature_net

    net, net_info = load_feature_net(featurenet)
    for key, images in (("train", data.train), ("heldout", data.heldout),
                        ("synthetic", sets["synthetic"]), ("precision", sets.get("precision"))):
        if images is not None:
            feats[key] = extract_features(net, net_info, images, data.channel_names)
    return feats


def _score_sets(data: ModelData, sets: dict[str, np.ndarray | None],
                feats: dict[str, np.ndarray | None], detector, names: list[str],
                settings: dict[str, Any], *, model_name: str, dataset: str
                ) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The metric rows of the synthetic set and of the held-out baseline, and the synthetic
    set's per-image memorisation table."""
    seed = int(settings.get("seed", 0))
    delplace_n = int(settings.get("delplace_n", DELPLACE_N))
    windows = channel_windows(data.train)
    data_range = float(data.train.max() - data.train.min()) or 1.0
    rows, tables = [], {}
    for source, candidate, groups, cand_feats, delplace_set, c2st_set, prec_feats in (
            (SOURCE_SYNTHETIC, sets["synthetic"], None, feats["synthetic"], sets["delplace"],
             sets["c2st"], feats["precision"]),
            (SOURCE_HELDOUT, data.heldout, data.heldout_groups, feats["heldout"],
             data.heldout[:delplace_n], None, None)):
        inputs = MetricInputs(
            reference=data.train, candidate=candidate, heldout=data.heldout,
            channel_names=data.channel_names, data_range=data_range, settings=settings,
            seed=seed, reference_groups=data.train_groups, candidate_groups=groups,
            reference_features=feats["train"], candidate_features=cand_feats,
            inception=detector, windows=windows, delplace_candidate=delplace_set,
            c2st_candidate=c2st_set, precision_candidate_features=prec_feats)
        t_set = time.perf_counter()
        values = compute_metrics(inputs, names)
        log.info("%s %s: %d metrics in %.1f s", model_name, source, len(values),
                 time.perf_counter() - t_set)
        rows.append({"model": model_name, "source": source, "dataset": dataset,
                     "channels": "+".join(data.channel_names),
                     "resolution": data.train.shape[-1], "n_reference": len(data.train),
                     "n_candidate": len(candidate), **values})
        tables[source] = inputs.cache.get("memorisation_table")
    return pd.DataFrame(rows), tables.get(SOURCE_SYNTHETIC)


def _plot_memorisation(path: Path, synthetic: np.ndarray, data: ModelData,
                       memo: pd.DataFrame | None, *, n: int, windows, title: str) -> None:
    from medgan.analysis.metrics.memorisation import nearest_neighbours, plot_closest_pairs

    if memo is not None and {"distance", "nn_index"} <= set(memo.columns):
        dist, idx = memo["distance"].to_numpy(), memo["nn_index"].to_numpy()
    else:
        dist, idx = nearest_neighbours(synthetic, data.train)
    plot_closest_pairs(synthetic, data.train, dist, idx, path, n=min(n, len(synthetic)),
                       channel_names=data.channel_names, windows=windows)


def study_metrics_table(metrics_files: list[str | os.PathLike], out_path: str | os.PathLike,
                        utility_files: list[str | os.PathLike] = (), *,
                        stats_files: dict[str, str | os.PathLike] | None = None,
                        snapshot_files: dict[str, str | os.PathLike] | None = None,
                        health_path: str | os.PathLike | None = None,
                        health: dict[str, float] | None = None,
                        privacy_files: list[str | os.PathLike] = ()) -> pd.DataFrame:
    """One table of a study: every model's synthetic row, and one real-vs-real row per distinct
    (dataset, channels, resolution) - the held-out baseline the synthetic rows compare with.
    ``utility_files``: the models' utility.tsv, whose headline (real + GAN against real only
    at the smallest real fraction, :func:`~medgan.analysis.utility.columns.utility_columns`) is
    added as ``utility_*`` columns; ``privacy_files``: the models' privacy.tsv, whose headline
    (:func:`~medgan.analysis.privacy.columns.privacy_columns`) is added as ``privacy_*`` columns.

    Health (:mod:`medgan.analysis.health`): every synthetic row gets ``health`` and
    ``health_reason`` (judged against its own model's real-vs-real row, with the thresholds
    ``health`` and the training log of ``stats_files``: model -> ``stats.jsonl``);
    ``health_path`` receives one row per model of the metrics and of ``stats_files`` (a model
    without metrics is judged by its last training snapshot, ``snapshot_files``: model ->
    ``snapshots.jsonl``)."""
    from medgan.analysis.health import study_health

    frames = [_read_metrics(path) for path in metrics_files]
    out = pd.DataFrame(columns=["model", "source"])
    if frames:
        table = pd.concat(frames, ignore_index=True, sort=False)
        synthetic = table[table["source"] == SOURCE_SYNTHETIC]
        baseline = (table[table["source"] == SOURCE_HELDOUT]
                    .drop_duplicates(subset=["dataset", "channels", "resolution"])
                    .assign(model="real held-out vs train", health="baseline",
                            health_reason="held-out real images against the training images"))
        out = pd.concat([baseline, synthetic], ignore_index=True, sort=False)
    if utility_files:
        from medgan.analysis.utility.columns import utility_columns

        utility = utility_columns(list(utility_files))
        out = out.merge(utility, on="model", how="left")
        extra = utility[~utility["model"].isin(out["model"])].assign(source=SOURCE_SYNTHETIC)
        out = pd.concat([out, extra], ignore_index=True, sort=False) if len(extra) else out
    if privacy_files:
        from medgan.analysis.privacy.columns import privacy_columns

        privacy = privacy_columns(list(privacy_files))
        out = out.merge(privacy, on="model", how="left")
        extra = privacy[~privacy["model"].isin(out["model"])].assign(source=SOURCE_SYNTHETIC)
        out = pd.concat([out, extra], ignore_index=True, sort=False) if len(extra) else out
    verdicts = study_health(frames, dict(stats_files or {}), thresholds=health,
                            snapshot_files=snapshot_files)
    if privacy_files:
        verdicts = _with_dp_reason(verdicts, privacy)
    if len(verdicts):
        judged = verdicts.set_index("model")
        for column in ("health", "health_reason"):
            mapped = out["model"].map(judged[column])
            out[column] = mapped.where(mapped.notna(), out.get(column))
    cols = [c for c in FIRST_COLUMNS if c in out.columns]
    out = out[cols + [c for c in out.columns if c not in cols]]
    if health_path is not None:
        write_tsv(health_path, verdicts, float_format=FLOAT_FORMAT)
    write_tsv(out_path, out, float_format=FLOAT_FORMAT)
    return out


def _with_dp_reason(verdicts: pd.DataFrame, privacy: pd.DataFrame) -> pd.DataFrame:
    """The verdicts, where a model trained with DP-SGD did not learn, with its epsilon in the
    reason: DP's noise costs fidelity by design (issue 16: Han's Concat 16 DCGAN at epsilon 10
    has domain precision 0.02, at 100 0.11, at 1e6 0.40, its non-DP twin 0.53)."""
    epsilon = privacy.set_index("model")["privacy_epsilon"].dropna()
    out = verdicts.copy()
    for i, row in out.iterrows():
        if row["model"] in epsilon.index and row["health"] != "learned":
            out.at[i, "health_reason"] = (
                f"{row['health_reason']}; trained with DP-SGD at epsilon "
                f"{epsilon[row['model']]:.3g}, whose noise costs fidelity (compare its non-DP "
                f"twin)")
    return out


def _read_metrics(path: str | os.PathLike) -> pd.DataFrame:
    return read_table(path, "the metrics table")


def read_metrics_json(path: str | os.PathLike) -> dict[str, Any]:
    """Read a ``metrics.json`` (for reports)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(path, f"cannot read the metrics record ({err})") from err


def train_dataset_feature_net(data_dir: str | os.PathLike, split: str | os.PathLike,
                              out_path: str | os.PathLike, *,
                              settings: dict[str, Any] | None = None,
                              max_images: int | None = None, progress: bool = True,
                              device: str = "cpu") -> dict:
    """Train the domain feature network of a prepared dataset on its training split (every
    channel; at most ``max_images`` images, a seeded subsample) and save it to ``out_path``.
    ``device``: ``cpu``, ``cuda`` or ``auto`` (CUDA when available)."""
    from medgan.analysis.metrics.featurenet import save_feature_net, train_feature_net

    settings = dict(settings or {})
    data = load_prepared(data_dir)
    train_idx, _ = split_indices(split, data.images.shape[0])
    train_idx = _subsample(train_idx, max_images, int(settings.get("seed", 0)))
    images = np.asarray(data.images[train_idx], dtype=np.float32)
    model, info = train_feature_net(images, data.channels, progress=progress, device=device,
                                    **settings)
    info = {**info, "data_dir": str(data_dir), "split": str(split), "n_images": len(images)}
    save_feature_net(out_path, model, info)
    return info


def evaluate_synthetic_vessels(checkpoint: str | os.PathLike, segmenter: str | os.PathLike,
                               data_dir: str | os.PathLike, split: str | os.PathLike,
                               out_path: str | os.PathLike, *, n_images: int = 64,
                               threshold: float = 0.5, seed: int = 0,
                               device: str = "cpu") -> pd.DataFrame:
    """Beers 2018 sec. 4.1 for a fundus model: the dataset's vessel U-net applied to
    ``n_images`` synthetic RGB images, each scored by the ROC AUC of the GAN's own vessel
    channel against the U-net's segmentation (:mod:`medgan.analysis.synthetic_vessels`); the
    held-out
    real images give the pipeline's baseline (their vessel channel is the U-net's output at
    preparation). Writes one row per image and a ``mean`` row per source."""
    from medgan.analysis.synthetic_vessels import real_vessel_auc, synthetic_vessel_auc
    from medgan.training.generate import generate_from, load_generator

    G, config = load_generator(checkpoint, device=device)
    data = load_prepared(data_dir)
    _, held_idx = split_indices(split, data.images.shape[0])
    synthetic = generate_from(G, config, n_images, seed=seed)
    frames = []
    runs = [("synthetic", lambda: synthetic_vessel_auc(
        synthetic, list(config["channels"]), segmenter, dataset_info=data.info,
        threshold=threshold, device=device))]
    if len(held_idx):
        runs.append(("real_heldout", lambda: real_vessel_auc(
            data_dir, segmenter, indices=held_idx, threshold=threshold, device=device)))
    for source, run in runs:
        summary, table = run()
        mean = {"image": "mean", "vessel_auc": summary["vessel_auc_mean"],
                "vessel_auc_reverse": summary["vessel_auc_reverse_mean"],
                "reason": f"{summary['n_scored']} of {summary['n_images']} images scored"}
        frames.append(pd.concat([table, pd.DataFrame([mean])], ignore_index=True)
                      .assign(source=source))
    out = pd.concat(frames, ignore_index=True)
    out = out[["source"] + [c for c in out.columns if c != "source"]]
    write_tsv(out_path, out, float_format=FLOAT_FORMAT)
    return out
