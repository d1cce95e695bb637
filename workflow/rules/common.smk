# Input functions, target lists and wildcard constraints; no rules.
from medgan.config import (
    apply_model_options,
    check_config,
    dataset_channels,
    dataset_holdout,
    model_analyses,
    planned_steps,
    study_models,
    tsne_color_column,
)
from pathlib import Path

from medgan.analysis.health import print_health
from medgan.studies.vtt.settings import check_vtt_config, vtt_answers_dir, vtt_kits

# optional models (a study's `stylegan2: true`) join the plan, or leave it
apply_model_options(config)
check_config(config)

DATASETS = config["datasets"]
MODELS = config["models"]
STUDIES = config["studies"]
PHANTOM_KINDS = sorted(config.get("phantoms", {}))
MEDGAN_ENV = "../../envs/medgan.yaml"


wildcard_constraints:
    dataset="|".join(DATASETS) or "NONE",
    model="|".join(MODELS) or "NONE",
    study="|".join(STUDIES) or "NONE",
    kind="|".join(PHANTOM_KINDS) or "NONE",
    channel="|".join(
        sorted({c for d in DATASETS.values() for c in dataset_channels(d)})
    ),
    panel="|".join(sorted({p for s in STUDIES.values() for p in s["panels"]})) or "NONE",


def dataset_source(wildcards):
    """The raw folder a dataset is prepared from: generated phantoms or the user's files."""
    ds = DATASETS[wildcards.dataset]
    if ds["phantom"]:
        return f"resources/phantoms/{ds['kind']}"
    return ds["path"]


def dataset_inputs(wildcards):
    """Inputs of a dataset's preparation: its source and, for fundus, the vessel U-net."""
    inputs = {"source": dataset_source(wildcards)}
    if DATASETS[wildcards.dataset]["kind"] == "fundus":
        inputs["segmenter"] = f"results/segmenters/{wildcards.dataset}/unet.pt"
    return inputs


def prepared(name):
    """The three files of a prepared dataset."""
    return {
        "images": f"results/data/{name}/images.npy",
        "meta": f"results/data/{name}/meta.tsv",
        "info": f"results/data/{name}/dataset.json",
    }


def model_dataset(wildcards):
    return prepared(MODELS[wildcards.model]["dataset"])


def model_split(wildcards):
    return f"results/data/{MODELS[wildcards.model]['dataset']}/split.tsv"


def model_featurenet(wildcards):
    return f"results/featurenets/{MODELS[wildcards.model]['dataset']}/featurenet.pt"


def model_featurenet_if_needed(wildcards):
    if "domain" in config["analysis"]["metrics"]["include"]:
        return model_featurenet(wildcards)
    return []


def snapshot_featurenet(wildcards):
    """The feature network a model's training snapshots score with (analysis.snapshots
    feature_net): `auto` where a model of its dataset gets the domain metrics anyway."""
    spec = MODELS[wildcards.model]
    mode = config["analysis"]["snapshots"]["feature_net"]
    if not spec["schedule"].get("snapshot_every") or mode == "never":
        return []
    domain = "domain" in config["analysis"]["metrics"]["include"]
    built = domain and any(
        other["dataset"] == spec["dataset"] and "metrics" in model_analyses(other)
        for other in MODELS.values()
    )
    return model_featurenet(wildcards) if mode == "always" or built else []


# The scheduling priority of the jobs that trainings wait for (phantoms, preparing, splitting,
# the feature networks and the vessel U-net): above any training's (train_priority), else a
# ready training would keep them, and the long trainings behind them, waiting.
# The paper configs train up to 300,000 steps (Beers 2018, 512 px).
BEFORE_TRAINING = 10**6


def prepare_threads(wildcards):
    """prepare_dataset's threads (its worker processes): 1 for a phantom set, 4 for a release."""
    return 1 if DATASETS[wildcards.dataset].get("phantom") else 4


def train_priority(wildcards):
    """A training job's scheduling priority: its number of steps, so that the longest trainings
    start first and the run does not end on one core waiting for one of them (the default's
    Kitchen DCGAN, 8,000 steps, once started last and ran 245 s alone). A progressive schedule
    without `steps` trains its phases (medgan.config.planned_steps)."""
    return min(planned_steps(MODELS[wildcards.model]), BEFORE_TRAINING - 1)


def model_segmenter(wildcards):
    return f"results/segmenters/{MODELS[wildcards.model]['dataset']}/unet.pt"


def models_with(analysis):
    return [m for m, spec in MODELS.items() if analysis in model_analyses(spec)]


ANALYSIS_OUTPUTS = {
    "metrics": ["metrics.tsv", "memorisation.png"],
    "inversion": ["reconstructions.png", "reconstructions.tsv"],
    "tsne": ["tsne.png", "tsne.tsv"],
    "interpolation": ["interpolation.png", "walk.gif"],
    "vessel_auc": ["vessel_auc.tsv"],
    "utility": ["utility.tsv", "utility.png"],
    "privacy": ["privacy.tsv", "privacy.png"],
}


def analysis_targets():
    return [
        f"results/analysis/{m}/{name}"
        for m, spec in MODELS.items()
        for a in model_analyses(spec)
        for name in ANALYSIS_OUTPUTS[a]
    ]


def study_metric_models(study):
    return [m for m in study_models(STUDIES[study]) if m in models_with("metrics")]


def study_utility_models(study):
    return [m for m in study_models(STUDIES[study]) if m in models_with("utility")]


def study_privacy_models(study):
    return [m for m in study_models(STUDIES[study]) if m in models_with("privacy")]


def study_real_dataset(wildcards):
    return prepared(STUDIES[wildcards.study]["real_dataset"])


def study_channels(study):
    s = STUDIES[study]
    return s.get("real_channels") or dataset_channels(DATASETS[s["real_dataset"]])


def panel_checkpoints(wildcards):
    members = STUDIES[wildcards.study]["panels"][wildcards.panel]
    return [f"results/models/{m}/checkpoint.pt" for m in members]


def study_targets(study):
    out = [f"results/figures/{study}/real_{ch}.png" for ch in study_channels(study)]
    for m in study_models(STUDIES[study]):
        out.append(f"results/figures/{study}/synthetic_{m}.png")
        out.append(f"results/figures/{study}/loss_{m}.png")
    out += [f"results/figures/{study}/{p}.png" for p in STUDIES[study]["panels"]]
    out.append(f"results/figures/{study}/models.tsv")
    out.append(f"results/figures/{study}/metrics.tsv")
    out.append(f"results/figures/{study}/health.tsv")
    return out


# The health verdicts (medgan.analysis.health): the report's first category (digits sort
# before letters), and the table printed at the end of a run (Snakefile's onsuccess).
HEALTH_CATEGORY = "0. model health"


def health_tables():
    return [f"results/figures/{study}/health.tsv" for study in STUDIES]


def synthetic_targets():
    if config["synthetic"]["n"] == 0:
        return []
    return [f"results/synthetic/{m}" for m in MODELS]


def all_targets():
    previews = [f"results/data/{name}/preview.png" for name in DATASETS]
    previews += [
        f"results/segmenters/{name}/heldout_auc.tsv"
        for name, ds in DATASETS.items()
        if ds["kind"] == "fundus"
    ]
    studies = [t for study in STUDIES for t in study_targets(study)]
    return previews + studies + synthetic_targets() + analysis_targets() + vtt_targets()


# Visual Turing Test kits (workflow/rules/vtt.smk)
VTT_KITS = vtt_kits(config)
check_vtt_config(config)


wildcard_constraints:
    kit="|".join(VTT_KITS) or "NONE",


def vtt_kit_inputs(wildcards):
    """Checkpoints of a kit's models and the split of each model's dataset."""
    models = VTT_KITS[wildcards.kit]["models"]
    ds = [MODELS[m]["dataset"] for m in models]
    return {
        "checkpoints": [f"results/models/{m}/checkpoint.pt" for m in models],
        "splits": [f"results/data/{d}/split.tsv" for d in ds],
        "data": sorted({f for d in ds for f in prepared(d).values()}),
    }


def vtt_targets():
    """Every kit's page; a kit's scores once its answer folder holds an answer file."""
    out = []
    for kit in VTT_KITS:
        out.append(f"results/vtt/{kit}/vtt_{kit}.html")
        answers = Path(vtt_answers_dir(config, kit))
        if answers.is_dir() and any(
            p.suffix.lower() in (".json", ".csv") for p in answers.iterdir()
        ):
            out.append(f"results/vtt/{kit}/scores/table1.tsv")
    return out


# Per-paper targets: each workflow/rules/papers/<study>.smk registers its <study>_targets()
# here; `all` collects those of the studies present in config["studies"].
PAPER_TARGETS = {}
PAPERS_ENV = "../../../envs/medgan.yaml"  # MEDGAN_ENV seen from workflow/rules/papers/


def paper_targets():
    return [
        t for study in STUDIES if study in PAPER_TARGETS for t in PAPER_TARGETS[study]()
    ]
