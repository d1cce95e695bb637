# Target list of kitchen2017 (functions only: snakemake --lint wants rules and functions in
# separate files); included by kitchen2017.smk.


KITCHEN_FIGURES = {
    "fig4_lesions_{model}.png": "fig4",
    "fig5_interpolation_{model}.png": "fig5",
    "table1_generator_{model}.tsv": "tables",
    "table2_discriminator_{model}.tsv": "tables",
}


def kitchen2017_targets():
    if "kitchen2017" not in STUDIES:
        return []
    return study_targets("kitchen2017") + [
        f"results/figures/kitchen2017/{name.format(model=m)}"
        for m in study_models(STUDIES["kitchen2017"])
        for name in KITCHEN_FIGURES
    ]


PAPER_TARGETS["kitchen2017"] = kitchen2017_targets
