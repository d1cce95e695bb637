"""The papers' own tables (medgan.studies.*): Kitchen's layer lists traced from the networks,
Han's Table 1 from C2ST rows, Beers' vessel-AUC table and slice bins."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from medgan.atomic import copy_file
from medgan.models import build_discriminator, build_generator
from medgan.studies.beers2018 import _path_through, vessel_auc_table
from medgan.studies.han2018 import add_reader_study, image_type, table1
from medgan.studies.kitchen2017 import layer_table


def test_kitchen_tables_match_the_paper_with_its_settings():
    G = build_generator({"name": "kitchen"}, channels=3, resolution=16)
    D = build_discriminator({"name": "kitchen"}, channels=3, resolution=16)
    g = layer_table(G, torch.zeros(1, 25), input_name="random input")
    assert list(g["out. shape"]) == ["25", "256", "4 x 4 x 16", "8 x 8 x 32", "16 x 16 x 16",
                                     "16 x 16 x 3"]  # Table 1
    assert list(g["feats."])[1:] == [256, "", 32, 16, 3]
    d = layer_table(D, torch.zeros(1, 3, 16, 16))
    assert list(d["out. shape"]) == ["16 x 16 x 3", "16 x 16 x 32", "8 x 8 x 64",
                                     "4 x 4 x 128", "1 x 1 x 128", "1"]  # Table 2
    assert list(d["kernel"])[1:4] == ["3 x 3", "3 x 3 / 2", "3 x 3 / 2"]
    assert d["params"].sum() == sum(p.numel() for p in D.parameters())


def test_kitchen_tables_follow_the_architecture():
    G = build_generator({"name": "kitchen", "width": 8}, channels=2, resolution=32)
    g = layer_table(G, torch.zeros(1, 25))
    assert list(g["layer"]).count("T. conv. / ReLU") == 4  # one more doubling for 32 px
    assert g["out. shape"].iloc[-1] == "32 x 32 x 2"


def _metrics(acc, counts, source="synthetic"):
    row = {"source": source, "c2st_accuracy": acc, "c2st_n_test": sum(counts),
           "c2st_p_value": 0.5}
    row.update({f"c2st_{k}": v for k, v in zip(
        ["real_as_real", "real_as_synthetic", "synthetic_as_real", "synthetic_as_synthetic"],
        counts, strict=True)})
    return pd.DataFrame([{**row, "source": "real_heldout"}, row])


def test_han_table1_layout_and_paper_values():
    datasets = {"s": {"kind": "brats"}, "p": {"kind": "brats", "channel_mode": "pooled"}}
    models = {
        "t1": {"dataset": "s", "channels": ["T1"], "resolution": 32, "loss": {"name": "wgan"}},
        "c32": {"dataset": "p", "channels": ["Concat"], "resolution": 32,
                "loss": {"name": "gan"}},
        "c16": {"dataset": "p", "channels": ["Concat"], "resolution": 16,
                "loss": {"name": "gan"}},
    }
    metrics = {"t1": _metrics(0.6, [6, 4, 4, 6]), "c32": _metrics(0.5, [5, 5, 5, 5]),
               "c16": _metrics(1.0, [10, 0, 0, 10])}
    out = table1(metrics, models=models, datasets=datasets)
    assert list(out["image type"]) == ["T1 (WGAN, 32 x 32)", "Concat (DCGAN, 32 x 32)",
                                       "Concat (DCGAN, 16 x 16)"]
    assert list(out["accuracy (%)"]) == [60.0, 50.0, 100.0]
    assert list(out["paper: accuracy (%)"]) == [64, 77, 54]  # 128 px rows, then Concat 64
    assert list(out["synthetic_as_real"]) == [4, 5, 0]
    assert image_type({"channels": ["T1", "T2"]}, {"kind": "brats"}) == "Concat (stacked)"
    with pytest.raises(ValueError, match="c2st"):
        table1({"t1": pd.DataFrame([{"source": "synthetic"}])}, models=models,
               datasets=datasets)


def test_han_table1_puts_the_reader_study_beside_the_c2st():
    """Pooled first-round VTT counts join their model's row; per-reader, second-round and
    group rows do not; a model outside the kit gets empty VTT columns."""
    c2st = pd.DataFrame([{"model": "t1", "accuracy (%)": 60.0}, {"model": "t2",
                                                                 "accuracy (%)": 55.0}])
    rows = []
    for reader, group, rnd, acc, counts in [("pooled", "all", 1, 0.7, (4, 1, 2, 3)),
                                             ("pooled", "all", 2, 0.9, (5, 0, 1, 4)),
                                             ("R1", "", 1, 0.5, (2, 1, 1, 1)),
                                             ("pooled", "senior", 1, 0.2, (1, 1, 1, 1))]:
        rows.append({"model": "t1", "reader": reader, "group": group, "round": rnd,
                     "n_readers": 2, "accuracy": acc,
                     **dict(zip(["real_as_real", "real_as_synthetic", "synthetic_as_real",
                                 "synthetic_as_synthetic"], counts, strict=True))})
    out = add_reader_study(c2st, pd.DataFrame(rows))
    first = out.iloc[0]
    assert first["VTT: accuracy (%)"] == 70.0 and first["VTT: readers"] == 2
    assert [first[f"VTT: {c}"] for c in ("real_as_real", "real_as_synthetic",
                                         "synthetic_as_real", "synthetic_as_synthetic")] == [
        4, 1, 2, 3]
    assert pd.isna(out.iloc[1]["VTT: accuracy (%)"]) and pd.isna(out.iloc[1]["VTT: real_as_real"])
    assert list(out["accuracy (%)"]) == [60.0, 55.0]  # the C2ST columns stay


def test_beers_vessel_table(tmp_path):
    t = tmp_path / "v.tsv"
    pd.DataFrame([
        {"source": "synthetic", "image": "0", "vessel_auc": 0.8, "vessel_auc_reverse": 0.7,
         "reason": ""},
        {"source": "synthetic", "image": "mean", "vessel_auc": 0.8, "vessel_auc_reverse": 0.7,
         "reason": "1 of 1 images scored"},
        {"source": "real_heldout", "image": "mean", "vessel_auc": 0.99,
         "vessel_auc_reverse": 0.98, "reason": "2 of 2 images scored"},
    ]).to_csv(t, sep="\t", index=False)
    out = vessel_auc_table(["m"], [t], tmp_path / "out.tsv")
    assert list(out["images"]) == ["synthetic", "real_heldout"]
    assert out["paper_vessel_auc"].iloc[0] == 0.97 and pd.isna(out["paper_vessel_auc"].iloc[1])
    assert (tmp_path / "out.tsv").is_file()


def test_traversal_bins_follow_the_slices():
    position = np.array([5, 1, 4, 2, 3, 0, 7, 6])
    bins = _path_through(np.zeros((8, 2)), position, 4)
    assert [sorted(position[b].tolist()) for b in bins] == [[0, 1], [2, 3], [4, 5], [6, 7]]


def test_beers_figure_copy_is_whole_and_replaces_the_old(tmp_path):
    source, out = tmp_path / "tsne.png", tmp_path / "fig" / "fig5.png"
    source.write_bytes(b"\x89PNG new figure")
    out.parent.mkdir()
    out.write_bytes(b"old")
    copy_file(source, out)
    assert out.read_bytes() == b"\x89PNG new figure"
    assert sorted(p.name for p in out.parent.iterdir()) == ["fig5.png"]  # no temporary left
