"""Reading the workflow's tab-separated tables: :func:`read_table`, pandas' ``read_csv`` with its
errors reported as an :class:`~medgan.errors.InputError` naming the file.

Imports pandas only when a table is read (as :func:`medgan.atomic.write_tsv` takes a table
without importing it), so that any module may import this one.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from medgan.errors import InputError

if TYPE_CHECKING:
    import pandas as pd


def read_table(path: str | os.PathLike, what: str, **read_csv_kwargs: Any) -> pd.DataFrame:
    """The tab-separated table at ``path`` (``pd.read_csv(path, sep="\\t", **read_csv_kwargs)``).

    A file that cannot be opened or parsed, or is empty, raises :class:`~medgan.errors.
    InputError` ``<path>: cannot read <what> (<pandas' or the OS's message>)``; ``what`` says
    what the file is (``"the split table"``).
    """
    import pandas as pd

    try:
        return pd.read_csv(path, sep="\t", **read_csv_kwargs)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise InputError(path, f"cannot read {what} ({err})") from err
