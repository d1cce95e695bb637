"""The held-out split by patient, and training on the training split only."""

import json

import numpy as np
import pandas as pd
import pytest

from medgan.data.prepared import PreparedDatasetWriter
from medgan.data.split import assign_holdout, group_column, load_split, split_indices, write_split
from medgan.errors import InputError
from medgan.training import data as training_data
from medgan.training import train_gan


def _meta(tmp_path, rows, name="meta.tsv"):
    path = tmp_path / name
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)
    return path


def test_patients_are_never_split(tmp_path):
    rows = [{"subject": f"P{i // 7:02d}", "slice": i % 7} for i in range(70)]
    out = tmp_path / "split.tsv"
    counts = write_split(_meta(tmp_path, rows), out, fraction=0.2, seed=3)
    table = load_split(out, 70)
    assert counts == {"n_train": 56, "n_heldout": 14, "n_groups": 10, "n_heldout_groups": 2}
    per_group = table.groupby("group")["split"].nunique()
    assert (per_group == 1).all()  # every patient entirely in one split
    assert table["index"].tolist() == list(range(70))
    train, held = split_indices(out, 70)
    assert len(train) == 56 and len(held) == 14 and not set(train) & set(held)


def test_split_is_seeded_and_depends_on_groups_only():
    groups = np.repeat([f"s{i}" for i in range(20)], 3)
    a = assign_holdout(groups, fraction=0.25, seed=1)
    b = assign_holdout(groups[::-1], fraction=0.25, seed=1)[::-1]
    c = assign_holdout(groups, fraction=0.25, seed=2)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert len(np.unique(groups[a])) == 5


def test_fraction_bounds():
    groups = np.array(["a", "a", "b", "c"])
    assert not assign_holdout(groups, fraction=0.0, seed=0).any()
    assert assign_holdout(groups, fraction=0.01, seed=0).sum() >= 1  # at least one patient
    assert len(np.unique(groups[~assign_holdout(groups, fraction=0.99, seed=0)])) == 1
    with pytest.raises(ValueError, match="at least two"):
        assign_holdout(np.array(["a", "a"]), fraction=0.2, seed=0)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        assign_holdout(groups, fraction=1.0, seed=0)


def test_group_column_choice():
    assert group_column(pd.DataFrame({"subject": [1], "image": [2]})) == "subject"
    assert group_column(pd.DataFrame({"image": [2]})) == "image"  # fundus photos
    assert group_column(pd.DataFrame({"x": [2]})) is None
    assert group_column(pd.DataFrame({"subject": [1]}), "none") is None
    with pytest.raises(ValueError, match="no column 'patient'"):
        group_column(pd.DataFrame({"subject": [1]}), "patient")


def test_bad_inputs_name_the_file(tmp_path):
    single = _meta(tmp_path, [{"subject": "A", "slice": i} for i in range(5)])
    with pytest.raises(InputError, match=r"meta\.tsv: cannot hold out"):
        write_split(single, tmp_path / "s.tsv", fraction=0.2)
    assert not (tmp_path / "s.tsv").exists()
    good = tmp_path / "good.tsv"
    write_split(_meta(tmp_path, [{"subject": c} for c in "abcde"], "m2.tsv"), good, fraction=0.2)
    with pytest.raises(InputError, match="has 5 rows but the dataset has 6"):
        load_split(good, 6)
    bad = tmp_path / "bad.tsv"
    bad.write_text("index\tgroup\tsplit\n0\ta\ttrain\n1\tb\ttest\n")
    with pytest.raises(InputError, match=r"bad\.tsv: unknown split value\(s\) \['test'\]"):
        load_split(bad)
    (tmp_path / "cols.tsv").write_text("index\tsplit\n0\ttrain\n")
    with pytest.raises(InputError, match=r"missing column\(s\) \['group'\]"):
        load_split(tmp_path / "cols.tsv")


@pytest.mark.parametrize("preload", [True, False])
def test_training_never_reads_heldout_images(tmp_path, monkeypatch, preload):
    """Held-out images are NaN: one read of them would make the losses NaN and stop training."""
    if not preload:
        monkeypatch.setattr(training_data, "PRELOAD_BYTES", 0)  # read batches from the memmap
    n = 24
    rng = np.random.default_rng(0)
    meta = [{"subject": f"s{i // 4}", "slice": i % 4} for i in range(n)]
    split = tmp_path / "split.tsv"
    _meta(tmp_path, meta)
    write_split(tmp_path / "meta.tsv", split, fraction=0.34, seed=0)
    train_idx, held_idx = split_indices(split, n)
    images = rng.normal(size=(n, 1, 16, 16)).astype(np.float32)
    with PreparedDatasetWriter(tmp_path / "data", channels=["T1"], resolution=16) as w:
        w.append(images, meta)
    stored = np.load(tmp_path / "data" / "images.npy", mmap_mode="r+")
    stored[held_idx] = np.nan  # the writer refuses NaN; poison the held-out rows afterwards
    stored.flush()
    del stored
    run = train_gan(tmp_path / "data", tmp_path / "run", channels=None, resolution=16,
                    architecture={"name": "dcgan", "latent_dim": 8, "width": 4, "max_width": 8},
                    loss={"name": "gan"}, optimizer={"name": "adam", "lr": 2e-4},
                    schedule={"steps": 6, "batch_size": 4, "log_every": 1, "sample_every": 0},
                    seed=0, device="cpu", threads=1, progress=False, split=split)
    summary = run["config"]["dataset"]
    assert summary["n_images"] == len(train_idx) == 16
    assert summary["split"]["n_train"] == 16 and len(summary["split"]["rows_sha256"]) == 64
    assert all(np.isfinite(v) for v in run["final"].values())
    with pytest.raises(FloatingPointError):  # the same run on every image does see them
        train_gan(tmp_path / "data", tmp_path / "run_all", channels=None, resolution=16,
                  architecture={"name": "dcgan", "latent_dim": 8, "width": 4, "max_width": 8},
                  loss={"name": "gan"}, optimizer={"name": "adam", "lr": 2e-4},
                  schedule={"steps": 6, "batch_size": 4, "log_every": 1, "sample_every": 0},
                  seed=0, device="cpu", threads=1, progress=False)
    assert json.loads((tmp_path / "run" / "run.json").read_text())["final"]["step"] == 6
