"""Han et al. 2018, Table 1: the Visual Turing Test's confusion matrix, here from the classifier
two-sample test (C2ST) of each model's metrics (:mod:`medgan.analysis.metrics.c2st`).

When readers' answers to the study's Visual Turing Test kit have been scored
(:mod:`medgan.studies.vtt`, ``results/vtt/han2018/scores/table1.tsv``), their pooled first-round
counts and accuracy stand beside the C2ST's in ``VTT: ...`` columns, so human and machine can be
compared.

One row per model in the paper's layout - image type (T1, T1c, T2, FLAIR, Concat), GAN
(DCGAN/WGAN) and resolution - with the C2ST accuracy (%) and the four counts, and the paper's
physician values for the same image type and GAN beside them. Models at the study's lower
resolution are matched to the paper's 64 x 64 Concat rows, the others to its 128 x 128 rows.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from medgan.atomic import write_tsv
from medgan.tables import read_table

COUNTS = ["real_as_real", "real_as_synthetic", "synthetic_as_real", "synthetic_as_synthetic"]
# Table 1 of the paper: (image type, GAN, resolution) -> accuracy %, RR, RS, SR, SS (50 + 50).
PAPER_TABLE1 = {
    ("T1", "DCGAN", 128): (70, 26, 24, 6, 44),
    ("T1c", "DCGAN", 128): (71, 24, 26, 3, 47),
    ("T2", "DCGAN", 128): (64, 22, 28, 8, 42),
    ("FLAIR", "DCGAN", 128): (54, 12, 38, 8, 42),
    ("Concat", "DCGAN", 128): (77, 34, 16, 7, 43),
    ("Concat", "DCGAN", 64): (54, 13, 37, 9, 41),
    ("T1", "WGAN", 128): (64, 20, 30, 6, 44),
    ("T1c", "WGAN", 128): (55, 13, 37, 8, 42),
    ("T2", "WGAN", 128): (58, 19, 31, 11, 39),
    ("FLAIR", "WGAN", 128): (62, 16, 34, 4, 46),
    ("Concat", "WGAN", 128): (66, 31, 19, 15, 35),
    ("Concat", "WGAN", 64): (53, 18, 32, 15, 35),
}
GAN_NAMES = {"gan": "DCGAN", "wgan": "WGAN", "wgan_gp": "WGAN-GP", "lsgan": "LSGAN",
             "dragan": "DRAGAN", "stylegan2": "StyleGAN2 + ADA"}


def image_type(model: Mapping[str, Any], dataset: Mapping[str, Any]) -> str:
    """Han's image type of a model: its sequence, ``Concat`` (one GAN on the pooled
    sequences) or ``Concat (stacked)`` (the four sequences as the channels of one image)."""
    if dataset.get("channel_mode") == "pooled":
        return "Concat"
    channels = list(model["channels"])
    return channels[0] if len(channels) == 1 else "Concat (stacked)"


def table1(metrics: Mapping[str, pd.DataFrame], *, models: Mapping[str, Mapping[str, Any]],
           datasets: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Table 1 from each model's metrics table (``metrics``: model -> its metrics.tsv)."""
    low = min(int(models[m]["resolution"]) for m in metrics)
    high = max(int(models[m]["resolution"]) for m in metrics)
    rows = []
    for name, table in metrics.items():
        spec = models[name]
        synthetic = table[table["source"] == "synthetic"]
        if synthetic.empty or "c2st_accuracy" not in synthetic.columns:
            raise ValueError(f"model {name}: its metrics table has no synthetic c2st row "
                             "(analysis.metrics.include needs c2st)")
        row = synthetic.iloc[0]
        kind = image_type(spec, datasets[spec["dataset"]])
        gan = GAN_NAMES.get(spec.get("loss", {}).get("name", "gan"), spec["loss"]["name"])
        res = int(spec["resolution"])
        paper_res = 64 if (res == low and low != high) else 128
        paper = PAPER_TABLE1.get((kind, gan, paper_res), (None,) * 5)
        out = {"image type": f"{kind} ({gan}, {res} x {res})", "model": name,
               "accuracy (%)": round(100 * float(row["c2st_accuracy"]), 1)}
        out.update({c: int(row[f"c2st_{c}"]) for c in COUNTS})
        out["n_test"] = int(row["c2st_n_test"])
        out["p_value"] = float(row["c2st_p_value"])
        out["paper: image type"] = f"{kind} ({gan}, {paper_res} x {paper_res})"
        out["paper: accuracy (%)"] = paper[0]
        out.update({f"paper: {c}": v for c, v in zip(COUNTS, paper[1:], strict=True)})
        rows.append(out)
    return pd.DataFrame(rows)


def add_reader_study(table: pd.DataFrame, vtt_scores: pd.DataFrame) -> pd.DataFrame:
    """``table`` with the readers' pooled first-round counts and accuracy (%) of each model
    (``VTT: ...`` columns, empty for a model the kit does not hold)."""
    pooled = vtt_scores[(vtt_scores["reader"] == "pooled") & (vtt_scores["group"] == "all")
                        & (vtt_scores["round"] == 1)].set_index("model")
    out = table.copy()
    out["VTT: readers"] = [pooled["n_readers"].get(m) for m in out["model"]]
    out["VTT: accuracy (%)"] = [None if m not in pooled.index
                                else round(100 * float(pooled.at[m, "accuracy"]), 1)
                                for m in out["model"]]
    for c in COUNTS:
        out[f"VTT: {c}"] = [pooled[c].get(m) for m in out["model"]]
    return out


def write_table1(metrics_files: Sequence[str | os.PathLike], path: str | os.PathLike, *,
                 models: Mapping[str, Mapping[str, Any]],
                 datasets: Mapping[str, Mapping[str, Any]],
                 vtt_scores: str | os.PathLike | None = None) -> pd.DataFrame:
    """Read one metrics.tsv per model (in ``models``' order) and write Table 1 to ``path``,
    with the Visual Turing Test's scores (``vtt_scores``: a vtt_score table1.tsv) beside."""
    tables = {}
    for name, file in zip(models, metrics_files, strict=True):
        tables[name] = read_table(file, "the metrics table")
    out = table1(tables, models=models, datasets=datasets)
    if vtt_scores is not None:
        scores = read_table(vtt_scores, "the reader study's scores", keep_default_na=False)
        out = add_reader_study(out, scores)
    write_tsv(path, out)
    return out
