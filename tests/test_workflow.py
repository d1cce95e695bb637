"""The Snakemake workflow itself: lint, formatting, dry runs and a real run of the whole DAG."""

from __future__ import annotations

import json
import re
import subprocess

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, run

from medgan.analysis.health import VERDICTS

pytestmark = pytest.mark.workflow


def test_a_plain_run_reads_the_scheduler_pace_from_profiles_default():
    """profiles/default (read by Snakemake by itself) sets one scheduler pass per 10 s while
    jobs wait, not Snakemake's one a second; the named local profile repeats it."""
    for path in ("profiles/default/config.yaml", "workflow/profiles/default/config.yaml"):
        assert yaml.safe_load((REPO / path).read_text())["max-jobs-per-timespan"] == "100/10s"
    assert set(yaml.safe_load((REPO / "profiles/default/config.yaml").read_text())) == {
        "max-jobs-per-timespan"}  # nothing else changes for a plain run
    proc = run(["snakemake", "-n", "--nolock", "--cores", "1", "han2018"])
    assert "profile profiles/default" in proc.stdout + proc.stderr


def test_longest_trainings_start_first_after_the_data_they_need():
    """train_gan's priority is its steps (Kitchen's DCGAN, the longest, first); the jobs
    trainings wait for (phantoms, preparing, splits, feature nets, the U-net) come before any."""
    proc = run(["snakemake", "-n", "--forceall", "--nolock", "--cores", "2"])
    jobs = {}
    # one block per job, each after its time stamp line
    for block in re.split(r"^\[.*\]$", proc.stdout + proc.stderr, flags=re.M):
        rule = re.search(r"^(?:local)?rule (\w+):", block, re.M)
        if rule:
            wildcards = re.search(r"wildcards: (.*)", block)
            priority = re.search(r"priority: (\d+)", block)
            key = (rule.group(1), wildcards.group(1) if wildcards else "")
            jobs[key] = int(priority.group(1)) if priority else 0
    train = {w: p for (r, w), p in jobs.items() if r == "train_gan"}
    assert max(train, key=train.get) == "model=kitchen_prostatex" and train[
        "model=kitchen_prostatex"] == 8000
    assert train["model=beers_fundus"] == 5000 and train["model=delplace_progan_gan"] == 2000
    before = [p for (r, _), p in jobs.items() if r in {
        "phantoms", "prepare_dataset", "split_dataset", "train_feature_net",
        "train_vessel_segmenter"}]
    assert len(before) >= 20 and min(before) > max(train.values())


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
    # 12 Han models, Kitchen's, Beers' 4 PGGANs, Delplace's 15, the utility's label GAN
    assert table["train_gan"] >= 33
    assert table["train_vessel_segmenter"] == 1
    assert table["phantoms"] == 4
    # Han's four sequences, Kitchen's 3 channels, Beers' 4, Delplace's T1
    assert table["real_grid"] >= 12
    assert table["synthetic_images"] == table["train_gan"]
    # analyses: every Han and Kitchen model's metrics, the encoder and t-SNE of Beers' two
    # PGGANs with the segmentation channels, Kitchen's interpolation
    assert table["model_metrics"] >= 13 and table["study_metrics"] >= 2
    assert table["train_encoder"] == 2 and table["invert_heldout"] == 2 and table["tsne"] == 2
    assert table["synthetic_vessel_auc"] == 1 and table["han2018_table1"] == 1


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




def test_tiny_workflow_produces_every_figure(tiny_run):
    work, _ = tiny_run
    figs = work / "results" / "figures" / "han2018"
    expected = {"real_T1.png", "real_FLAIR.png", "fig3_dcgan.png", "fig4_wgan.png", "models.tsv",
                "metrics.tsv", "health.tsv", "table1.tsv"}
    for m in ("tiny_dcgan_t1", "tiny_wgan_concat"):
        expected |= {f"synthetic_{m}.png", f"loss_{m}.png"}
    assert {p.name for p in figs.iterdir()} == expected
    from PIL import Image

    for png in figs.glob("*.png"):
        with Image.open(png) as im:
            assert im.size[0] > 50 and im.size[1] > 50
    table = pd.read_csv(figs / "models.tsv", sep="\t")
    assert list(table["model"]) == ["tiny_dcgan_t1", "tiny_wgan_concat"]
    assert list(table["channels"]) == ["T1", "Concat"]  # Concat: the sequences pooled
    assert (table["train_seconds"] > 0).all() and table["final_g_loss"].notna().all()


def test_tiny_workflow_writes_phantoms_prepared_data_and_models(tiny_run):
    work, _ = tiny_run
    auc = pd.read_csv(work / "results" / "segmenters" / "fundus_tiny" / "heldout_auc.tsv", sep="\t")
    assert list(auc["image"])[-1] == "mean" and auc["auc"].between(0, 1).all()
    assert auc["dice"].between(0, 1).all()
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
        # one channel each (tiny_wgan_concat is Han's pooled Concat)
        assert len(list((synthetic / "nifti").glob("*.nii.gz"))) == 4
        # interim checkpoints cleaned up; the final state stays (hard links) until a next run
        resume = work / "results" / "resume" / m
        kept = ["finished", "finished/checkpoint.pt", "finished/stats.jsonl"]
        if (d / "snapshots.jsonl").is_file():  # the snapshot log is kept with the final state
            kept.append("finished/snapshots.jsonl")
        assert sorted(p.relative_to(resume).as_posix() for p in resume.rglob("*")) == sorted(kept)
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
    pooled = pd.read_csv(work / "results" / "data" / "brats_tiny_pooled" / "split.tsv", sep="\t")
    n_pooled = int((pooled["split"] == "train").sum())
    assert n_pooled == 4 * n_train  # the same patients, every sequence's slices
    assert list(table["n_reference"]) == [n_train, n_pooled, n_train, n_pooled]
    for col in ("rho", "sigma", "delta", "swd_mean", "msssim_mean", "domain_fid",
                "c2st_accuracy", "c2st_p_value", "memo_share_closer", "health", "health_reason"):
        assert table[col].notna().all(), col
    for col in ("c2st_accuracy", "domain_precision", "domain_recall", "domain_coverage",
                "domain_density", "rho", "msssim_mean"):  # every interval holds its value
        assert (table[f"{col}_lo"] <= table[col]).all() and (table[col] <= table[f"{col}_hi"]).all()
    assert (table["c2st_n_test"] > 0).all() and (table["domain_n_fake"] > 0).all()
    assert list(table["health"])[:2] == ["baseline", "baseline"]
    assert set(table["health"][2:]) <= set(VERDICTS)
    expected = {
        "tiny_dcgan_t1": {"metrics.tsv", "metrics.json", "memorisation.tsv", "memorisation.png",
                          "encoder.pt", "encoder_stats.jsonl", "reconstructions.png",
                          "reconstructions.tsv", "heldout_latents.tsv", "tsne.png", "tsne.tsv",
                          "interpolation.png", "walk.gif", "privacy.tsv",
                          "privacy_scores.tsv", "privacy.json", "privacy.png"},
        "tiny_wgan_concat": {"metrics.tsv", "metrics.json", "memorisation.tsv",
                             "memorisation.png"},
        "tiny_pggan_t2": {"encoder.pt", "encoder_stats.jsonl", "reconstructions.png",
                          "reconstructions.tsv", "heldout_latents.tsv"},
        "tiny_kitchen": {"interpolation.png", "walk.gif"},
        "tiny_fundus": {"vessel_auc.tsv", "encoder.pt", "encoder_stats.jsonl",
                        "reconstructions.png", "reconstructions.tsv", "heldout_latents.tsv",
                        "tsne.png", "tsne.tsv"},
        "tiny_dcgan_labels": {"utility.tsv", "utility_runs.tsv", "utility.json", "utility.png"},
    }
    for model, names in expected.items():
        assert {p.name for p in (analysis / model).iterdir()} == names, model
    # issue 19: the membership-inference audit's headline in the study table, and the DP run
    assert {"privacy_auc_max", "privacy_tpr_at_1pct_fpr", "privacy_verdict"} <= set(table.columns)
    assert table.loc[table["model"] == "tiny_dcgan_t1", "privacy_auc_max"].between(0, 1).all()
    dp = json.loads((work / "results" / "models" / "tiny_wgan_concat" / "run.json").read_text())
    assert 0 < dp["privacy"]["epsilon_spent"] <= dp["privacy"]["epsilon_target"] == 10.0
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


def test_tiny_workflow_judges_the_health_of_every_model(tiny_run):
    work, proc = tiny_run
    for study in ("han2018", "kitchen2017", "beers2018", "delplace2019"):
        health = pd.read_csv(work / "results" / "figures" / study / "health.tsv", sep="\t")
        assert len(health) and set(health["health"]) <= set(VERDICTS), study
        assert health["health_reason"].notna().all(), study
        for model in health["model"]:  # the table printed at the end of the run
            assert re.search(rf"^{model} +{study} +{health.set_index('model').health[model]}",
                             proc.stdout, re.M), (model, proc.stdout[-3000:])
    han = pd.read_csv(work / "results" / "figures" / "han2018" / "health.tsv", sep="\t")
    assert list(han["model"]) == ["tiny_dcgan_t1", "tiny_wgan_concat"]
    assert "model health" in proc.stdout


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


# --- the four papers (issue 10): named targets, their figures and tables, the report ---------

PAPER_RULES = {
    "han2018": {"han2018_table1", "synthetic_panel", "real_grid"},
    "kitchen2017": {"kitchen2017_fig4", "kitchen2017_fig5", "kitchen2017_tables"},
    "beers2018": {"beers2018_fig4", "beers2018_fig5_tsne", "beers2018_traversal",
                  "beers2018_vessel_auc", "synthetic_panel"},
}


def _planned(target):
    proc = run(["snakemake", "-n", "--forceall", "--nolock", "--cores", "2", target])
    out = proc.stdout + proc.stderr
    return {line.split()[0] for line in out.splitlines()
            if len(line.split()) == 2 and line.split()[1].isdigit()}


@pytest.mark.parametrize("paper", sorted(PAPER_RULES))
def test_each_paper_target_plans_its_figures(paper):
    planned = _planned(paper)
    assert PAPER_RULES[paper] <= planned
    others = {r for p, rules in PAPER_RULES.items() if p != paper for r in rules
              if r.startswith(p)}
    assert not planned & others  # a paper's target plans no other paper's figures


def test_all_plans_every_paper():
    planned = _planned("all")
    for rules in PAPER_RULES.values():
        assert rules <= planned


def test_tiny_han2018_table1(tiny_run):
    work, _ = tiny_run
    table = pd.read_csv(work / "results/figures/han2018/table1.tsv", sep="\t")
    assert list(table["model"]) == ["tiny_dcgan_t1", "tiny_wgan_concat"]
    assert list(table["image type"]) == ["T1 (DCGAN, 16 x 16)", "Concat (WGAN, 16 x 16)"]
    counts = ["real_as_real", "real_as_synthetic", "synthetic_as_real", "synthetic_as_synthetic"]
    assert (table[counts].sum(axis=1) == table["n_test"]).all()
    assert list(table["paper: accuracy (%)"]) == [70, 66]
    assert table["accuracy (%)"].between(0, 100).all()


def test_tiny_kitchen2017_figures_and_tables(tiny_run):
    work, _ = tiny_run
    figs = work / "results/figures/kitchen2017"
    names = {p.name for p in figs.iterdir()}
    assert {"fig4_lesions_tiny_kitchen.png", "fig5_interpolation_tiny_kitchen.png",
            "table1_generator_tiny_kitchen.tsv", "table2_discriminator_tiny_kitchen.tsv",
            "fig_samples.png", "models.tsv"} <= names
    g = pd.read_csv(figs / "table1_generator_tiny_kitchen.tsv", sep="\t", keep_default_na=False)
    assert list(g["layer"]) == ["random input", "fully connected / ReLU", "reshape",
                                "T. conv. / ReLU", "T. conv. / ReLU", "T. conv. / ReLU"]
    assert list(g["out. shape"])[-1] == "16 x 16 x 3"
    d = pd.read_csv(figs / "table2_discriminator_tiny_kitchen.tsv", sep="\t",
                    keep_default_na=False)
    assert list(d["layer"]) == ["input", "conv. / L. ReLU", "conv. / L. ReLU",
                                "conv. / L. ReLU", "global avg. pool", "fully connected"]
    assert list(d["noise"]) == ["gaussian"] * 4 + ["dropout", ""]
    from PIL import Image

    with Image.open(figs / "fig4_lesions_tiny_kitchen.png") as im:
        assert im.size[0] > 200 and im.size[1] > 150  # 4 rows of 3 real + 3 synthetic


def test_tiny_beers2018_figures_and_tables(tiny_run):
    work, _ = tiny_run
    figs = work / "results/figures/beers2018"
    expected = {"fig2_fundus.png", "fig2_brats.png", "fig3_fundus.png", "fig3_brats.png",
                "fig4_tiny_fundus.png", "fig4_tiny_beers_brats.png", "fig5_tsne_tiny_fundus.png",
                "fig5_traversal_tiny_beers_brats.png", "fig5_traversal_tiny_beers_brats.tsv",
                "sec41_vessel_auc.tsv", "models.tsv"}
    assert expected <= {p.name for p in figs.iterdir()}
    auc = pd.read_csv(figs / "sec41_vessel_auc.tsv", sep="\t")
    assert list(auc["images"]) == ["synthetic", "real_heldout"]
    assert list(auc["paper_vessel_auc"].fillna(-1)) == [0.97, -1]
    path = pd.read_csv(figs / "fig5_traversal_tiny_beers_brats.tsv", sep="\t")
    assert len(path) >= 2 and path["slice_mean"].is_monotonic_increasing
    models = pd.read_csv(figs / "models.tsv", sep="\t")
    assert set(models["channels"]) == {"R+G+B+vessels", "R+G+B",
                                       "T1+T1c+T2+FLAIR+edema+necrosis+enhancing",
                                       "T1+T1c+T2+FLAIR"}


def test_report_of_the_tiny_run_builds(tiny_run):
    work, _ = tiny_run
    run(["snakemake", "--report", "report.html"], cwd=work)
    html = (work / "report.html").read_text(errors="replace")
    for text in ("Han et al. 2018", "Seah 2017", "Beers et al. 2018", "Table 1", "Fig. 4",
                 "Health of every model", "0. model health", '"delplace2019"'):
        assert text in html, text
    # one category per paper, and every caption renders
    assert '"Delplace 2019"' not in html
    assert "Undefined substitution" not in html and "System Message" not in html
