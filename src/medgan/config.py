"""Checks of a configuration that a JSON schema cannot express (cross-references).

The schema (workflow/schemas/config.schema.yaml) checks every key and type; this module checks
that names refer to things that exist and that sizes agree, and names the offending key.
"""

from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """An inconsistent configuration; the message names the key."""


# Channels of the prepared dataset of each kind that do not depend on the config.
FIXED_CHANNELS = {
    "oasis": ["T1"],
    "prostatex": ["T2", "ADC", "Ktrans"],
    "fundus": ["R", "G", "B", "vessels"],
}
LABEL_CHANNELS = ["edema", "necrosis", "enhancing"]
PGGAN_SCHEDULE_KEYS = (
    "steps_per_phase",
    "batch_sizes",
    "start_resolution",
    "reset_optimizer_per_level",
)
DEFAULT_RESOLUTION = {"brats": 64, "oasis": 256, "fundus": 512}
# analyses that use the held-out real images of the model's dataset
HELDOUT_ANALYSES = ("metrics", "inversion", "utility", "privacy")
VESSEL_AUC_CHANNELS = ("R", "G", "B", "vessels")
POOLED_CHANNEL = "Concat"  # medgan.data.pooled.POOLED_CHANNEL (not imported: no numpy here)
TSNE_COLOR_BY = {"fundus": "laterality", "brats": "slice", "oasis": "slice", "prostatex": "zone"}


HOLDOUT_DEFAULTS = {"fraction": 0.2, "group_by": "auto", "seed": 0}


def dataset_holdout(ds: dict[str, Any]) -> dict[str, Any]:
    """A dataset's ``holdout`` settings with the schema's defaults filled in (the schema's
    per-kind sections are not default-filled by the validator)."""
    return {**HOLDOUT_DEFAULTS, **ds.get("holdout", {})}


def model_analyses(model: dict[str, Any]) -> list[str]:
    """The analyses of a model, with those they need (t-SNE needs the encoder of ``inversion``)."""
    names = list(model.get("analyses", ["metrics"]))
    if "tsne" in names and "inversion" not in names:
        names.append("inversion")
    return names


def tsne_color_column(config: dict[str, Any], model: dict[str, Any]) -> str:
    """The meta.tsv column that colours a model's t-SNE map (``analysis.tsne.color_by``)."""
    column = config.get("analysis", {}).get("tsne", {}).get("color_by", "auto")
    if column == "auto":
        return TSNE_COLOR_BY[config["datasets"][model["dataset"]]["kind"]]
    return column


def dataset_channels(ds: dict[str, Any]) -> list[str]:
    """The channel names the prepared dataset of config entry ``ds`` will have."""
    kind = ds["kind"]
    if kind == "brats":
        if ds.get("channel_mode", "stacked") == "pooled":
            return [POOLED_CHANNEL]
        channels = list(ds.get("sequences", ["T1", "T1c", "T2", "FLAIR"]))
        if ds.get("preprocessing", {}).get("label_channels"):
            channels += LABEL_CHANNELS
        return channels
    return list(FIXED_CHANNELS[kind])


def dataset_resolution(ds: dict[str, Any]) -> int:
    """The image size (pixels) of the prepared dataset of config entry ``ds``."""
    prep = ds.get("preprocessing", {})
    if ds["kind"] == "prostatex":
        return round(prep.get("patch_mm", 16.0) / prep.get("spacing_mm", 1.0))
    return prep.get("resolution", DEFAULT_RESOLUTION[ds["kind"]])


# medgan.models.pggan.SCHEDULE_DEFAULTS' steps_per_phase, repeated here so that the Snakefile
# need not import torch (tests/test_config.py checks that the two agree)
PGGAN_STEPS_PER_PHASE = 20000


def planned_steps(model: dict[str, Any]) -> int:
    """The training steps of config entry ``model``: ``schedule.steps``, or for a progressive
    schedule without it ``steps_per_phase`` in each of its 2 log2(R / start) + 1 phases, as
    :func:`medgan.training.schedule.resolve_schedule` resolves them (without importing torch)."""
    schedule = model["schedule"]
    if "steps" in schedule:
        return int(schedule["steps"])
    start = int(schedule.get("start_resolution", 4))
    phases = 2 * (int(model["resolution"]) // start).bit_length() - 1
    return int(schedule.get("steps_per_phase", PGGAN_STEPS_PER_PHASE)) * phases


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
        if ds.get("channel_mode") == "pooled" and prep.get("label_channels"):
            raise ConfigError(
                f"datasets.{name}.channel_mode: pooled (Han 2018's Concat) pools the sequences "
                "into one channel; it cannot be combined with preprocessing.label_channels"
            )
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
        channels = dataset_channels(ds)
        missing = [c for c in model["channels"] if c not in channels]
        if missing:
            raise ConfigError(
                f"models.{name}.channels: {missing} not among dataset {ds_name}'s channels "
                f"{channels}"
            )
        res = dataset_resolution(ds)
        if res != model["resolution"]:
            raise ConfigError(
                f"models.{name}.resolution: {model['resolution']} differs from the "
                f"resolution of dataset {ds_name} ({res})"
            )
        arch = model.get("architecture", {}).get("name", "dcgan")
        for key in PGGAN_SCHEDULE_KEYS:
            if arch != "pggan" and key in model.get("schedule", {}):
                raise ConfigError(
                    f"models.{name}.schedule.{key}: only for the pggan architecture, not {arch}"
                )
        if arch == "pggan" and "batch_size" in model.get("schedule", {}):
            raise ConfigError(
                f"models.{name}.schedule.batch_size: pggan takes batch_sizes (per resolution)"
            )
        _check_analyses(name, model, ds)
    for name, study in config.get("studies", {}).items():
        if study["real_dataset"] not in datasets:
            raise ConfigError(
                f"studies.{name}.real_dataset: no dataset named {study['real_dataset']!r}"
            )
        channels = dataset_channels(datasets[study["real_dataset"]])
        for ch in study.get("real_channels", []):
            if ch not in channels:
                raise ConfigError(
                    f"studies.{name}.real_channels: {ch} is not a channel of "
                    f"dataset {study['real_dataset']} {channels}"
                )
        for panel, members in study["panels"].items():
            for m in members:
                if m not in models:
                    raise ConfigError(f"studies.{name}.panels.{panel}: no model named {m!r}")
        _check_delplace(name, study.get("delplace"), models)


def _check_delplace(name: str, spec: dict[str, Any] | None, models: dict[str, Any]) -> None:
    """Delplace 2019's block: every model it names exists."""
    if not spec:
        return
    named = [("models", label, m) for label, m in spec["models"].items()]
    named += [(f"loss_comparison.{arch}", loss, m)
              for arch, by_loss in spec["loss_comparison"].items() for loss, m in by_loss.items()]
    for where, key, m in named:
        if m not in models:
            raise ConfigError(f"studies.{name}.delplace.{where}.{key}: no model named {m!r}")


MODEL_OPTIONS = ("stylegan2",)  # study switches that plan the models marked `option: <name>`


def apply_model_options(config: dict[str, Any]) -> list[str]:
    """Drop the optional models that no study switches on, in place; the dropped names.

    A model with ``option: stylegan2`` (the StyleGAN2 + ADA models of the paper configs) is
    kept only when a study whose panels name it has ``stylegan2: true``; otherwise it leaves
    ``models`` and every panel, and a panel left empty goes. Done before
    :func:`check_config`, so that a switched-off option plans nothing.
    """
    models, studies = config.get("models", {}), config.get("studies", {})
    for name, spec in models.items():
        if "option" in spec and spec["option"] not in MODEL_OPTIONS:
            raise ConfigError(f"models.{name}.option: {spec['option']!r} is not one of "
                              f"{list(MODEL_OPTIONS)}")
    wanted = {(option, m) for study in studies.values() for option in MODEL_OPTIONS
              if study.get(option) is True for m in study_models(study)}
    dropped = [m for m, spec in models.items()
               if "option" in spec and (spec["option"], m) not in wanted]
    for m in dropped:
        del models[m]
    for study in studies.values():
        panels = {p: [m for m in ms if m not in dropped] for p, ms in study["panels"].items()}
        study["panels"] = {p: ms for p, ms in panels.items() if ms}
    return dropped


def study_models(study: dict[str, Any]) -> list[str]:
    """The models of a study, in panel order, each once."""
    seen: list[str] = []
    for members in study["panels"].values():
        seen.extend(m for m in members if m not in seen)
    return seen


def _check_analyses(name: str, model: dict[str, Any], ds: dict[str, Any]) -> None:
    analyses = model_analyses(model)
    needs_heldout = [a for a in analyses if a in HELDOUT_ANALYSES]
    if needs_heldout and dataset_holdout(ds)["fraction"] == 0:
        raise ConfigError(
            f"models.{name}.analyses: {needs_heldout} use held-out real images but dataset "
            f"{model['dataset']} has holdout.fraction 0"
        )
    if "utility" in analyses:
        _check_utility(name, model, ds)
    if "vessel_auc" in analyses:
        missing = [c for c in VESSEL_AUC_CHANNELS if c not in model["channels"]]
        if ds["kind"] != "fundus" or missing:
            raise ConfigError(
                f"models.{name}.analyses: vessel_auc needs a fundus model with channels "
                f"{list(VESSEL_AUC_CHANNELS)} (dataset kind {ds['kind']}, missing {missing})"
            )


def _check_utility(name: str, model: dict[str, Any], ds: dict[str, Any]) -> None:
    """A model with the ``utility`` analysis needs a downstream task: label channels to
    segment, or a class-conditional generator."""
    from medgan.analysis.utility.tasks import model_tasks

    if not model_tasks(kind=ds["kind"], channels=model["channels"],
                       condition=model.get("condition")):
        raise ConfigError(
            f"models.{name}.analyses: utility needs a downstream task - label channels "
            f"(BraTS edema/necrosis/enhancing with an MRI sequence, fundus R, G, B and vessels) "
            f"or a class-conditional model (`condition`); the model has channels "
            f"{model['channels']} on a {ds['kind']} dataset"
        )


# The workflow validates its config against a JSON copy of the YAML schema: Snakemake reads a
# YAML schema with PyYAML's pure-Python loader (~0.3 s of CPU for this schema at every start,
# a tenth of a dry run), a JSON one with the json module (~0.01 s). The YAML stays the source.
SCHEMA_YAML = "workflow/schemas/config.schema.yaml"
SCHEMA_JSON = "workflow/schemas/config.schema.json"


def schema_json_text(yaml_path: str = SCHEMA_YAML) -> str:
    """The JSON text of the config schema at ``yaml_path`` (what ``SCHEMA_JSON`` must hold)."""
    import json

    import yaml

    with open(yaml_path, encoding="utf-8") as f:
        schema = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return json.dumps(schema, indent=1) + "\n"


def write_schema_json(yaml_path: str = SCHEMA_YAML, json_path: str = SCHEMA_JSON) -> None:
    """Rewrite the JSON copy of the schema after an edit of the YAML (from the repository root:
    ``python -c "from medgan.config import write_schema_json; write_schema_json()"``)."""
    from medgan.atomic import write_text

    write_text(json_path, schema_json_text(yaml_path))
