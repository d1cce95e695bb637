"""Checks of a configuration that a JSON schema cannot express (cross-references).

The schema (workflow/schemas/config.schema.yaml) checks every key and type; this module checks
that names refer to things that exist and that sizes agree, and names the offending key.
"""

from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """An inconsistent configuration; the message names the key."""


def check_config(config: dict[str, Any]) -> None:
    """Raise :class:`ConfigError` naming the first inconsistent key of a validated config."""
    datasets = config.get("datasets", {})
    models = config.get("models", {})
    phantoms = config.get("phantoms", {})
    for name, ds in datasets.items():
        if ds.get("phantom") and ds["kind"] not in phantoms:
            raise ConfigError(
                f"datasets.{name}.phantom: no phantoms.{ds['kind']} section to generate it from"
            )
        prep = ds.get("preprocessing", {})
        if prep.get("slice_stop", 1) <= prep.get("slice_start", 0):
            raise ConfigError(
                f"datasets.{name}.preprocessing.slice_stop: must be greater than slice_start"
            )
        if prep.get("slice_units") == "fraction" and prep.get("slice_stop", 0) > 1:
            raise ConfigError(f"datasets.{name}.preprocessing.slice_stop: a fraction must be <= 1")
    phantom_paths = {}
    for name, ds in datasets.items():
        if ds.get("phantom"):
            other = phantom_paths.setdefault(ds["path"], (name, ds["kind"]))
            if other[1] != ds["kind"]:
                raise ConfigError(
                    f"datasets.{name}.path: phantom folder {ds['path']} is also "
                    f"used by dataset {other[0]} of another kind"
                )
    for name, model in models.items():
        ds_name = model["dataset"]
        if ds_name not in datasets:
            raise ConfigError(
                f"models.{name}.dataset: no dataset named {ds_name!r} "
                f"(datasets: {sorted(datasets)})"
            )
        ds = datasets[ds_name]
        missing = [c for c in model["channels"] if c not in ds.get("sequences", [])]
        if missing:
            raise ConfigError(
                f"models.{name}.channels: {missing} not among dataset "
                f"{ds_name}'s sequences {ds.get('sequences')}"
            )
        res = ds.get("preprocessing", {}).get("resolution")
        if res != model["resolution"]:
            raise ConfigError(
                f"models.{name}.resolution: {model['resolution']} differs from "
                f"datasets.{ds_name}.preprocessing.resolution ({res})"
            )
    for name, study in config.get("studies", {}).items():
        if study["real_dataset"] not in datasets:
            raise ConfigError(
                f"studies.{name}.real_dataset: no dataset named {study['real_dataset']!r}"
            )
        ds = datasets[study["real_dataset"]]
        for ch in study.get("real_channels", []):
            if ch not in ds.get("sequences", []):
                raise ConfigError(
                    f"studies.{name}.real_channels: {ch} is not a sequence of "
                    f"dataset {study['real_dataset']}"
                )
        for panel, members in study["panels"].items():
            for m in members:
                if m not in models:
                    raise ConfigError(f"studies.{name}.panels.{panel}: no model named {m!r}")


def study_models(study: dict[str, Any]) -> list[str]:
    """The models of a study, in panel order, each once."""
    seen: list[str] = []
    for members in study["panels"].values():
        seen.extend(m for m in members if m not in seen)
    return seen
