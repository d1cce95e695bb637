"""medgan.tables.read_table: a TSV as a DataFrame, or an InputError naming the file."""

from __future__ import annotations

import pytest

from medgan.errors import InputError
from medgan.tables import read_table


def test_reads_a_tsv_with_read_csv_options(tmp_path):
    path = tmp_path / "split.tsv"
    path.write_text("index\tgroup\tsplit\n0\t007\ttrain\n1\tNA\theldout\n")
    table = read_table(path, "the split table", dtype={"group": str}, keep_default_na=False)
    assert table["group"].tolist() == ["007", "NA"]
    assert table["index"].tolist() == [0, 1]


@pytest.mark.parametrize("content", [None, "", "a\tb\n1\t2\n3\t4\t5\t6\n"],
                         ids=["missing", "empty", "ragged"])
def test_an_unreadable_table_is_an_input_error_naming_the_file(tmp_path, content):
    path = tmp_path / "split.tsv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(InputError) as info:
        read_table(path, "the split table")
    assert info.value.path == str(path)
    assert str(info.value).startswith(f"{path}: cannot read the split table (")
