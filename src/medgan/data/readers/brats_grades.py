"""Tumour grades of BraTS cases (HGG / LGG), as the releases record them.

The releases say a case's grade in one of three ways:

* **grade folders** (BRATS 2015-2018): the release root holds ``HGG/`` and ``LGG/``, and the
  case folders lie inside them (:func:`grade_folders`);
* **name_mapping.csv** (BraTS 2019-2020): a CSV beside the case folders with a ``Grade``
  column and one column of case ids (``BraTS_2020_subject_ID`` and the like; the column that
  names the most case folders is used);
* **a plain case list**: a text file, one case per line, ``<case id> <grade>`` separated by
  a tab, a comma or spaces (blank lines and lines starting with ``#`` are skipped; a first
  line ``case grade`` is a header).

:func:`case_grades` reads the grade of every case and raises one
:class:`~medgan.errors.InputError` naming the file when a case has no grade, a grade is not
``HGG`` or ``LGG``, a case is listed twice with two grades, or the mapping file is missing.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

from medgan.errors import InputError

GRADES = ("HGG", "LGG")
NAME_MAPPING = "name_mapping.csv"


def check_grades(grades: Sequence[str]) -> list[str]:
    """The requested grades, checked: a non-empty list of :data:`GRADES`, each once."""
    if isinstance(grades, str) or not isinstance(grades, Sequence) or not grades:
        raise ValueError(f"grades must be a non-empty list of {list(GRADES)}, got {grades!r}")
    bad = [g for g in grades if g not in GRADES]
    if bad or len(set(grades)) != len(grades):
        raise ValueError(f"grades must list each of {list(GRADES)} at most once, got {grades!r}")
    return list(grades)


def grade_folders(root: str | os.PathLike) -> dict[str, Path] | None:
    """``{grade: folder}`` when ``root`` is laid out as ``HGG/`` and ``LGG/`` (BRATS
    2015-2018), else None. A root that mixes grade folders with other folders is an error."""
    root = Path(root)
    subdirs = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    found = {p.name.upper(): p for p in subdirs if p.name.upper() in GRADES}
    if not found:
        return None
    others = sorted(p.name for p in subdirs if p.name.upper() not in GRADES)
    if others:
        raise InputError(
            root,
            f"mixes grade folders ({', '.join(sorted(found))}) with other "
            f"folders ({', '.join(others[:3])}); put every case folder in "
            f"one of {'/, '.join(GRADES)}/",
        )
    return dict(sorted(found.items()))


def _grade(value: str, path: Path, where: str) -> str:
    grade = value.strip().upper()
    if grade not in GRADES:
        raise InputError(
            path, f"{where}: unknown grade {value.strip()!r} (grades are {', '.join(GRADES)})"
        )
    return grade


def _add(grades: dict[str, str], case: str, grade: str, path: Path, where: str) -> None:
    if case in grades and grades[case] != grade:
        raise InputError(path, f"{where}: case {case} is listed as {grades[case]} and as {grade}")
    grades[case] = grade


def _read_mapping(path: Path, rows: list[list[str]], case_ids: Sequence[str]) -> dict[str, str]:
    """A name_mapping.csv-style table: a ``Grade`` column and the case-id column that names
    the most of ``case_ids``."""
    header = [h.strip() for h in rows[0]]
    g = [h.lower() for h in header].index("grade")
    wanted = set(case_ids)
    columns = [c for c in range(len(header)) if c != g]
    hits = [sum(len(r) > c and r[c].strip() in wanted for r in rows[1:]) for c in columns]
    if not columns or max(hits) == 0:
        raise InputError(
            path,
            f"no column names the case folders (e.g. {sorted(wanted)[:2]}); columns are {header}",
        )
    c = columns[max(range(len(columns)), key=lambda k: (hits[k], k))]  # ties: the last column
    grades: dict[str, str] = {}
    for n, row in enumerate(rows[1:], start=2):
        case = row[c].strip() if len(row) > c else ""
        if case:
            value = row[g] if len(row) > g else ""
            _add(grades, case, _grade(value, path, f"line {n}"), path, f"line {n}")
    return grades


def read_grade_file(path: str | os.PathLike, *, case_ids: Sequence[str] = ()) -> dict[str, str]:
    """``{case id: grade}`` from a ``name_mapping.csv``-style table or a plain case list (see
    the module doc); ``case_ids`` picks the id column of a table."""
    path = Path(path)
    if not path.is_file():
        raise InputError(
            path,
            "grade file not found (grades were asked for: give the "
            "release's name_mapping.csv or a case list)",
        )
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(path, f"cannot read the grade file ({err})") from err
    lines = [
        (n, ln)
        for n, ln in enumerate(text.splitlines(), start=1)
        if ln.strip() and not ln.lstrip().startswith("#")
    ]
    if not lines:
        raise InputError(path, "grade file is empty")
    first = lines[0][1]
    delim = "\t" if "\t" in first else ","
    head = [h.strip().lower() for h in first.split(delim)]
    if "grade" in head:  # a table with a Grade column (name_mapping.csv, or "case,grade")
        rows = list(csv.reader([ln for _, ln in lines], delimiter=delim))
        return _read_mapping(path, rows, case_ids)
    grades: dict[str, str] = {}
    for k, (n, line) in enumerate(lines):
        fields = line.replace(",", " ").replace("\t", " ").split()
        if k == 0 and [f.lower() for f in fields] == ["case", "grade"]:
            continue
        if len(fields) != 2:
            raise InputError(path, f"line {n}: expected '<case id> <grade>', got {line.strip()!r}")
        _add(grades, fields[0], _grade(fields[1], path, f"line {n}"), path, f"line {n}")
    return grades


def case_grades(
    root: str | os.PathLike,
    case_ids: Sequence[str],
    *,
    folder_grades: dict[str, str] | None = None,
    grade_file: str | os.PathLike | None = None,
) -> dict[str, str]:
    """The grade of each of ``case_ids`` (case folders under ``root``).

    From ``grade_file`` when given, else from the grade folders (``folder_grades``, case ->
    grade, see :func:`grade_folders`), else from ``root/name_mapping.csv``. Every case needs
    a grade; the error names the file that lacks it.
    """
    root = Path(root)
    if grade_file is None and folder_grades is not None:
        return {c: folder_grades[c] for c in case_ids}
    path = Path(grade_file) if grade_file is not None else root / NAME_MAPPING
    if grade_file is None and not path.is_file():
        raise InputError(
            path,
            "not found: grades were asked for, but the release has neither "
            f"{'/ nor '.join(GRADES)}/ folders nor a {NAME_MAPPING} (set the "
            "dataset's grade_file to a case list)",
        )
    grades = read_grade_file(path, case_ids=case_ids)
    missing = [c for c in case_ids if c not in grades]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise InputError(
            path,
            f"has no grade for case {missing[0]}{more} (of {len(case_ids)} case folders in {root})",
        )
    return {c: grades[c] for c in case_ids}
