"""The config schema and the cross-reference checks."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from medgan.config import SCHEMA_JSON, ConfigError, check_config, schema_json_text, study_models

REPO = Path(__file__).resolve().parents[1]
SCHEMA = str(REPO / "workflow" / "schemas" / "config.schema.yaml")


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


@pytest.fixture
def default_config() -> dict:
    return load(REPO / "config" / "config.yaml")


@pytest.mark.parametrize(
    "path",
    [
        "config/config.yaml",
        ".test/config/config.yaml",
        "config/studies/han2018.yaml",
        "config/studies/beers2018.yaml",
        "config/studies/delplace2019.yaml",
        "config/studies/kitchen2017.yaml",
    ],
)
def test_shipped_configs_validate_and_are_consistent(path):
    cfg = load(REPO / path)
    validate(cfg, SCHEMA)
    check_config(cfg)


def test_the_json_schema_the_snakefile_validates_with_is_the_yaml_schema():
    assert SCHEMA_JSON in (REPO / "Snakefile").read_text()
    assert (REPO / SCHEMA_JSON).read_text() == schema_json_text(SCHEMA), (
        f"{SCHEMA_JSON} is out of date: after editing the YAML schema run (in the repository "
        f"root) python -c 'from medgan.config import write_schema_json; write_schema_json()'"
    )


def test_defaults_are_filled_in(default_config):
    cfg = copy.deepcopy(default_config)
    del cfg["models"]["han_dcgan_t1"]["schedule"]
    validate(cfg, SCHEMA, set_default=True)
    assert cfg["models"]["han_dcgan_t1"]["schedule"]["log_every"] == 10
    assert cfg["models"]["han_dcgan_t1"]["schedule"]["checkpoint_every"] == 0


def _errmsg(cfg) -> str:
    with pytest.raises(WorkflowError) as info:
        validate(cfg, SCHEMA)
    return str(info.value)


def test_misspelled_key_is_named(default_config):
    cfg = copy.deepcopy(default_config)
    cfg["models"]["han_wgan_t1"]["loss"]["n_critics"] = 5
    assert "n_critics" in _errmsg(cfg)


def test_misspelled_top_level_and_dataset_keys_are_named(default_config):
    cfg = copy.deepcopy(default_config)
    cfg["studys"] = {}
    assert "studys" in _errmsg(cfg)
    cfg = copy.deepcopy(default_config)
    cfg["datasets"]["brats_phantom_32"]["preprocessing"]["resoluton"] = 64
    assert "resoluton" in _errmsg(cfg)


def test_wrong_type_is_named(default_config):
    cfg = copy.deepcopy(default_config)
    cfg["models"]["han_dcgan_t1"]["schedule"]["steps"] = "many"
    msg = _errmsg(cfg)
    assert "steps" in msg and "many" in msg


def test_every_schema_property_has_a_description():
    schema = yaml.safe_load(Path(SCHEMA).read_text())
    missing = []

    def walk(node, where):
        if isinstance(node, dict):
            for key, sub in node.get("properties", {}).items():
                if "description" not in sub and "$ref" not in sub:
                    missing.append(f"{where}.{key}")
            for key, sub in node.items():
                if key != "if":  # an `if` condition names keys, it does not define them
                    walk(sub, f"{where}.{key}")
        elif isinstance(node, list):
            for i, sub in enumerate(node):
                walk(sub, f"{where}[{i}]")

    walk(schema, "schema")
    assert not missing, missing


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (
            lambda c: c["models"]["han_dcgan_t1"].update(dataset="nope"),
            "models.han_dcgan_t1.dataset",
        ),
        (
            lambda c: c["models"]["han_dcgan_t1"].update(resolution=64),
            "models.han_dcgan_t1.resolution",
        ),
        (
            lambda c: c["datasets"]["brats_phantom_32"].update(sequences=["T1"]),
            "models.han_dcgan_t1c.channels",
        ),
        (
            lambda c: c["studies"]["han2018"]["panels"]["fig3_dcgan"].append("ghost"),
            "studies.han2018.panels.fig3_dcgan",
        ),
        (
            lambda c: c["datasets"]["brats_phantom_32"]["preprocessing"].update(slice_stop=0.2),
            "datasets.brats_phantom_32.preprocessing.slice_stop",
        ),
        (lambda c: c.pop("phantoms"), "datasets.brats_phantom_32.phantom"),
    ],
)
def test_cross_references_are_checked(default_config, edit, key):
    cfg = copy.deepcopy(default_config)
    edit(cfg)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        check_config(cfg)


def test_study_models_in_panel_order(default_config):
    models = study_models(default_config["studies"]["han2018"])
    assert len(models) == 12 and models[0] == "han_dcgan_t1" and models[-1] == "han_wgan_concat16"


def test_architecture_keys_depend_on_the_architecture(default_config):
    cfg = copy.deepcopy(default_config)
    cfg["models"]["han_dcgan_t1"]["architecture"] = {"name": "kitchen", "noise_std": 0.3}
    validate(cfg, SCHEMA)
    cfg["models"]["han_dcgan_t1"]["architecture"]["d_activation"] = "elu"  # a dcgan-only key
    assert "d_activation" in _errmsg(cfg)


def test_an_empty_architecture_defaults_to_hans_dcgan(default_config):
    cfg = copy.deepcopy(default_config)
    cfg["models"]["han_dcgan_t1"]["architecture"] = {}
    validate(cfg, SCHEMA, set_default=True)
    arch = cfg["models"]["han_dcgan_t1"]["architecture"]
    assert arch["name"] == "dcgan" and arch["width"] == 64 and arch["kernel_size"] == 4


def test_loss_keys_depend_on_the_loss(default_config):
    cfg = copy.deepcopy(default_config)
    cfg["models"]["han_dcgan_t1"]["loss"] = {"name": "wgan_gp", "gp_lambda": 10, "drift": 0.001}
    validate(cfg, SCHEMA)
    cfg["models"]["han_dcgan_t1"]["loss"]["clip"] = 0.01  # a wgan-only key
    assert "clip" in _errmsg(cfg)


def test_pggan_schedule_keys(default_config):
    cfg = copy.deepcopy(default_config)
    model = cfg["models"]["han_dcgan_t1"]
    model["architecture"] = {"name": "pggan", "latent_dim": 16, "filters": {"default": 8}}
    model["schedule"] = {"steps_per_phase": 2, "batch_sizes": {"default": 4}}
    model["loss"] = {"name": "wgan_gp", "n_critic": 1}
    validate(cfg, SCHEMA, set_default=True)
    check_config(cfg)
    model["schedule"]["batch_size"] = 8
    with pytest.raises(ConfigError, match=r"schedule\.batch_size"):
        check_config(cfg)
    cfg = copy.deepcopy(default_config)
    cfg["models"]["han_dcgan_t1"]["schedule"]["steps_per_phase"] = 2
    with pytest.raises(ConfigError, match=r"schedule\.steps_per_phase: only for the pggan"):
        check_config(cfg)


@pytest.mark.parametrize(("path", "study", "optional"), [
    ("config/studies/han2018.yaml", "han2018",
     {"han_stylegan2_t1", "han_stylegan2_t1c", "han_stylegan2_t2", "han_stylegan2_flair",
      "han_stylegan2_concat128", "han_stylegan2_concat64"}),
    ("config/studies/beers2018.yaml", "beers2018",
     {"beers_stylegan2_fundus_512", "beers_stylegan2_brats_256"}),
])
def test_paper_configs_plan_stylegan2_only_when_switched_on(path, study, optional):
    from medgan.config import apply_model_options

    off = load(REPO / path)
    assert off["studies"][study]["stylegan2"] is False
    models = set(off["models"])
    assert set(apply_model_options(off)) == optional
    assert set(off["models"]) == models - optional
    assert not optional & set(study_models(off["studies"][study]))
    check_config(off)
    on = load(REPO / path)
    on["studies"][study]["stylegan2"] = True
    validate(on, SCHEMA)
    assert apply_model_options(on) == []
    assert optional <= set(study_models(on["studies"][study]))
    check_config(on)
    for name in optional:
        spec = on["models"][name]
        assert spec["architecture"]["name"] == spec["loss"]["name"] == "stylegan2"
        assert spec["loss"]["ada"]["target"] == 0.6 and spec["loss"]["r1_gamma"] == "auto"
    if study == "beers2018":  # Beers' image + segmentation channels
        assert on["models"]["beers_stylegan2_fundus_512"]["channels"] == [
            "R", "G", "B", "vessels"]
        assert on["models"]["beers_stylegan2_brats_256"]["channels"][4:] == [
            "edema", "necrosis", "enhancing"]
    bad = load(REPO / path)
    next(iter(bad["models"].values()))["option"] = "bogus"
    with pytest.raises(ConfigError, match="option"):
        apply_model_options(bad)


@pytest.mark.parametrize("arch, schedule, resolution", [
    ("dcgan", {"steps": 800, "batch_size": 64}, 32),
    ("pggan", {"steps_per_phase": 400}, 16),
    ("pggan", {"steps_per_phase": 500, "steps": 5000}, 64),
    ("pggan", {"steps_per_phase": 50, "start_resolution": 8}, 64),
    ("pggan", {}, 32),  # the trainer's default steps_per_phase
])
def test_planned_steps_are_the_steps_the_trainer_resolves(arch, schedule, resolution):
    """The Snakefile's torch-free count of a model's steps (train_gan's priority) agrees with
    the trainer's own resolution of its schedule."""
    from medgan.config import PGGAN_STEPS_PER_PHASE, planned_steps
    from medgan.models.pggan import SCHEDULE_DEFAULTS as PGGAN_SCHEDULE
    from medgan.training.schedule import resolve_schedule

    resolved = resolve_schedule(schedule, architecture=arch, resolution=resolution)
    assert planned_steps({"schedule": schedule, "resolution": resolution}) == resolved["steps"]
    assert PGGAN_STEPS_PER_PHASE == PGGAN_SCHEDULE["steps_per_phase"]
