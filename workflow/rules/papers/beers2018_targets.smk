# Target list of beers2018 (functions only: snakemake --lint wants rules and functions in
# separate files); included by beers2018.smk.


def beers2018_models(analysis):
    if "beers2018" not in STUDIES:
        return []
    return [m for m in study_models(STUDIES["beers2018"]) if m in models_with(analysis)]


def beers2018_fig5(model):
    if tsne_color_column(config, MODELS[model]) == "slice":
        return f"results/figures/beers2018/fig5_traversal_{model}.png"
    return f"results/figures/beers2018/fig5_tsne_{model}.png"


def beers2018_targets():
    if "beers2018" not in STUDIES:
        return []
    out = study_targets("beers2018")
    out += [
        f"results/figures/beers2018/fig4_{m}.png" for m in beers2018_models("inversion")
    ]
    out += [beers2018_fig5(m) for m in beers2018_models("tsne")]
    if beers2018_models("vessel_auc"):
        out.append("results/figures/beers2018/sec41_vessel_auc.tsv")
    return out


PAPER_TARGETS["beers2018"] = beers2018_targets
