"""Visual Turing Test kit: blinding, kit id, the page's offline content, answer files, scoring.

The browser itself is tested in test_vtt_browser.py; here answer files are written as the page
writes them, from scripted answers, and the scores compared with exact counts.
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medgan.errors import InputError
from medgan.studies.vtt.kit import assemble_kit, kit_id_of, write_kit
from medgan.studies.vtt.page import ANSWERS_FORMAT
from medgan.studies.vtt.scoring import binomial_p, fleiss_kappa, score_answers
from medgan.studies.vtt.selection import pick_least_used, toy_blocks


@pytest.fixture
def kit(tmp_path):
    kit = assemble_kit(toy_blocks(n_real=3, n_synthetic=3, seed=1), name="toy", seed=7)
    paths = {
        "page": tmp_path / "vtt_toy.html",
        "key": tmp_path / "key" / "answer_key.tsv",
        "record": tmp_path / "key" / "kit.json",
    }
    write_kit(kit, page_path=paths["page"], key_path=paths["key"], record_path=paths["record"])
    return kit, paths


def write_answers(
    path: Path,
    kit,
    reader: str,
    calls: dict[str, str],
    *,
    conf=3,
    fmt: str = "json",
    kit_id: str | None = None,
) -> Path:
    """An answer file as the page writes it; ``calls``: item -> answer (round 1). The answer
    times differ between readers, as a page's millisecond stamps do."""
    ms = sum(map(ord, reader)) % 1000
    rows = [
        {
            "round": 1,
            "set": 1,
            "item": item,
            "answer": a,
            "confidence": conf,
            "answered_at": f"2026-11-30T08:00:{i:02d}.{ms:03d}Z",
        }
        for i, (item, a) in enumerate(calls.items())
    ]
    kit_id = kit.kit_id if kit_id is None else kit_id
    if fmt == "json":
        path.write_text(
            json.dumps(
                {
                    "format": ANSWERS_FORMAT,
                    "version": 1,
                    "kit_id": kit_id,
                    "kit_name": "toy",
                    "reader": reader,
                    "answers": rows,
                }
            )
        )
    else:
        with open(path, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=["kit_id", "kit_name", "reader", *rows[0]])
            w.writeheader()
            for r in rows:
                w.writerow({"kit_id": kit_id, "kit_name": "toy", "reader": reader, **r})
    return path


def score(folder: Path, paths: dict, out: Path) -> pd.DataFrame:
    return score_answers(
        answers_dir=folder,
        key_path=paths["key"],
        record_path=paths["record"],
        table1_path=out / "table1.tsv",
        scores_path=out / "scores.tsv",
        readers_path=out / "readers.tsv",
        figure_path=out / "scores.png",
    )


def test_kit_is_blinded_balanced_and_offline(kit):
    kit_obj, paths = kit
    page = paths["page"].read_text()
    key = pd.read_csv(paths["key"], sep="\t")
    # balanced: every set has its real and synthetic images, and the key says which is which
    assert Counter(zip(key["model"], key["truth"], strict=True)) == {
        ("toy_t1", "real"): 3,
        ("toy_t1", "synthetic"): 3,
        ("toy_concat", "real"): 3,
        ("toy_concat", "synthetic"): 3,
    }
    # blinded: no model name in the page; the payload has ids, labels and images only
    assert "toy_t1" not in page and "toy_concat" not in page
    payload = json.loads(
        re.search(r'<script id="kit" type="application/json">(.*?)</script>', page, re.S).group(1)
    )
    assert set(payload["items"]) == set(key["item"])
    assert all(set(v) == {"png"} for v in payload["items"].values())
    bare = json.dumps({**payload, "items": sorted(payload["items"])})
    for secret in ["truth", "latent", "subject", "model", "real", "synthetic", "dataset"]:
        assert secret not in bare, secret
    assert all(re.fullmatch(r"i[0-9a-f]{8}", i) for i in key["item"])
    # the order reveals nothing simple: not all real items first within a set
    truth = key.set_index("item")["truth"]
    for s in payload["rounds"][0]["sets"]:
        seq = [truth[i] for i in s["items"]]
        assert seq != sorted(seq) and seq != sorted(seq, reverse=True)
    # offline: no URL other than data: images, and a policy that forbids any other source
    assert not re.search(r"(src|href)\s*=\s*[\"'](?!data:)", page)
    assert "http://" not in page and "https://" not in page
    assert "default-src 'none'" in page
    # the id is the hash of the content, recorded in kit.json and embedded in the page
    assert kit_obj.kit_id == kit_id_of(payload) == json.loads(paths["record"].read_text())["kit_id"]


def test_kit_id_follows_the_content():
    a = assemble_kit(toy_blocks(seed=1), name="toy", seed=7)
    b = assemble_kit(toy_blocks(seed=1), name="toy", seed=7)
    c = assemble_kit(toy_blocks(seed=1), name="toy", seed=8)
    d = assemble_kit(toy_blocks(seed=2), name="toy", seed=7)
    assert a.kit_id == b.kit_id
    assert len({a.kit_id, c.kit_id, d.kit_id}) == 3
    pd.testing.assert_frame_equal(a.key, b.key)


def test_second_round_with_real_examples():
    kit = assemble_kit(
        toy_blocks(n_examples=2),
        name="toy",
        second_round={"clue": "real_examples", "n_examples": 2, "text": "hint"},
    )
    r1, r2 = kit.payload["rounds"]
    assert r2["clue"] == {"kind": "real_examples", "text": "hint"}
    for s1, s2 in zip(r1["sets"], r2["sets"], strict=True):
        assert sorted(s1["items"]) == sorted(s2["items"])
        assert len(s2["examples"]) == 2 and len(s2["examples"][0]) == len(s1["channels"])
    with pytest.raises(ValueError, match="clue"):
        assemble_kit(toy_blocks(), name="toy", second_round={"clue": "magic"})


def test_least_used_real_images_do_not_repeat_until_needed():
    used = Counter()
    rng = np.random.default_rng(0)
    a = pick_least_used(np.arange(10), 5, used, rng)
    b = pick_least_used(np.arange(10), 5, used, rng)
    assert not set(a) & set(b)
    c = pick_least_used(np.arange(10), 3, used, rng)
    assert len(set(c)) == 3 and max(used.values()) == 2


def test_fleiss_kappa_and_binomial_against_published_values():
    # Fleiss (1971) / the standard worked example: 10 subjects, 14 raters, 5 categories
    table = np.array(
        [
            [0, 0, 0, 0, 14],
            [0, 2, 6, 4, 2],
            [0, 0, 3, 5, 6],
            [0, 3, 9, 2, 0],
            [2, 2, 8, 1, 1],
            [7, 7, 0, 0, 0],
            [3, 2, 6, 3, 0],
            [2, 5, 3, 2, 2],
            [6, 5, 2, 1, 0],
            [0, 2, 2, 3, 7],
        ]
    )
    assert fleiss_kappa(table) == pytest.approx(0.20993, abs=1e-5)
    assert fleiss_kappa(np.array([[2, 0], [0, 2]])) == pytest.approx(1.0)
    assert np.isnan(fleiss_kappa(np.array([[2, 0], [2, 0]])))
    assert binomial_p(10, 10) == pytest.approx(2 * 0.5**10)
    assert binomial_p(5, 10) == pytest.approx(1.0)


def test_scores_reproduce_the_scripted_answers(kit, tmp_path):
    kit_obj, paths = kit
    key = kit_obj.key
    folder = tmp_path / "answers"
    folder.mkdir()
    # A: every answer right. B: calls everything real, confidence 1 (JSON and CSV files)
    write_answers(
        folder / "a.json", kit_obj, "A", dict(zip(key["item"], key["truth"], strict=True)), conf=5
    )
    write_answers(
        folder / "b.csv", kit_obj, "B", dict.fromkeys(key["item"], "real"), conf=1, fmt="csv"
    )
    out = tmp_path / "out"
    table = score(folder, paths, out)
    row = table[table["group"].isin(["all", ""])].set_index(["model", "reader"]).loc
    assert row["toy_t1", "A"][
        ["real_as_real", "real_as_synthetic", "synthetic_as_real", "synthetic_as_synthetic"]
    ].tolist() == [3, 0, 0, 3]
    assert row["toy_t1", "B"][["real_as_real", "synthetic_as_real"]].tolist() == [3, 3]
    pooled = row["toy_concat", "pooled"]
    assert pooled[
        ["real_as_real", "real_as_synthetic", "synthetic_as_real", "synthetic_as_synthetic"]
    ].tolist() == [6, 0, 3, 3]
    assert pooled["accuracy"] == pytest.approx(9 / 12)
    assert pooled["sensitivity"] == pytest.approx(0.5) and pooled["specificity"] == 1.0
    # per item: A and B agree on the 3 real images, disagree on the 3 synthetic ones
    # p_syn = 3/12, P_e = 1/16 + 9/16, P = 1/2 -> kappa = (1/2 - 10/16) / (6/16) = -1/3
    assert pooled["fleiss_kappa"] == pytest.approx(-1 / 3)
    assert row["all", "A"]["p_value"] == pytest.approx(2 * 0.5**12)
    # confidence: A is right at 5, B right (real) at 1 and wrong at 1
    assert pooled["weighted_accuracy"] == pytest.approx((3 * 5 + 3 * 5 + 3 * 1) / (6 * 5 + 6))
    assert row["toy_t1", "A"]["rating_auc"] == 1.0 and row["toy_t1", "B"]["rating_auc"] == 0.5
    t1 = pd.read_csv(out / "table1.tsv", sep="\t")
    assert list(t1.columns) == [
        "model",
        "image_type",
        "round",
        "reader",
        "group",
        "n_readers",
        "source",
        "real_as_real",
        "real_as_synthetic",
        "synthetic_as_real",
        "synthetic_as_synthetic",
        "accuracy",
    ]
    assert set(t1["source"]) == {"visual_turing_test"}
    assert (out / "scores.png").stat().st_size > 0
    assert pd.read_csv(out / "readers.tsv", sep="\t")["n_answers"].tolist() == [12, 12]


def _mutations(kit_obj):
    key = kit_obj.key
    right = dict(zip(key["item"], key["truth"], strict=True))
    items = list(right)

    def other_kit(p):
        return write_answers(p, kit_obj, "X", right, kit_id="0123456789ab")

    def unknown(p):
        return write_answers(p, kit_obj, "X", {**right, "iffffffff": "real"})

    def duplicated(p):
        path = write_answers(p, kit_obj, "X", right)
        doc = json.loads(path.read_text())
        doc["answers"].append(doc["answers"][0])
        path.write_text(json.dumps(doc))
        return path

    def missing(p):
        return write_answers(p, kit_obj, "X", {i: right[i] for i in items[:-2]})

    def truncated(p):
        path = write_answers(p, kit_obj, "X", right)
        path.write_text(path.read_text()[:-40])
        return path

    def restructured(p):
        path = write_answers(p, kit_obj, "X", right)
        doc = json.loads(path.read_text())
        doc["answers"] = {a["item"]: a["answer"] for a in doc["answers"]}
        path.write_text(json.dumps(doc))
        return path

    def bad_label(p):
        return write_answers(p, kit_obj, "X", {**right, items[0]: "maybe"})

    def bad_confidence(p):
        return write_answers(p, kit_obj, "X", right, conf=9)

    def csv_without_column(p):
        path = write_answers(p.with_suffix(".csv"), kit_obj, "X", right, fmt="csv")
        lines = path.read_text().splitlines()
        path.write_text("\n".join(",".join(x.split(",")[:-2]) for x in lines))
        return path

    return {
        "other_kit": (other_kit, "not this kit"),
        "unknown": (unknown, "not in the kit"),
        "duplicated": (duplicated, "more than once"),
        "missing": (missing, "misses 2 of 12"),
        "truncated": (truncated, "not a readable JSON"),
        "restructured": (restructured, "must be a list"),
        "bad_label": (bad_label, "'real'/'synthetic'"),
        "bad_confidence": (bad_confidence, "confidence 9"),
        "csv_without_column": (csv_without_column, "missing column"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "other_kit",
        "unknown",
        "duplicated",
        "missing",
        "truncated",
        "restructured",
        "bad_label",
        "bad_confidence",
        "csv_without_column",
    ],
)
def test_bad_answer_file_one_error_naming_it_nothing_written(kit, tmp_path, case):
    kit_obj, paths = kit
    folder = tmp_path / "answers"
    folder.mkdir()
    right = dict(zip(kit_obj.key["item"], kit_obj.key["truth"], strict=True))
    write_answers(folder / "good_G.json", kit_obj, "G", right)
    make, problem = _mutations(kit_obj)[case]
    bad = make(folder / "bad_X.json")
    out = tmp_path / "out"
    with pytest.raises(InputError) as err:
        score(folder, paths, out)
    assert str(bad) in str(err.value) and problem in str(err.value)
    assert "\n" not in str(err.value)
    assert not out.exists()


def test_two_files_of_one_reader_are_reported_not_merged(kit, tmp_path):
    kit_obj, paths = kit
    folder = tmp_path / "answers"
    folder.mkdir()
    right = dict(zip(kit_obj.key["item"], kit_obj.key["truth"], strict=True))
    write_answers(folder / "monday_R1.json", kit_obj, "R1", right)
    write_answers(folder / "tuesday_R1.csv", kit_obj, "R1", right, fmt="csv")
    out = tmp_path / "out"
    with pytest.raises(InputError, match="second answer file of reader 'R1'") as err:
        score(folder, paths, out)
    assert "monday_R1.json" in str(err.value) and "tuesday_R1.csv" in str(err.value)
    assert not out.exists()


def test_empty_answer_folder(kit, tmp_path):
    _, paths = kit
    (tmp_path / "answers").mkdir()
    with pytest.raises(InputError, match="no answer files"):
        score(tmp_path / "answers", paths, tmp_path / "out")


def test_reader_groups_pool_their_readers(kit, tmp_path):
    kit_obj, paths = kit
    key = kit_obj.key
    folder = tmp_path / "answers"
    folder.mkdir()
    right = dict(zip(key["item"], key["truth"], strict=True))
    write_answers(folder / "a.json", kit_obj, "A", right)
    write_answers(folder / "b.json", kit_obj, "B", dict.fromkeys(key["item"], "real"))
    write_answers(folder / "c.json", kit_obj, "C", dict.fromkeys(key["item"], "synthetic"))
    (folder / "readers.tsv").write_text("reader\tgroup\nA\texpert\nB\tnovice\nC\tnovice\n")
    table = score(folder, paths, tmp_path / "out")
    pooled = table[(table["reader"] == "pooled") & (table["model"] == "all")].set_index("group")
    assert pooled.loc["all", "n_readers"] == 3 and pooled.loc["novice", "n_readers"] == 2
    assert pooled.loc["expert", "accuracy"] == 1.0
    assert pooled.loc["novice", "accuracy"] == 0.5
    # B and C never agree: kappa of the novices is -1
    assert pooled.loc["novice", "fleiss_kappa"] == pytest.approx(-1.0)
    readers = pd.read_csv(tmp_path / "out" / "readers.tsv", sep="\t")
    assert readers["group"].tolist() == ["expert", "novice", "novice"]
    # a reader with answers but not in readers.tsv: one error naming readers.tsv
    (folder / "readers.tsv").write_text("reader\tgroup\nA\texpert\nB\tnovice\n")
    with pytest.raises(InputError, match=r"readers.tsv: does not list reader\(s\) \['C'\]"):
        score(folder, paths, tmp_path / "out2")
    assert not (tmp_path / "out2").exists()


def test_concat_real_images_are_stratified_by_sequence(tmp_path, monkeypatch):
    """Han 2018 sec. 3.3: Concat's real images in equal proportion from T1, T1c, T2, FLAIR
    (the pooled dataset's ``sequence`` column), not at random from the pool; other blocks keep
    the plain least-used draw."""
    import medgan.training.generate as generate
    from medgan.data.prepared import PreparedDatasetWriter
    from medgan.data.split import write_split
    from medgan.studies.vtt.selection import blocks_from_models, pick_stratified

    seqs = ["T1", "T1c", "T2", "FLAIR"]
    data = tmp_path / "pooled"
    # a pooled dataset whose sequences are very unequal in number: a random draw would not
    # come out even (40 FLAIR images for every 8 of the others)
    counts = {"T1": 8, "T1c": 8, "T2": 8, "FLAIR": 40}
    with PreparedDatasetWriter(data, channels=["Concat"], resolution=8) as w:
        for s in seqs:
            n = counts[s]
            w.append(
                np.full((n, 1, 8, 8), seqs.index(s), np.float32),
                [{"subject": f"p{i % 3}", "slice": i, "sequence": s} for i in range(n)],
            )
    write_split(data / "meta.tsv", data / "split.tsv", fraction=0.9, seed=0, group_by="none")
    monkeypatch.setattr(generate, "load_generator", lambda ckpt: (None, {"channels": ["Concat"]}))
    monkeypatch.setattr(
        generate, "generate_from", lambda G, cfg, n, seed: np.zeros((n, 1, 8, 8), np.float32)
    )
    monkeypatch.setattr("medgan.plotting.real_windows", lambda d, c, seed: [(0.0, 1.0)])
    (block,) = blocks_from_models(
        models=["concat"],
        checkpoints=[tmp_path / "x.pt"],
        data_dirs=[data],
        splits=[data / "split.tsv"],
        n_real=14,
        n_synthetic=2,
        seed=0,
    )
    got = Counter(info["sequence"] for info in block.real_info)
    assert sorted(got.values()) == [3, 3, 4, 4] and set(got) == set(seqs)
    # each image shown is of the sequence its key says
    for img, info in zip(block.real, block.real_info, strict=True):
        assert img[0, 0, 0] == seqs.index(info["sequence"])
    # too few of one sequence: one error naming the split
    with pytest.raises(InputError, match=r"split.tsv: stratum T1 has \d images; 10 are needed"):
        blocks_from_models(
            models=["concat"],
            checkpoints=[tmp_path / "x.pt"],
            data_dirs=[data],
            splits=[data / "split.tsv"],
            n_real=40,
            n_synthetic=2,
            seed=0,
        )
    # the remainder goes to random strata, the draw is least-used within each stratum
    used = Counter()
    strata = np.array(["a"] * 6 + ["b"] * 6)
    first = pick_stratified(np.arange(12), strata, 6, used, np.random.default_rng(1))
    second = pick_stratified(np.arange(12), strata, 6, used, np.random.default_rng(2))
    assert not set(first) & set(second) and len(first) == 6


def test_a_copied_file_with_the_reader_edited_is_refused(kit, tmp_path):
    """A copy of R1's file with the reader field edited would be scored as a second reader
    who agrees with R1 on every image (Fleiss' kappa 1.0): refused, naming both files."""
    kit_obj, paths = kit
    folder = tmp_path / "answers"
    folder.mkdir()
    calls = dict(zip(kit_obj.key["item"], kit_obj.key["truth"], strict=True))
    calls[next(iter(calls))] = "real"
    original = write_answers(folder / f"vtt_toy_{kit_obj.kit_id}_R1.json", kit_obj, "R1", calls)
    doc = json.loads(original.read_text())
    out = tmp_path / "out"

    # the copy keeps R1's file name: the name disagrees with the edited reader field
    copy = folder / f"vtt_toy_{kit_obj.kit_id}_R1 (1).json"
    copy.write_text(json.dumps({**doc, "reader": "R2"}))
    with pytest.raises(InputError, match="names reader 'R2' but its file name") as err:
        score(folder, paths, out)
    assert str(copy) in str(err.value) and "\n" not in str(err.value)
    # renamed to agree: the answers and their times are R1's, a copy
    renamed = copy.rename(folder / f"vtt_toy_{kit_obj.kit_id}_R2.json")
    with pytest.raises(InputError, match="duplicates") as err:
        score(folder, paths, out)
    assert str(renamed) in str(err.value) and str(original) in str(err.value)
    assert "\n" not in str(err.value) and not out.exists()
    # the same as CSV
    renamed.unlink()
    as_csv = write_answers(folder / "r2.csv", kit_obj, "R2", calls, fmt="csv")
    as_csv.write_text(as_csv.read_text().replace(".132Z", ".131Z"))  # R1's answer times
    with pytest.raises(InputError, match="duplicates"):
        score(folder, paths, out)
    # a second reader who gives the very same answers at other times is scored
    as_csv.unlink()
    write_answers(folder / "r2.csv", kit_obj, "R2", calls, fmt="csv")
    table = score(folder, paths, out)
    pooled = table[(table["reader"] == "pooled") & (table["model"] == "all")]
    assert pooled["n_readers"].iloc[0] == 2
    # a browser's " (1)" on a second download and case are not a disagreement
    (folder / "r2.csv").rename(folder / "VTT_toy_r2 (1).csv")
    assert len(score(folder, paths, tmp_path / "out2")) == len(table)
