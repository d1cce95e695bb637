"""Prepare a dataset of any kind from its raw release: the entry point of stage 2."""

from __future__ import annotations

import os
from typing import Any


def prepare_dataset(
    source: str | os.PathLike, out_dir: str | os.PathLike, *, dataset: dict[str, Any], name: str
) -> dict[str, Any]:
    """Prepare ``source`` (a release folder) into ``out_dir`` as configured by ``dataset``.

    ``dataset`` is one entry of the config's ``datasets`` section (validated by the schema);
    its configuration and the package version are recorded in ``dataset.json``.
    """
    provenance = {"dataset": name, "config": dataset}
    kind = dataset["kind"]
    if kind == "brats":
        from medgan.preprocess.brats import prepare_brats

        return prepare_brats(
            source,
            out_dir,
            naming=dataset.get("naming", "brats2017"),
            sequences=tuple(dataset.get("sequences", ("T1", "T1c", "T2", "FLAIR"))),
            mask=dataset.get("mask"),
            provenance=provenance,
            **dataset.get("preprocessing", {}),
        )
    raise ValueError(f"dataset {name}: unknown kind {kind!r}")
