"""The Snakemake workflow itself: lint, formatting, dry runs and a real run of the whole DAG."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.workflow


def run(args, cwd=REPO, check=True):
    exe = BIN / args[0]
    cmd = [str(exe) if exe.exists() else args[0], *args[1:]]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} failed ({proc.returncode}):\n"
            f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return proc


def test_snakemake_lint_is_clean():
    proc = run(["snakemake", "--lint"])
    assert "Congratulations, your workflow is in a good condition!" in proc.stdout + proc.stderr


def test_snakefmt_is_clean():
    run(["snakefmt", "--check", "Snakefile", "workflow"])


def test_ruff_is_clean():
    run(["ruff", "check", "."])


def test_dry_run_of_the_default_config_plans_the_han_study():
    proc = run(["snakemake", "-n", "--forceall", "--nolock", "--cores", "2"])
    out = proc.stdout + proc.stderr
    table = {
        line.split()[0]: int(line.split()[1])
        for line in out.splitlines()
        if len(line.split()) == 2 and line.split()[1].isdigit()
    }
    assert table["train_gan"] == 14  # 12 Han models, Kitchen's and the utility's label GAN
    assert table["prepare_dataset"] == 6
    assert table["train_vessel_segmenter"] == 1
    assert table["phantoms"] == 4
    assert table["real_grid"] == 7  # Han's four sequences, Kitchen's T2, ADC, Ktrans
    assert table["dataset_preview"] == 6
    assert table["synthetic_images"] == 14
    # analyses: every model's metrics, one feature network and split per dataset used,
    # the encoder, t-SNE and interpolation of the Concat 32 models and Kitchen's interpolation
    assert table["model_metrics"] == 13 and table["study_metrics"] == 2
    assert table["split_dataset"] == 4 and table["train_feature_net"] == 3
    assert table["train_encoder"] == 2 and table["invert_heldout"] == 2 and table["tsne"] == 2
    assert table["interpolation"] == 3


def test_dry_run_of_the_default_config_plans_utility_for_segmentation_and_classification():
    from medgan.analysis.utility.tasks import SEGMENTATION, model_tasks

    proc = run(["snakemake", "-n", "--forceall", "--nolock", "--cores", "2"])
    out = proc.stdout + proc.stderr
    models, current = set(), None
    for line in out.splitlines():
        words = line.split()
        if words[:1] == ["rule"] or words[:1] == ["localrule"]:
            current = words[1].rstrip(":")
        elif current == "utility" and line.strip().startswith("wildcards:"):
            models.add(line.split("model=")[1].split(",")[0].strip())
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    kinds = set()
    for m in models:
        spec = cfg["models"][m]
        kind = cfg["datasets"][spec["dataset"]]["kind"]
        kinds |= {t.kind for t in model_tasks(kind=kind, channels=spec["channels"],
                                                condition=spec.get("condition"))}
    assert {"kitchen_prostatex", "utility_dcgan_labels16"} <= models
    assert kinds == {SEGMENTATION, "classification"}


def test_misspelled_key_fails_before_any_job(tmp_path):
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["models"]["han_dcgan_t1"]["schedule"]["batch_szie"] = 64
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    proc = run(["snakemake", "-n", "--configfile", str(bad)], check=False)
    assert proc.returncode != 0
    assert "batch_szie" in proc.stdout + proc.stderr


def test_configfile_replaces_the_default(tmp_path):
    """A study config given with --configfile is not merged with the default's models."""
    proc = run(["snakemake", "-n", "--cores", "1", "--configfile", ".test/config/config.yaml"])
    out = proc.stdout + proc.stderr
    assert "tiny_dcgan_t1" in out and "han_dcgan_t1" not in out


def test_post_deploy_script_refuses_a_non_checkout(tmp_path):
    proc = subprocess.run(
        ["bash", str(REPO / "envs" / "medgan.post-deploy.sh")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 1
    assert "not a medgan checkout" in proc.stderr


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """Run the whole DAG of the tiny config in a fresh directory (copy of the workflow)."""
    work = tmp_path_factory.mktemp("workflow")
    shutil.copy(REPO / "Snakefile", work / "Snakefile")
    shutil.copytree(REPO / "workflow", work / "workflow")
    shutil.copytree(REPO / "envs", work / "envs")
    (work / "config").mkdir()
    shutil.copy(REPO / ".test" / "config" / "config.yaml", work / "config" / "config.yaml")
    proc = run(["snakemake", "--cores", "2", "all"], cwd=work)
    return work, proc


def test_tiny_workflow_produces_every_figure(tiny_run):
    work, _ = tiny_run
    figs = work / "results" / "figures" / "han2018"
    expected = {"real_T1.png", "real_FLAIR.png", "fig3_dcgan.png", "fig4_wgan.png", "models.tsv",
                "metrics.tsv"}
    for m in ("tiny_dcgan_t1", "tiny_wgan_concat"):
        expected |= {f"synthetic_{m}.png", f"loss_{m}.png"}
    assert {p.name for p in figs.iterdir()} == expected
    from PIL import Image

    for png in figs.glob("*.png"):
        with Image.open(png) as im:
            assert im.size[0] > 50 and im.size[1] > 50
    table = pd.read_csv(figs / "models.tsv", sep="\t")
    assert list(table["model"]) == ["tiny_dcgan_t1", "tiny_wgan_concat"]
    assert list(table["channels"]) == ["T1", "T1+T1c+T2+FLAIR"]
    assert (table["train_seconds"] > 0).all() and table["final_g_loss"].notna().all()


def test_tiny_workflow_writes_phantoms_prepared_data_and_models(tiny_run):
    work, _ = tiny_run
    auc = pd.read_csv(work / "results" / "segmenters" / "fundus_tiny" / "heldout_auc.tsv", sep="\t")
    assert list(auc["image"])[-1] == "mean" and auc["auc"].between(0, 1).all()
    for name, shape in [
        ("oasis_tiny", (1, 16, 16)),
        ("prostatex_tiny", (3, 16, 16)),
        ("fundus_tiny", (4, 64, 64)),
    ]:
        arr = np.load(work / "results" / "data" / name / "images.npy", mmap_mode="r")
        assert arr.shape[1:] == shape and arr.shape[0] > 0
        assert (work / "results" / "data" / name / "preview.png").is_file()
    cases = sorted(p for p in (work / "resources" / "phantoms" / "brats").iterdir() if p.is_dir())
    assert [c.name for c in cases] == [f"BraTS20_Training_00{i}" for i in range(1, 5)]
    data = work / "results" / "data" / "brats_tiny"
    images = np.load(data / "images.npy", mmap_mode="r")
    assert images.shape[1:] == (4, 16, 16) and images.dtype == np.float32
    assert (data / "preview.png").is_file()
    meta = pd.read_csv(data / "meta.tsv", sep="\t")
    assert len(meta) == images.shape[0]
    pggan = pd.read_json(work / "results" / "models" / "tiny_pggan_t2" / "stats.jsonl", lines=True)
    assert list(pggan["resolution"]) == [4, 8, 8, 16, 16]  # grown progressively from 4 px
    for m in ("tiny_dcgan_t1", "tiny_wgan_concat"):
        d = work / "results" / "models" / m
        assert {"checkpoint.pt", "stats.jsonl", "samples.png", "run.json"} <= {
            p.name for p in d.iterdir()
        }
        import torch

        ckpt = torch.load(d / "checkpoint.pt", weights_only=True)
        assert ckpt["step"] == 3
        synthetic = work / "results" / "synthetic" / m
        manifest = pd.read_csv(synthetic / "manifest.tsv", sep="\t")
        assert len(manifest) == 4
        assert len(list((synthetic / "nifti").glob("*.nii.gz"))) == 4 * (
            1 if m.endswith("t1") else 4
        )
        # interim checkpoints cleaned up; the final state stays (hard links) until a next run
        resume = work / "results" / "resume" / m
        assert sorted(p.relative_to(resume).as_posix() for p in resume.rglob("*")) == [
            "finished", "finished/checkpoint.pt", "finished/stats.jsonl"]
        assert (resume / "finished" / "checkpoint.pt").samefile(d / "checkpoint.pt")


def test_tiny_workflow_runs_every_analysis(tiny_run):
    work, _ = tiny_run
    analysis = work / "results" / "analysis"
    split = pd.read_csv(work / "results" / "data" / "brats_tiny" / "split.tsv", sep="\t")
    assert set(split["split"]) == {"train", "heldout"}
    assert split.groupby("group")["split"].nunique().max() == 1  # patients are not split
    n_train = int((split["split"] == "train").sum())
    run = json.loads((work / "results" / "models" / "tiny_dcgan_t1" / "run.json").read_text())
    assert run["config"]["dataset"]["n_images"] == n_train  # trained on the training split only
    table = pd.read_csv(work / "results" / "figures" / "han2018" / "metrics.tsv", sep="\t")
    assert list(table["source"]) == ["real_heldout", "real_heldout", "synthetic", "synthetic"]
    assert list(table["model"])[2:] == ["tiny_dcgan_t1", "tiny_wgan_concat"]
    assert (table["n_reference"] == n_train).all()
    for col in ("rho", "sigma", "delta", "swd_mean", "msssim_mean", "domain_fid",
                "c2st_accuracy", "c2st_p_value", "memo_share_closer"):
        assert table[col].notna().all(), col
    expected = {
        "tiny_dcgan_t1": {"metrics.tsv", "metrics.json", "memorisation.tsv", "memorisation.png",
                          "encoder.pt", "encoder_stats.jsonl", "reconstructions.png",
                          "reconstructions.tsv", "heldout_latents.tsv", "tsne.png", "tsne.tsv",
                          "interpolation.png", "walk.gif"},
        "tiny_wgan_concat": {"metrics.tsv", "metrics.json", "memorisation.tsv",
                             "memorisation.png"},
        "tiny_pggan_t2": {"encoder.pt", "encoder_stats.jsonl", "reconstructions.png",
                          "reconstructions.tsv", "heldout_latents.tsv"},
        "tiny_kitchen": {"interpolation.png", "walk.gif"},
        "tiny_fundus": {"vessel_auc.tsv"},
        "tiny_dcgan_labels": {"utility.tsv", "utility_runs.tsv", "utility.json", "utility.png"},
    }
    for model, names in expected.items():
        assert {p.name for p in (analysis / model).iterdir()} == names, model
    tsne = pd.read_csv(analysis / "tiny_dcgan_t1" / "tsne.tsv", sep="\t")
    assert len(tsne) == n_train and {"tsne_1", "tsne_2", "slice"} <= set(tsne.columns)
    vessels = pd.read_csv(analysis / "tiny_fundus" / "vessel_auc.tsv", sep="\t")
    assert set(vessels["source"]) == {"synthetic", "real_heldout"}
    assert (work / "results" / "featurenets" / "brats_tiny" / "featurenet.pt").is_file()
    utility = pd.read_csv(analysis / "tiny_dcgan_labels" / "utility.tsv", sep="\t")
    assert set(utility["task"]) == {"tumour_labels", "tumour_presence"}
    assert {"real", "augmented", "real+gan", "gan only"} <= set(utility["training_set"])
    record = json.loads((analysis / "tiny_dcgan_labels" / "utility.json").read_text())
    assert record["tasks"][1]["column"] == "tumour" and record["tasks"][1]["classes"] == ["no",
                                                                                           "yes"]


def test_tiny_workflow_is_complete_after_one_run(tiny_run):
    work, _ = tiny_run
    proc = run(["snakemake", "-n", "--cores", "2"], cwd=work)
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_tiny_workflow_builds_and_scores_the_vtt_kit(tiny_run):
    """The kit of the tiny config is built by `all`; answer files placed in the answers folder
    make the next run score them (Han 2018 Table 1 beside the C2ST columns)."""
    import json

    work, _ = tiny_run
    kit = work / "results" / "vtt" / "han2018"
    page = (kit / "vtt_han2018.html").read_text()
    assert "tiny_dcgan_t1" not in page and "http://" not in page and "https://" not in page
    key = pd.read_csv(kit / "key" / "answer_key.tsv", sep="\t")
    record = json.loads((kit / "key" / "kit.json").read_text())
    assert record["rounds"] == [1, 2] and record["n_items"] == len(key) == 8
    answers = work / "resources" / "vtt_answers" / "han2018"
    answers.mkdir(parents=True)
    rows = [
        {"round": r, "item": i, "answer": "real", "confidence": 2}
        for r in (1, 2)
        for i in key["item"]
    ]
    doc = {"format": "medgan-vtt-answers", "version": 1, "kit_id": record["kit_id"],
           "kit_name": "han2018", "reader": "R1", "answers": rows}
    (answers / "r1.json").write_text(json.dumps(doc))
    proc = run(["snakemake", "--cores", "1"], cwd=work)
    assert "vtt_score" in proc.stderr
    table = pd.read_csv(kit / "scores" / "table1.tsv", sep="\t")
    pooled = table[(table["reader"] == "pooled") & (table["model"] == "tiny_dcgan_t1")]
    assert pooled[["real_as_real", "synthetic_as_real", "accuracy"]].values.tolist() == [
        [2, 2, 0.5], [2, 2, 0.5]]
    assert (kit / "scores" / "scores.png").stat().st_size > 0
