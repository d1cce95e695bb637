"""Downstream utility (medgan.analysis.utility): tasks, task networks, the grid and its summary,
the controls with known answers, and the workflow's files."""


import json

import numpy as np
import pandas as pd
import pytest
import torch

from medgan.analysis.utility.fit import augment_batch, dice, fit_task_net, score_task
from medgan.analysis.utility.grid import GridSettings, patient_subsets, run_grid, summarise
from medgan.analysis.utility.sources import NoiseSource, PoolSource, RepeatSource
from medgan.analysis.utility.tasks import (
    CLASSIFICATION,
    SEGMENTATION,
    Task,
    TaskData,
    encode_labels,
    label_column,
    model_tasks,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")
BLOB = Task("blob", CLASSIFICATION, ("x",), classes=("no", "yes"))


def blob_data(n_patients: int, *, per: int = 8, seed: int, size: int = 16,
              amplitude: float = 0.8) -> TaskData:
    """Noise images, half with a faint Gaussian blob (class 1) at a random place; the blob's
    contrast varies by patient. Few patients do not teach a network where the blob ends and the
    noise begins; more patients do."""
    rng = np.random.default_rng(seed)
    n = n_patients * per
    patient = np.repeat(np.arange(n_patients), per)
    contrast = rng.uniform(0.7, 1.4, n_patients)[patient]
    x = rng.standard_normal((n, 1, size, size)).astype(np.float32)
    y = rng.integers(2, size=n)
    yy, xx = np.mgrid[:size, :size]
    for i in np.flatnonzero(y):
        cy, cx = rng.uniform(3, size - 3, 2)
        r = rng.uniform(1.5, 3)
        x[i, 0] += amplitude * contrast[i] * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2)
                                                    / (2 * r * r))
    groups = np.array([f"s{seed}p{p}" for p in patient], dtype=object)
    return TaskData(x, y.astype(np.int64), groups)


@pytest.fixture(scope="module")
def controls():
    """The grid at 10 % of 20 training patients (2 patients, 16 images) with the three controls
    at 4x, eight seeds (t quantile 2.36: with six the oracle's interval came within 0.003 of
    0); and noise only against all real images."""
    real, pool, test = (blob_data(20, seed=1), blob_data(20, seed=2), blob_data(40, seed=3))
    sources = [PoolSource(pool, name="oracle", classification=True),
               NoiseSource(real, name="noise"), RepeatSource(real, name="repeat")]
    fit = {"steps": 60, "batch_size": 32, "lr": 1e-3, "width": 8}
    scarce = run_grid(BLOB, real, test, sources, settings=GridSettings(
        fractions=[0.1], ratios=[4.0], n_seeds=8, training_sets=["real_synthetic"], fit=fit),
        progress=False)
    only = run_grid(BLOB, real, test, sources[1:2], settings=GridSettings(
        fractions=[1.0], n_seeds=8, training_sets=["synthetic_only"], fit=fit), progress=False)
    runs = pd.concat([scarce, only], ignore_index=True)
    summary = summarise(runs, ["auc"]).set_index(["training_set", "real_fraction"])
    return runs, summary


def test_oracle_helps_when_real_data_is_scarce(controls):
    _, summary = controls
    oracle = summary.loc[("real+oracle", 0.1)]
    assert oracle["verdict"] == "helps", oracle
    assert oracle["diff_ci_low"] > 0


def test_noise_does_not_help_and_noise_only_is_harmful(controls):
    _, summary = controls
    mixed = summary.loc[("real+noise", 0.1)]
    assert mixed["verdict"] in ("harms", "unclear") and mixed["diff_vs_real"] < 0
    only = summary.loc[("noise only", 0.0)]
    assert only["verdict"] == "harms" and only["diff_ci_high"] < 0
    assert only["mean"] < summary.loc[("real", 1.0), "mean"] - 0.2


def test_one_repeated_image_helps_less_than_the_oracle(controls):
    _, summary = controls
    assert (summary.loc[("real+repeat", 0.1), "diff_vs_real"]
            < summary.loc[("real+oracle", 0.1), "diff_vs_real"])


def test_grid_rows_count_the_images_and_pair_by_seed(controls):
    runs, _ = controls
    cell = runs[(runs["training_set"] == "real+oracle")]
    assert list(cell["seed"]) == list(range(8))
    assert (cell["n_synthetic"] == 4 * cell["n_real"]).all()
    real = runs[(runs["training_set"] == "real") & (runs["real_fraction"] == 0.1)]
    assert (real["n_groups"] == 2).all() and (real["n_real"] == 16).all()
    assert list(real["n_real"]) == list(cell["n_real"])
    only = runs[runs["training_set"] == "noise only"]
    assert (only["n_real"] == 0).all() and (only["n_synthetic"] == 160).all()


def test_patient_subsets_are_nested_and_hold_every_class():
    groups = np.repeat([f"p{i}" for i in range(20)], 3)
    labels = np.tile([0, 0, 1], 20)
    labels[:57] = 0  # only the last patient holds class 1
    labels[58] = 1
    subsets = patient_subsets(groups, [0.1, 0.5, 1.0], seed=3, labels=labels)
    assert set(subsets[0.1]) <= set(subsets[0.5]) <= set(subsets[1.0])
    assert len(np.unique(groups[subsets[0.1]])) == 2 and len(subsets[1.0]) == 60
    assert 1 in labels[subsets[0.1]]
    assert not np.array_equal(subsets[0.1], patient_subsets(groups, [0.1, 1.0], seed=4,
                                                            labels=labels)[0.1])
    with pytest.raises(ValueError, match="holds every class"):
        patient_subsets(groups, [0.05, 1.0], seed=0, labels=(np.arange(60) == 0).astype(int),
                        tries=3)


def test_summary_intervals_and_verdicts():
    rows = []
    for seed, (real, better, worse, same) in enumerate([(0.5, 0.6, 0.3, 0.5), (0.6, 0.71, 0.4,
                                                                                 0.6),
                                                        (0.7, 0.79, 0.52, 0.7)]):
        for name, value in (("real", real), ("real+a", better), ("real+b", worse),
                            ("real+c", same)):
            rows.append({"task": "t", "training_set": name, "source": name[5:], "ratio": 1.0,
                         "real_fraction": 0.5, "seed": seed, "n_real": 10,
                         "n_synthetic": 0 if name == "real" else 10, "auc": value})
    summary = summarise(pd.DataFrame(rows), ["auc"]).set_index("training_set")
    assert summary.loc["real", "mean"] == pytest.approx(0.6)
    # t(0.975, 2) = 4.303; sd 0.1 -> half width 0.2484
    assert summary.loc["real", "ci_high"] - 0.6 == pytest.approx(4.3027 * 0.1 / 3 ** 0.5,
                                                                 rel=1e-3)
    assert summary.loc["real+a", "verdict"] == "helps"
    assert summary.loc["real+a", "diff_vs_real"] == pytest.approx(0.1)
    assert summary.loc["real+b", "verdict"] == "harms"
    assert summary.loc["real+c", "verdict"] == "none"
    assert summary.loc["real+c", "diff_vs_real"] == 0
    assert pd.isna(summary.loc["real", "verdict"])


def test_tasks_per_dataset_kind():
    brats = model_tasks(kind="brats", channels=["T1", "FLAIR", "edema", "necrosis", "enhancing"])
    assert [(t.name, t.kind) for t in brats] == [("tumour_labels", SEGMENTATION),
                                                 ("tumour_presence", CLASSIFICATION)]
    assert brats[0].inputs == ("T1", "FLAIR") and brats[0].main_metric == "dice_whole_tumour"
    assert brats[0].metrics == ["dice_edema", "dice_necrosis", "dice_enhancing",
                                "dice_whole_tumour"]
    assert model_tasks(kind="brats", channels=["T1", "T2"]) == []
    fundus = model_tasks(kind="fundus", channels=["R", "G", "B", "vessels"],
                         condition={"column": "laterality", "classes": ["L", "R"]})
    assert [t.name for t in fundus] == ["vessels", "laterality"]
    assert fundus[0].main_metric == "auc" and fundus[1].conditional
    prostate = model_tasks(kind="prostatex", channels=["T2", "ADC", "Ktrans"],
                           condition={"column": "ClinSig", "classes": ["False", "True"]})
    assert [(t.name, t.column, t.classes) for t in prostate] == [
        ("ClinSig", "ClinSig", ("False", "True"))]
    assert model_tasks(kind="prostatex", channels=["T2", "ADC", "Ktrans"]) == []


def test_task_data_from_images():
    images = np.zeros((3, 4, 8, 8), np.float32)
    images[0, 2, 2:4, 2:4] = 1.0  # edema, 4 px
    images[1, 3, 0, 0] = 0.6  # enhancing, 1 px
    images[:, 0] = 7.0
    seg, presence = model_tasks(kind="brats", channels=["T1", "T2", "edema", "enhancing"],
                                min_tumour_px=2)
    data = seg.from_images(images, ["T1", "T2", "edema", "enhancing"])
    assert data.x.shape == (3, 2, 8, 8) and (data.x[:, 0] == 7).all()
    assert data.y.shape == (3, 2, 8, 8) and data.y[0, 0].sum() == 4 and data.y[1, 1].sum() == 1
    labels = presence.from_images(images, ["T1", "T2", "edema", "enhancing"]).y
    assert list(labels) == [1, 0, 0]  # the 1-px slice is under min_tumour_px = 2
    with pytest.raises(ValueError, match="lack channel"):
        seg.from_images(images[:, :2], ["T1", "T2"])


def test_label_columns_and_classes():
    meta = pd.DataFrame({"tumour_px": [0, 12, np.nan], "ClinSig": ["TRUE", "FALSE", ""]})
    assert list(label_column(meta, "tumour")) == ["no", "yes", ""]
    clinsig = label_column(meta, "ClinSig")
    assert list(encode_labels(clinsig, ["FALSE", "TRUE"])) == [1, 0, -1]
    with pytest.raises(ValueError, match="not among"):
        encode_labels(["maybe"], ["FALSE", "TRUE"])
    with pytest.raises(KeyError, match="no column 'zone'"):
        label_column(meta, "zone")


def test_augmentation_moves_masks_with_images():
    gen = torch.Generator().manual_seed(0)
    x = torch.zeros(8, 1, 16, 16)
    x[:, :, 2:6, 3:9] = 1.0
    y = (x > 0.5).float()
    xa, ya = augment_batch(x, y, gen, rotation_deg=0.0, intensity=0.0)
    assert torch.equal((xa > 0.5).float(), ya)
    assert not torch.equal(xa, x)  # some image was flipped
    xr, yr = augment_batch(x, y, torch.Generator().manual_seed(1), flip=False, intensity=0.0)
    overlap = ((xr > 0.5) & (yr > 0.5)).sum() / (yr > 0.5).sum()
    assert overlap > 0.8 and torch.isin(yr, torch.tensor([0.0, 1.0])).all()
    xl, _ = augment_batch(x, None, torch.Generator().manual_seed(0), hflip=False,
                          rotation_deg=0.0, intensity=0.0)
    assert torch.equal(xl.sum(dim=2), x.sum(dim=2))  # no left-right flip: columns unchanged
    _, _ = augment_batch(x, None, gen)  # classification: no mask


def test_dice_and_segmenter_learn_a_disc():
    assert dice(np.zeros(4, bool), np.zeros(4, bool)) != dice(np.ones(4, bool),
                                                              np.ones(4, bool))
    assert dice(np.array([1, 1, 0, 0], bool), np.array([1, 0, 0, 0], bool)) == pytest.approx(2 / 3)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:16, :16]
    masks = np.stack([((yy - cy) ** 2 + (xx - cx) ** 2 < 9) for cy, cx in
                      rng.uniform(4, 12, (48, 2))])[:, None].astype(np.float32)
    x = (rng.standard_normal(masks.shape) * 0.5 + 2 * masks).astype(np.float32)
    task = Task("disc", SEGMENTATION, ("x",), ("disc",))
    data = TaskData(x[:32], masks[:32])
    norm = (np.array([x.mean()]), np.array([x.std()]))
    net = fit_task_net(task, data, norm=norm, seed=0, steps=40, batch_size=16, lr=0.01)
    scores = score_task(task, net, TaskData(x[32:], masks[32:]), norm=norm)
    assert set(scores) == {"dice_disc", "dice_whole_tumour"}
    assert scores["dice_disc"] > 0.8


@pytest.fixture(scope="module")
def label_model(tmp_path_factory):
    """A BraTS-like prepared dataset with one sequence and the three label channels (12
    subjects x 4 slices, 16 px, a bright disc = tumour in half the slices), its split, and a
    DCGAN trained for 3 steps on it."""
    from medgan.data.prepared import PreparedDatasetWriter
    from medgan.data.split import write_split
    from medgan.training.loop import train_gan

    root = tmp_path_factory.mktemp("utility")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:16, :16]
    images, meta = [], []
    for i in range(48):
        disc = ((yy - rng.uniform(5, 11)) ** 2 + (xx - rng.uniform(5, 11)) ** 2 < 9) & (i % 2 == 0)
        t1 = rng.standard_normal((16, 16)) * 0.3 + 2.0 * disc
        images.append(np.stack([t1, disc, disc & (yy % 2 == 0), np.zeros_like(disc)]))
        meta.append({"subject": f"s{i // 4:02d}", "slice": i % 4, "tumour_px": int(disc.sum())})
    channels = ["T1", "edema", "necrosis", "enhancing"]
    with PreparedDatasetWriter(root / "data", channels=channels, resolution=16,
                               info={"kind": "brats"}) as w:
        w.append(np.asarray(images, np.float32), meta)
    write_split(root / "data" / "meta.tsv", root / "data" / "split.tsv", fraction=0.25, seed=0)
    train_gan(root / "data", root / "run", channels=channels, resolution=16,
              architecture={"name": "dcgan", "latent_dim": 8, "width": 4, "max_width": 8},
              loss={"name": "gan"}, optimizer={"name": "adam", "lr": 2e-4},
              schedule={"steps": 3, "batch_size": 8, "log_every": 1, "sample_every": 10},
              seed=0, device="cpu", threads=1, progress=False, split=root / "data" / "split.tsv")
    return root


UTILITY_SETTINGS = {"fractions": [0.5, 1.0], "ratios": [1, 2], "n_seeds": 2, "steps": 4,
                    "batch_size": 8, "width": 4, "controls": True}


def test_evaluate_utility_writes_the_tables_and_figure(label_model):
    from medgan.analysis.utility.run import evaluate_utility

    out = label_model / "analysis"
    summary = evaluate_utility(label_model / "run" / "checkpoint.pt", label_model / "data",
                               label_model / "data" / "split.tsv", out,
                               settings=UTILITY_SETTINGS, model_name="m1", progress=False)
    for name in ("utility.tsv", "utility_runs.tsv", "utility.json", "utility.png"):
        assert (out / name).is_file(), name
    on_disk = pd.read_csv(out / "utility.tsv", sep="\t")
    assert len(on_disk) == len(summary) and set(on_disk["model"]) == {"m1"}
    assert set(on_disk["task"]) == {"tumour_labels", "tumour_presence"}
    sets = set(on_disk["training_set"])
    assert {"real", "augmented", "real+gan", "gan only", "real+oracle", "noise only",
            "real+repeat"} <= sets
    runs = pd.read_csv(out / "utility_runs.tsv", sep="\t")
    # per task and seed: 2 fractions x (real, augmented, 4 sources x 2 ratios) + 4 only = 24
    assert len(runs) == 2 * 2 * 24
    seg = runs[runs["task"] == "tumour_labels"]
    assert np.isfinite(seg["dice_whole_tumour"]).any()
    main = on_disk[on_disk["main"]]
    assert set(main["metric"]) == {"dice_whole_tumour", "auc"}
    record = json.loads((out / "utility.json").read_text())
    assert record["tasks"][1]["classes"] == ["no", "yes"]
    assert record["settings"] == UTILITY_SETTINGS


def test_study_table_gets_the_utility_headline(label_model):
    from medgan.analysis.evaluate import study_metrics_table

    table = study_metrics_table([], label_model / "study.tsv",
                                [label_model / "analysis" / "utility.tsv"])
    row = table.set_index("model").loc["m1"]
    assert row["utility_task"] == "tumour_labels" and row["utility_metric"] == "dice_whole_tumour"
    assert row["utility_fraction"] == 0.5
    assert row["utility_verdict"] in ("helps", "harms", "unclear", "none")
    with pytest.raises(Exception, match="utility table"):
        study_metrics_table([], label_model / "bad.tsv", [label_model / "data" / "meta.tsv"])


def test_config_refuses_utility_without_a_task():
    from pathlib import Path

    import yaml

    from medgan.config import ConfigError, check_config

    cfg = yaml.safe_load((Path(__file__).parents[1] / "config" / "config.yaml").read_text())
    check_config(cfg)
    cfg["models"]["han_dcgan_t1"]["analyses"] = ["utility"]
    with pytest.raises(ConfigError, match="models.han_dcgan_t1.analyses: utility needs"):
        check_config(cfg)
    cfg["models"]["han_dcgan_t1"]["condition"] = {"column": "tumour"}
    check_config(cfg)  # a conditional model has a classification task
