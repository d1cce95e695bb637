"""The analyses over files: metric suite of a trained model, study table, inversion, t-SNE and
interpolation outputs, as the workflow's rules call them."""

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medgan.analysis.encoder import train_encoder
from medgan.analysis.evaluate import (
    evaluate_model,
    load_model_data,
    study_metrics_table,
    synthetic_count,
    train_dataset_feature_net,
)
from medgan.analysis.health import VERDICTS
from medgan.analysis.latent_analysis import interpolate_model, invert_heldout, tsne_of_training_set
from medgan.analysis.metrics.controls import structured_images
from medgan.data.prepared import PreparedDatasetWriter
from medgan.data.split import write_split
from medgan.errors import InputError
from medgan.training import train_gan

SETTINGS = {"n_components": 4, "swd_patches_per_image": 8, "swd_directions": 16,
            "swd_repeats": 1, "msssim_pairs": 10, "kid_subsets": 2, "kid_subset_size": 6,
            "c2st_epochs": 1, "c2st_width": 4, "memorisation_pairs": 3, "delplace_n": 30}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    images = structured_images(48, resolution=16, channels=2, seed=0)
    meta = [{"subject": f"s{i // 4:02d}", "slice": i % 4} for i in range(48)]
    with PreparedDatasetWriter(root / "data", channels=["T1", "T2"], resolution=16) as w:
        w.append(images, meta)
    write_split(root / "data" / "meta.tsv", root / "data" / "split.tsv", fraction=0.25, seed=0)
    train_gan(root / "data", root / "run", channels=["T2", "T1"], resolution=16,
              architecture={"name": "dcgan", "latent_dim": 8, "width": 4, "max_width": 8},
              loss={"name": "gan"}, optimizer={"name": "adam", "lr": 2e-4},
              schedule={"steps": 3, "batch_size": 8, "log_every": 1, "sample_every": 10},
              seed=0, device="cpu", threads=1, progress=False, split=root / "data" / "split.tsv")
    train_dataset_feature_net(root / "data", root / "data" / "split.tsv", root / "fnet.pt",
                              settings={"steps": 2, "batch_size": 8, "width": 4,
                                        "feature_dim": 8}, progress=False)
    return root


def test_model_data_follows_the_split_and_the_models_channels(model):
    data = load_model_data(model / "run" / "checkpoint.pt", model / "data",
                           model / "data" / "split.tsv")
    assert data.channel_names == ["T2", "T1"]
    assert data.train.shape == (36, 2, 16, 16) and data.heldout.shape == (12, 2, 16, 16)
    assert not set(data.train_groups) & set(data.heldout_groups)
    stored = np.load(model / "data" / "images.npy")
    first_held = int(data.heldout_meta.index[0])  # row 0 of the held-out part
    assert first_held == 0
    held_rows = pd.read_csv(model / "data" / "split.tsv", sep="\t").query("split == 'heldout'")
    np.testing.assert_array_equal(data.heldout[0], stored[held_rows["index"].iloc[0]][[1, 0]])
    capped = load_model_data(model / "run" / "checkpoint.pt", model / "data",
                             model / "data" / "split.tsv", max_reference=10)
    assert len(capped.train) == 10


def test_evaluate_model_writes_both_rows(model):
    out = model / "analysis"
    table = evaluate_model(model / "run" / "checkpoint.pt", model / "data",
                           model / "data" / "split.tsv", out, settings=SETTINGS,
                           featurenet=model / "fnet.pt", model_name="m1")
    assert list(table["source"]) == ["synthetic", "real_heldout"]
    assert list(table["n_candidate"]) == [12, 12] and list(table["n_reference"]) == [36, 36]
    # Delplace's set: 30 generated images, all 12 held-out ones (sigma grows with N)
    assert list(table["delplace_n"]) == [30, 12]
    for col in ("rho", "sigma", "delta", "swd_mean", "msssim_mean", "domain_fid",
                "domain_coverage", "c2st_accuracy", "c2st_p_value", "memo_share_closer"):
        assert np.isfinite(table[col]).all(), col
    # the two-sample test draws as many synthetic images as there are training images; the
    # baseline has only the held-out ones; cross-validation tests every kept image once
    # (up to 2 x 36 and 2 x 12, less what the patient-aware folds trim to balance the classes)
    n_test = list(table["c2st_n_test"])
    assert 60 <= n_test[0] <= 72 and 16 <= n_test[1] <= 24 and list(table["c2st_folds"]) == [2, 2]
    assert (table["c2st_accuracy_lo"] <= table["c2st_accuracy"]).all()
    on_disk = pd.read_csv(out / "metrics.tsv", sep="\t")
    assert list(on_disk["model"]) == ["m1", "m1"] and on_disk["channels"][0] == "T2+T1"
    record = json.loads((out / "metrics.json").read_text())
    assert record["settings"] == SETTINGS and len(record["rows"]) == 2
    assert len(pd.read_csv(out / "memorisation.tsv", sep="\t")) == 12
    assert Image.open(out / "memorisation.png").size[0] > 0
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files


def test_study_table_keeps_one_baseline_per_dataset_view(model, tmp_path):
    out = model / "analysis" / "metrics.tsv"
    other = tmp_path / "other.tsv"
    pd.read_csv(out, sep="\t").assign(model="m2").to_csv(other, sep="\t", index=False)
    stats = tmp_path / "stats.jsonl"
    stats.write_text('{"step": 1, "d_loss": 1.0}\n{"step": 2, "d_loss": Infinity}\n')
    table = study_metrics_table([out, other], tmp_path / "study.tsv",
                                stats_files={"m1": model / "run" / "stats.jsonl", "m2": stats,
                                             "m3": model / "run" / "stats.jsonl"},
                                health_path=tmp_path / "health.tsv")
    assert list(table["model"]) == ["real held-out vs train", "m1", "m2"]
    assert list(table["source"]) == ["real_heldout", "synthetic", "synthetic"]
    assert list(table.columns[:5]) == ["model", "source", "health", "dataset", "channels"]
    assert table["health"][0] == "baseline" and table["health"][2] == "diverged"
    assert table["health"][1] in VERDICTS and table["health_reason"].notna().all()
    health = pd.read_csv(tmp_path / "health.tsv", sep="\t")
    assert list(health["model"]) == ["m1", "m2", "m3"]  # m3: no metrics, judged on its losses
    assert health["health"][2] == "uncertain" and "metric" in health["health_reason"][2]
    with pytest.raises(InputError, match="missing.tsv"):
        study_metrics_table([tmp_path / "missing.tsv"], tmp_path / "x.tsv")


def test_metric_inputs_are_checked(model, tmp_path):
    assert synthetic_count("heldout", 7) == 7 and synthetic_count(50, 7) == 50
    with pytest.raises(ValueError, match="n_synthetic"):
        synthetic_count("all", 7)
    bad = tmp_path / "split.tsv"
    bad.write_text("index\tgroup\tsplit\n0\ta\ttrain\n1\tb\theldout\n")
    with pytest.raises(InputError, match="has 2 rows but the dataset has 48"):
        evaluate_model(model / "run" / "checkpoint.pt", model / "data", bad, tmp_path / "o",
                       settings=SETTINGS, featurenet=model / "fnet.pt")
    with pytest.raises(InputError, match="fnet.pt"):
        load_model_data(model / "fnet.pt", model / "data", model / "data" / "split.tsv")
    assert not (tmp_path / "o").exists()


def test_inversion_tsne_and_interpolation_outputs(model):
    ckpt, split = model / "run" / "checkpoint.pt", model / "data" / "split.tsv"
    train_encoder(ckpt, model / "encoder.pt", steps=3, batch_size=4, progress=False)
    out = model / "latent"
    errors = invert_heldout(ckpt, model / "encoder.pt", model / "data", split,
                            figure=out / "rec.png", table=out / "rec.tsv",
                            codes=out / "codes.tsv", n_figure=3)
    assert len(errors) == 12 and {"subject", "slice", "mse", "mse_T2", "mse_T1"} <= set(errors)
    codes = pd.read_csv(out / "codes.tsv", sep="\t")
    assert len(codes) == 12 and [c for c in codes if c.startswith("z")] == [
        f"z{i}" for i in range(8)]
    emb = tsne_of_training_set(ckpt, model / "encoder.pt", model / "data", split,
                               figure=out / "tsne.png", table=out / "tsne.tsv",
                               color_by="slice", perplexity=5)
    assert len(emb) == 36 and {"tsne_1", "tsne_2", "slice"} <= set(emb)
    with pytest.raises(ValueError, match="no column 'laterality'"):
        tsne_of_training_set(ckpt, model / "encoder.pt", model / "data", split,
                             figure=out / "t2.png", table=out / "t2.tsv", color_by="laterality")
    interpolate_model(ckpt, model / "data", figure=out / "interp.png", walk=out / "walk.gif",
                      settings={"n_pairs": 1, "steps": 4, "keypoints": 3,
                                "frames_per_segment": 2})
    gif = Image.open(out / "walk.gif")
    assert gif.n_frames == 6
    for name in ("rec.png", "tsne.png", "interp.png"):
        assert (out / name).stat().st_size > 0


def test_c2st_falls_back_to_an_image_split_with_one_held_out_patient():
    from medgan.analysis.metrics import MetricInputs, compute_metrics

    ref = structured_images(40, resolution=16, seed=1)
    cand = structured_images(20, resolution=16, seed=2)

    def run(candidate_groups):
        inputs = MetricInputs(reference=ref, candidate=cand, heldout=cand, channel_names=["T1"],
                              data_range=2.0, settings={"c2st_epochs": 1, "c2st_width": 4},
                              reference_groups=np.repeat(np.arange(10), 4).astype(str),
                              candidate_groups=candidate_groups)
        return compute_metrics(inputs, ["c2st"])

    assert run(np.repeat(["a", "b"], 10))["c2st_group_aware"] == 1
    one_patient = run(np.array(["a"] * 20))
    assert one_patient["c2st_group_aware"] == 0 and 0 <= one_patient["c2st_accuracy"] <= 1
