"""Han 2018's paper config (config/studies/han2018.yaml) on HGG/LGG phantoms: the dry run plans
the Visual Turing Test kit of Table 1, and preparing a dataset keeps only the HGG cases."""

from __future__ import annotations

import shutil

import pandas as pd
import yaml
from conftest import REPO, run

from medgan.data.phantoms import make_brats_phantoms

HAN = REPO / "config" / "studies" / "han2018.yaml"


def _planned(out: str) -> dict[str, int]:
    return {
        line.split()[0]: int(line.split()[1])
        for line in out.splitlines()
        if len(line.split()) == 2 and line.split()[1].isdigit()
    }


def _workdir(tmp_path, cfg):
    """A copy of the workflow and a phantom release for the paper config; snakemake's args."""
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(REPO / "Snakefile", work / "Snakefile")
    shutil.copytree(REPO / "workflow", work / "workflow")
    shutil.copytree(REPO / "envs", work / "envs")
    shutil.copytree(REPO / "config", work / "config")
    # a BRATS 2015-2018 style release: HGG/ and LGG/; 152 sagittal slices hold Han's 80-149
    release = tmp_path / "BRATS"
    make_brats_phantoms(
        release, n_subjects=4, shape=(152, 20, 16), seed=2, n_lgg=2, grade_layout="folders"
    )
    override = tmp_path / "here.yaml"
    override.write_text(
        yaml.safe_dump({"datasets": {name: {"path": str(release)} for name in cfg["datasets"]}})
    )
    return work, ["--configfile", "config/studies/han2018.yaml", str(override), "--cores", "1"]


def test_han_paper_config_selects_hgg_and_plans_the_vtt_kit(tmp_path):
    cfg = yaml.safe_load(HAN.read_text())
    kit = cfg["vtt"]["kits"]["han2018"]
    assert len(kit["models"]) == 12 and (kit["n_real"], kit["n_synthetic"]) == (50, 50)
    assert all(ds["grades"] == ["HGG"] for ds in cfg["datasets"].values())

    work, args = _workdir(tmp_path, cfg)
    proc = run(["snakemake", "-n", *args], cwd=work)
    planned = _planned(proc.stdout + proc.stderr)
    assert planned["vtt_kit"] == 1 and planned["train_gan"] == 12
    assert planned["prepare_dataset"] == 4 and "phantoms" not in planned

    # the one cheap job of that plan, run for real: only the HGG cases are prepared
    run(["snakemake", *args, "results/data/brats_han_64/meta.tsv"], cwd=work)
    meta = pd.read_csv(work / "results" / "data" / "brats_han_64" / "meta.tsv", sep="\t")
    assert sorted(meta["subject"].unique()) == ["BraTS20_Training_001", "BraTS20_Training_002"]
    assert len(meta) == 2 * 70  # sagittal slices #80-#149 of each HGG case


def test_han_paper_config_plans_stylegan2_for_each_image_type_when_switched_on(tmp_path):
    """`stylegan2: true` (config/studies/options/han2018_stylegan2.yaml) adds one StyleGAN2 +
    ADA model per image type and their panel to the plan: 12 + 6 trainings (off: 12, above)."""
    cfg = yaml.safe_load(HAN.read_text())
    work, args = _workdir(tmp_path, cfg)
    switch = ["config/studies/options/han2018_stylegan2.yaml"]  # a third --configfile
    proc = run(["snakemake", "-n", *args[:3], *switch, *args[3:]], cwd=work)
    planned = _planned(proc.stdout + proc.stderr)
    assert planned["train_gan"] == 18 and planned["vtt_kit"] == 1
    target = "results/figures/han2018/fig_stylegan2.png"
    proc = run(["snakemake", "-n", *args[:3], *switch, *args[3:], target], cwd=work)
    out = proc.stdout + proc.stderr
    for kind in ("t1", "t1c", "t2", "flair", "concat128", "concat64"):
        assert f"results/models/han_stylegan2_{kind}/checkpoint.pt" in out
