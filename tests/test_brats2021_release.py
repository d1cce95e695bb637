"""A BraTS 2021-sized release, simulated: 1,251 phantom cases in BraTS 2021's layout (with a
name_mapping.csv), the reader finds them all with their grades, and a dry run of Han 2018's
paper config on it plans the paper's jobs. benchmarks/brats2021_release.py times the same."""

from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pytest
import yaml
from conftest import REPO, run

from medgan.data.phantoms import make_brats2021_phantoms
from medgan.data.readers.brats import discover_brats_cases
from medgan.errors import InputError

KEYS = ("t1", "t1ce", "t2", "flair", "seg")


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """1,251 cases of 16^3 voxels, 3 subjects drawn per grade, the last 251 LGG."""
    out = tmp_path_factory.mktemp("brats2021") / "BraTS2021_Training_Data"
    folders = make_brats2021_phantoms(out, n_subjects=1251, shape=(16, 16, 16), seed=3,
                                      n_lgg=251, n_distinct=3)
    return out, folders


def test_layout_is_brats_2021(release):
    out, folders = release
    assert len(folders) == 1251
    assert folders[0] == out / "BraTS2021_00000" and folders[-1] == out / "BraTS2021_01250"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f.name for f in folders] + ["name_mapping.csv"])
    for folder in (folders[0], folders[700], folders[-1]):
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            f"{folder.name}_{k}.nii.gz" for k in KEYS)
    lines = (out / "name_mapping.csv").read_text().splitlines()
    assert lines[0] == "Grade,BraTS_2021_subject_ID" and len(lines) == 1252
    assert lines[1000] == "HGG,BraTS2021_00999" and lines[1001] == "LGG,BraTS2021_01000"


def test_the_reader_finds_every_case_and_its_grade(release):
    out, _ = release
    cases = discover_brats_cases(out, label=True, grades=["HGG"])
    assert len(cases) == 1000 and {c.grade for c in cases} == {"HGG"}
    assert cases[-1].case_id == "BraTS2021_00999"
    assert cases[0].files["T1c"].name == "BraTS2021_00000_t1ce.nii.gz"


def test_repeated_cases_are_their_draws_with_their_own_grade(release):
    _, folders = release

    def arrays(folder):
        return {k: np.asarray(nib.load(folder / f"{folder.name}_{k}.nii.gz").dataobj)
                for k in KEYS}

    first, repeat, other = arrays(folders[0]), arrays(folders[3]), arrays(folders[1])
    assert all(np.array_equal(first[k], repeat[k]) for k in KEYS)  # 1 + 3 % 3 == 1
    assert not np.array_equal(first["t1"], other["t1"])
    lgg = arrays(folders[1002])  # an LGG case of seed index 1 + 1002 % 3 == 1, as case 0
    assert 4 in first["seg"] and 4 not in lgg["seg"]  # LGG: no enhancing tumour
    assert np.array_equal(first["seg"] > 0, lgg["seg"] > 0)  # the same draw, the same tumour
    assert not np.array_equal(first["t1ce"], lgg["t1ce"])


def test_bad_arguments_write_nothing(tmp_path):
    with pytest.raises(ValueError, match="n_distinct"):
        make_brats2021_phantoms(tmp_path / "a", n_subjects=4, shape=(16, 16, 16), n_distinct=5)
    with pytest.raises(ValueError, match="grade_layout"):
        make_brats2021_phantoms(tmp_path / "b", n_subjects=4, shape=(16, 16, 16),
                                grade_layout="folders")
    assert list(tmp_path.iterdir()) == []


def test_no_grades_without_name_mapping(tmp_path):
    out = tmp_path / "r"
    make_brats2021_phantoms(out, n_subjects=2, shape=(16, 16, 16), grade_layout="none")
    assert not (out / "name_mapping.csv").exists()
    with pytest.raises(InputError, match="name_mapping.csv"):
        discover_brats_cases(out, grades=["HGG"])


def _planned(out: str) -> dict[str, int]:
    stats = out[out.index("Job stats:"):]
    return {ln.split()[0]: int(ln.split()[1]) for ln in stats.splitlines()
            if len(ln.split()) == 2 and ln.split()[1].isdigit()}


@pytest.mark.workflow
def test_dry_run_of_the_han_paper_config_on_1251_cases(release, tmp_path):
    out, _ = release
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(REPO / "Snakefile", work / "Snakefile")
    for name in ("workflow", "envs", "config"):
        shutil.copytree(REPO / name, work / name)
    han = yaml.safe_load((REPO / "config" / "studies" / "han2018.yaml").read_text())
    override = tmp_path / "release.yaml"
    override.write_text(yaml.safe_dump(
        {"datasets": {name: {"path": str(out)} for name in han["datasets"]}}))
    proc = run(["snakemake", "-n", "--configfile", "config/studies/han2018.yaml", str(override),
                "--cores", "1"], cwd=work)
    planned = _planned(proc.stdout + proc.stderr)
    # 4 datasets (T1/T1c/T2/FLAIR stacked and the pooled Concat, at 128 and 64 px), 12 GANs
    # (DCGAN and WGAN x six image types) with their samples, curves and metrics, one VTT kit
    assert planned["prepare_dataset"] == 4 and planned["dataset_preview"] == 4
    assert planned["train_gan"] == planned["model_metrics"] == planned["synthetic_grid"] == 12
    assert planned["vtt_kit"] == 1 and planned["han2018_table1"] == 1
    assert planned["total"] == 85 and "phantoms" not in planned
