"""Prepare a dataset of any kind from its raw release: the entry point of stage 2."""

from __future__ import annotations

import os
from typing import Any


def prepare_dataset(
    source: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    dataset: dict[str, Any],
    name: str,
    segmenter: str | os.PathLike | None = None,
    workers: int = 1,
) -> dict[str, Any]:
    """Prepare ``source`` (a release folder) into ``out_dir`` as configured by ``dataset``.

    ``dataset`` is one entry of the config's ``datasets`` section (validated by the schema);
    its configuration and the package version are recorded in ``dataset.json``. ``segmenter``
    is the vessel U-net checkpoint a fundus dataset needs (trained by the workflow).
    ``workers`` processes prepare the subjects (the rule's threads; the output is the same
    for any number); the dataset's ``on_bad_case`` says whether a bad subject stops the
    preparation or is skipped.
    """
    provenance = {"dataset": name, "config": dataset}
    kind = dataset["kind"]
    if kind == "brats" and dataset.get("channel_mode", "stacked") == "pooled":
        return _prepare_pooled(source, out_dir, dataset=dataset, name=name, workers=workers)
    run = {"workers": workers, "on_bad_case": dataset.get("on_bad_case", "stop")}
    if kind == "brats":
        from medgan.data.preprocess.brats import prepare_brats

        return prepare_brats(
            source,
            out_dir,
            naming=dataset.get("naming", "brats2017"),
            sequences=tuple(dataset.get("sequences", ("T1", "T1c", "T2", "FLAIR"))),
            mask=dataset.get("mask"),
            grades=dataset.get("grades"),
            grade_file=dataset.get("grade_file"),
            provenance=provenance,
            **run,
            **dataset.get("preprocessing", {}),
        )
    prep = dict(dataset.get("preprocessing", {}))
    if kind == "oasis":
        from medgan.data.preprocess.oasis import prepare_oasis

        return prepare_oasis(source, out_dir, provenance=provenance, **run, **prep)
    if kind == "prostatex":
        from medgan.data.preprocess.prostatex import prepare_prostatex

        return prepare_prostatex(source, out_dir, provenance=provenance, **run, **prep)
    if kind == "fundus":
        from medgan.data.preprocess.fundus import prepare_fundus

        return prepare_fundus(
            source, out_dir, unet_checkpoint=segmenter, provenance=provenance,
            on_bad_case=run["on_bad_case"], **prep
        )
    raise ValueError(f"dataset {name}: unknown kind {kind!r}")


def _prepare_pooled(
    source: str | os.PathLike, out_dir: str | os.PathLike, *, dataset: dict[str, Any], name: str,
    workers: int = 1,
) -> dict[str, Any]:
    """A BraTS dataset with ``channel_mode: pooled`` (Han 2018's Concat): prepared stacked in a
    scratch folder beside ``out_dir``, then pooled into one channel
    (:func:`medgan.data.pooled.pool_channels`)."""
    import tempfile
    from pathlib import Path

    from medgan.data.pooled import pool_channels

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    stacked = {k: v for k, v in dataset.items() if k != "channel_mode"}
    with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix=f".{out_dir.name}.") as tmp:
        prepare_dataset(source, tmp, dataset=stacked, name=name, workers=workers)
        return pool_channels(tmp, out_dir, provenance={"dataset": name, "config": dataset})
