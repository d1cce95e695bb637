"""Read and check the answer files of a kit (JSON or CSV, as the reader page writes them).

Every file must name this kit's id, one reader, and answer every item of every round of the
kit exactly once, with ``real`` or ``synthetic`` and, when the kit asks for it, a confidence
1..levels. Anything else - a file for another kit, an unknown or duplicated item, a missing
answer, a file edited into another structure, two files of one reader id - raises one
:class:`~medgan.errors.InputError` naming the file (or the files) and the problem, before any
score is written.

Two more checks keep one reader from being counted twice. A file's name must agree with the
reader it names: the page names it ``vtt_<kit>_<kit id>_<reader>.json`` (or ``.csv``; a
browser's `` (1)`` suffix for a second download is allowed), and a file whose name ends in
another reader's id is refused. And a file whose answers duplicate another file's - the same
items with the same answers, confidences and answer times (the page stamps every answer to
the millisecond, so two readers never share them) - is refused as a copy, naming both files.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from medgan.errors import InputError
from medgan.studies.vtt.page import ANSWERS_FORMAT

ANSWER_SUFFIXES = (".json", ".csv")
READER_GROUPS = "readers.tsv"
CSV_COLUMNS = ["kit_id", "kit_name", "reader", "round", "set", "item", "answer", "confidence"]
LABELS = ("real", "synthetic")


def answer_files(folder: str | os.PathLike) -> list[Path]:
    """The answer files of a folder (``*.json`` and ``*.csv``, not hidden), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "is not a folder of answer files")
    files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in ANSWER_SUFFIXES and not p.name.startswith(".")
    )
    if not files:
        raise InputError(folder, "holds no answer files (*.json or *.csv from the reader page)")
    return files


def _read_json(path: Path) -> tuple[str, str, list[dict[str, Any]]]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(path, f"is not a readable JSON answer file ({err})") from err
    if not isinstance(doc, dict) or doc.get("format") != ANSWERS_FORMAT:
        raise InputError(path, f'is not a medgan answer file (no "format": "{ANSWERS_FORMAT}")')
    answers = doc.get("answers")
    if not isinstance(answers, list) or not all(isinstance(a, dict) for a in answers):
        raise InputError(path, '"answers" must be a list of objects, one per image')
    return doc.get("kit_id"), doc.get("reader"), answers


def _read_csv(path: Path) -> tuple[str, str, list[dict[str, Any]]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
            header = rows[0].keys() if rows else []
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise InputError(path, f"is not a readable CSV answer file ({err})") from err
    missing = [c for c in CSV_COLUMNS if c not in header]
    if not rows or missing:
        raise InputError(
            path,
            f"is not a medgan answer file (missing column(s) {missing})"
            if missing
            else "has no answer rows",
        )
    for col in ("kit_id", "reader"):
        values = sorted({r[col] for r in rows})
        if len(values) != 1:
            raise InputError(path, f"names several values of {col}: {values[:3]}")
    answers = [
        {
            "round": r["round"],
            "item": r["item"],
            "answer": r["answer"],
            "confidence": r["confidence"],
            "answered_at": r.get("answered_at"),
        }
        for r in rows
    ]
    return rows[0]["kit_id"], rows[0]["reader"], answers


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _check_answer(path: Path, i: int, a: dict[str, Any], levels: int) -> dict[str, Any]:
    rnd, item, label, conf = a.get("round"), a.get("item"), a.get("answer"), a.get("confidence")
    if _int(rnd) is None or not isinstance(item, str) or label not in LABELS:
        raise InputError(
            path,
            f"answer {i + 1} is not a round number, an item id and "
            f"'real'/'synthetic' (got {rnd!r}, {item!r}, {label!r})",
        )
    if conf in ("", None):
        conf = None
    elif _int(conf) is None or not 1 <= _int(conf) <= max(levels, 1) or not levels:
        raise InputError(
            path,
            f"answer {i + 1} (item {item}) has confidence {conf!r}; "
            + (f"expected 1-{levels}" if levels else "this kit asks for none"),
        )
    if levels and conf is None:
        raise InputError(
            path,
            f"answer {i + 1} (item {item}) has no confidence; the kit asks for one of 1-{levels}",
        )
    at = a.get("answered_at")
    return {
        "round": _int(rnd),
        "item": item,
        "answer": label,
        "confidence": None if conf is None else _int(conf),
        "answered_at": at.strip() if isinstance(at, str) and at.strip() else None,
    }


_COPY_SUFFIX = re.compile(r"\s*\(\d+\)$")  # "name (1).json": a browser's second download


def check_file_name(path: Path, reader: str) -> None:
    """A file's name must end in the reader it names (``..._<reader>.json``, as the page
    names it), else :class:`InputError`: a copy of one reader's file with the reader edited."""
    stem = _COPY_SUFFIX.sub("", path.stem).lower()  # file systems may ignore case
    if stem != reader.lower() and not stem.endswith(f"_{reader.lower()}"):
        raise InputError(
            path,
            f"names reader {reader!r} but its file name does not end in '_{reader}' (the page "
            f"names it vtt_<kit>_<kit id>_{reader}{path.suffix}): a file of another reader "
            "with the reader edited? Rename it only if it is truly that reader's",
        )


def read_answer_file(
    path: str | os.PathLike,
    *,
    kit_id: str,
    items: Sequence[str],
    rounds: Sequence[int],
    levels: int,
) -> pd.DataFrame:
    """One checked answer file as a table (reader, round, item, answer, confidence)."""
    path = Path(path)
    reader_fn = _read_csv if path.suffix.lower() == ".csv" else _read_json
    file_kit, reader, raw = reader_fn(path)
    if file_kit != kit_id:
        raise InputError(
            path,
            f"answers kit {file_kit!r}, not this kit {kit_id!r} "
            "(a file for another kit or another version of it)",
        )
    if not isinstance(reader, str) or not reader.strip():
        raise InputError(path, "names no reader id")
    check_file_name(path, reader.strip())
    rows = [_check_answer(path, i, a, levels) for i, a in enumerate(raw)]
    table = pd.DataFrame(rows, columns=["round", "item", "answer", "confidence", "answered_at"])
    known = set(items)
    unknown = sorted(set(table["item"]) - known)
    if unknown:
        raise InputError(
            path, f"answers {len(unknown)} image(s) that are not in the kit: {unknown[:3]}"
        )
    bad_rounds = sorted(set(table["round"]) - set(rounds))
    if bad_rounds:
        raise InputError(path, f"has round(s) {bad_rounds}; the kit has {list(rounds)}")
    dup = table[table.duplicated(["round", "item"], keep=False)]
    if len(dup):
        first = dup.iloc[0]
        raise InputError(
            path,
            f"answers {dup[['round', 'item']].drop_duplicates().shape[0]} "
            f"image(s) more than once (e.g. item {first['item']} in round "
            f"{first['round']})",
        )
    for rnd in rounds:
        done = set(table.loc[table["round"] == rnd, "item"])
        missing = [i for i in items if i not in done]
        if missing:
            raise InputError(
                path,
                f"misses {len(missing)} of {len(items)} answers in round "
                f"{rnd} (e.g. {missing[:3]})",
            )
    table.insert(0, "reader", reader.strip())
    table["file"] = path.name
    return table


def read_answers(
    folder: str | os.PathLike,
    *,
    kit_id: str,
    items: Sequence[str],
    rounds: Sequence[int],
    levels: int,
) -> pd.DataFrame:
    """Every answer file of ``folder``, checked, as one table; one file per reader id."""
    tables = [
        read_answer_file(p, kit_id=kit_id, items=items, rounds=rounds, levels=levels)
        for p in answer_files(folder)
    ]
    seen: dict[str, str] = {}
    for t in tables:
        reader, name = t["reader"].iloc[0], t["file"].iloc[0]
        if reader in seen:
            raise InputError(
                Path(folder) / name,
                f"is a second answer file of reader {reader!r} (the other is "
                f"{seen[reader]}); keep one file per reader - answers of two "
                "files are never merged",
            )
        seen[reader] = name
    _refuse_copies(Path(folder), tables)
    return pd.concat(tables, ignore_index=True)


def _refuse_copies(folder: Path, tables: Sequence[pd.DataFrame]) -> None:
    """One error naming both files when two files hold the same answers at the same times."""
    seen: dict[tuple, str] = {}
    cols = ["round", "item", "answer", "confidence", "answered_at"]
    for t in tables:
        if t["answered_at"].isna().any():  # hand-made files without times: nothing to compare
            continue
        rows = t[cols].astype(str).sort_values(["round", "item"]).itertuples(index=False)
        fingerprint = tuple(map(tuple, rows))
        name = t["file"].iloc[0]
        if fingerprint in seen:
            raise InputError(
                folder / name,
                f"duplicates {folder / seen[fingerprint]}: the same items with the same answers "
                "and answer times - a copy of one reader's file (keep one; a second reader "
                "answers on the page)",
            )
        seen[fingerprint] = name


def read_reader_groups(
    folder: str | os.PathLike, *, readers: Sequence[str]
) -> dict[str, str] | None:
    """The optional ``readers.tsv`` of an answer folder (columns ``reader`` and ``group``, e.g.
    the readers' experience as in Park et al. 2021): reader -> group, or None when absent.
    Every reader with an answer file must be listed, once."""
    path = Path(folder) / READER_GROUPS
    if not path.is_file():
        return None
    try:
        table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise InputError(path, f"cannot read the reader groups ({err})") from err
    missing = {"reader", "group"} - set(table.columns)
    if missing:
        raise InputError(path, f"missing column(s) {sorted(missing)}")
    table = table.assign(reader=table["reader"].str.strip(), group=table["group"].str.strip())
    twice = sorted(table.loc[table["reader"].duplicated(), "reader"])
    if twice:
        raise InputError(path, f"lists reader(s) {twice[:3]} more than once")
    if (table["group"] == "").any():
        raise InputError(path, "has a reader without a group")
    unlisted = sorted(set(readers) - set(table["reader"]))
    if unlisted:
        raise InputError(path, f"does not list reader(s) {unlisted[:3]} who sent answer files")
    return dict(zip(table["reader"], table["group"], strict=True))
