"""Selecting BraTS cases by tumour grade (Han 2018: the HGG cases only), from the three ways the
releases record grades: HGG/ and LGG/ folders, name_mapping.csv, a plain case list."""

from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pytest

from medgan.data.phantoms import make_brats_phantoms
from medgan.data.prepare import prepare_dataset
from medgan.data.readers.brats import discover_brats_cases
from medgan.errors import InputError

SHAPE = (24, 20, 18)
N, N_LGG = 5, 2
HGG = [f"BraTS20_Training_00{i}" for i in (1, 2, 3)]
LGG = [f"BraTS20_Training_00{i}" for i in (4, 5)]


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    root = tmp_path_factory.mktemp("grades")
    out = {}
    for layout in ("folders", "name_mapping", "none"):
        out[layout] = root / layout
        make_brats_phantoms(
            out[layout], n_subjects=N, shape=SHAPE, seed=1, n_lgg=N_LGG, grade_layout=layout
        )
    return out


def _ids(cases):
    return [c.case_id for c in cases]


def test_phantoms_carry_grades_in_both_layouts(releases):
    assert sorted(p.name for p in releases["folders"].iterdir()) == ["HGG", "LGG"]
    assert sorted(p.name for p in (releases["folders"] / "LGG").iterdir()) == LGG
    mapping = (releases["name_mapping"] / "name_mapping.csv").read_text().splitlines()
    assert mapping[0] == "Grade,BraTS_2020_subject_ID"
    assert mapping[1:] == [f"HGG,{c}" for c in HGG] + [f"LGG,{c}" for c in LGG]
    assert not (releases["none"] / "name_mapping.csv").exists()
    # same subjects whatever the layout; an LGG has no enhancing tumour (label 4), an HGG has
    for case in HGG + LGG:
        sub = "HGG" if case in HGG else "LGG"
        a = nib.load(releases["folders"] / sub / case / f"{case}_seg.nii.gz").get_fdata()
        b = nib.load(releases["name_mapping"] / case / f"{case}_seg.nii.gz").get_fdata()
        np.testing.assert_array_equal(a, b)
        assert (4 in a) == (case in HGG) and (a > 0).any()


@pytest.mark.parametrize("layout", ["folders", "name_mapping"])
def test_grade_filter_keeps_only_the_asked_grades(releases, layout):
    root = releases[layout]
    assert _ids(discover_brats_cases(root, grades=["HGG"])) == HGG
    assert _ids(discover_brats_cases(root, grades=["LGG"])) == LGG
    both = discover_brats_cases(root, grades=["HGG", "LGG"])
    assert _ids(both) == HGG + LGG
    assert [c.grade for c in both] == ["HGG"] * 3 + ["LGG"] * 2


def test_without_a_filter_every_case_is_read_grade_folders_included(releases):
    cases = discover_brats_cases(releases["folders"])
    assert _ids(cases) == HGG + LGG and cases[-1].grade == "LGG"
    assert _ids(discover_brats_cases(releases["none"])) == HGG + LGG  # no grades needed


@pytest.mark.parametrize(
    "text",
    [
        "BraTS20_Training_001\tHGG\nBraTS20_Training_002 hgg\n# comment\n\n"
        "BraTS20_Training_003,HGG\n"
        "BraTS20_Training_004 LGG\nBraTS20_Training_005 LGG\n",
        "case grade\n" + "".join(f"{c} HGG\n" for c in HGG) + "".join(f"{c} LGG\n" for c in LGG),
        "ID,Grade,Site\n"
        + "".join(f"{c},HGG,x\n" for c in HGG)
        + "".join(f"{c},LGG,y\n" for c in LGG),
    ],
)
def test_a_plain_case_list_or_table_gives_the_grades(releases, tmp_path, text):
    listing = tmp_path / "grades.txt"
    listing.write_text(text)
    cases = discover_brats_cases(releases["none"], grades=["HGG"], grade_file=listing)
    assert _ids(cases) == HGG


def _message(exc) -> str:
    return str(exc.value)


def test_bad_grade_information_is_one_error_naming_the_file(releases, tmp_path):
    root = tmp_path / "release"
    shutil.copytree(releases["name_mapping"], root)
    mapping = root / "name_mapping.csv"
    lines = mapping.read_text().splitlines()

    # a case without a grade row
    mapping.write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(InputError, match="no grade for case BraTS20_Training_005") as exc:
        discover_brats_cases(root, grades=["HGG"])
    assert str(mapping) in _message(exc)
    # an empty grade, an unknown grade
    for bad in ("", "GBM"):
        mapping.write_text("\n".join(lines[:-1] + [f"{bad},BraTS20_Training_005"]) + "\n")
        with pytest.raises(InputError, match="line 6: unknown grade") as exc:
            discover_brats_cases(root, grades=["HGG"])
        assert str(mapping) in _message(exc)
    # a case listed with two grades
    mapping.write_text("\n".join(lines + ["HGG,BraTS20_Training_005"]) + "\n")
    with pytest.raises(InputError, match="listed as LGG and as HGG"):
        discover_brats_cases(root, grades=["HGG"])
    # no mapping file at all
    mapping.unlink()
    with pytest.raises(InputError, match="not found") as exc:
        discover_brats_cases(root, grades=["HGG"])
    assert str(mapping) in _message(exc)
    assert len(discover_brats_cases(root)) == N  # without the filter no grade is needed
    # a grade_file that does not exist, or names no case folder
    with pytest.raises(InputError, match="grade file not found") as exc:
        discover_brats_cases(root, grades=["HGG"], grade_file=tmp_path / "nope.csv")
    assert "nope.csv" in _message(exc)
    other = tmp_path / "other.csv"
    other.write_text("Grade,ID\nHGG,someone_else\n")
    with pytest.raises(InputError, match="no column names the case folders"):
        discover_brats_cases(root, grades=["HGG"], grade_file=other)
    with pytest.raises(ValueError, match="grades must"):
        discover_brats_cases(root, grades=["GBM"], grade_file=other)


def test_mixed_grade_and_case_folders_and_no_case_of_the_grade(releases, tmp_path):
    root = tmp_path / "mixed"
    shutil.copytree(releases["folders"], root)
    (root / "BraTS20_Training_009").mkdir()
    with pytest.raises(InputError, match="mixes grade folders"):
        discover_brats_cases(root)
    only_lgg = tmp_path / "only_lgg"
    shutil.copytree(releases["folders"] / "LGG", only_lgg / "LGG")
    with pytest.raises(InputError, match=r"no case of grade\(s\) \['HGG'\]"):
        discover_brats_cases(only_lgg, grades=["HGG"])


def test_prepared_dataset_holds_only_hgg_subjects(releases, tmp_path):
    import pandas as pd

    dataset = {
        "kind": "brats",
        "naming": "brats2017",
        "sequences": ["T1", "FLAIR"],
        "grades": ["HGG"],
        "channel_mode": "pooled",
        "preprocessing": {
            "slice_start": 0.25,
            "slice_stop": 0.75,
            "slice_units": "fraction",
            "resolution": 16,
        },
    }
    info = prepare_dataset(releases["folders"], tmp_path / "out", dataset=dataset, name="han")
    meta = pd.read_csv(tmp_path / "out" / "meta.tsv", sep="\t")
    assert sorted(meta["subject"].unique()) == HGG
    assert info["n_subjects"] == 3 and info["config"]["grades"] == ["HGG"]
