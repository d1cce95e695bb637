# Delplace 2019: target list and input functions of workflow/rules/papers/delplace2019.smk
# (kept apart from its rules, as `snakemake --lint` asks); no rules.
DELPLACE = "delplace2019"
DELPLACE_FIGURES = f"results/figures/{DELPLACE}"


def delplace2019_targets():
    """The paper's figures and tables (none when the config has no delplace2019 study)."""
    if DELPLACE not in STUDIES:
        return []
    names = [
        "fig1.png",
        "table3.tsv",
        "training_time.tsv",
        "loss_comparison.tsv",
        "loss_comparison.png",
        "interpolations.png",
    ]
    return study_targets(DELPLACE) + [f"{DELPLACE_FIGURES}/{n}" for n in names]


def delplace_spec():
    return STUDIES[DELPLACE]["delplace"]


def delplace_real():
    if DELPLACE not in STUDIES:
        return {}
    ds = STUDIES[DELPLACE]["real_dataset"]
    return {
        "data": f"results/data/{ds}/images.npy",
        "split": f"results/data/{ds}/split.tsv",
    }


def delplace_model_files(name, models):
    return [f"results/models/{m}/{name}" for m in models]


def delplace_main_models():
    return list(delplace_spec()["models"].values())


def delplace_comparison_models():
    runs = delplace_spec()["loss_comparison"]
    return sorted({m for by_loss in runs.values() for m in by_loss.values()})


PAPER_TARGETS["delplace2019"] = delplace2019_targets
