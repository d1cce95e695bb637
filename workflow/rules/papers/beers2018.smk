# Beers et al. 2018 (progressively grown GANs): Figs. 2-3 are the study's panels (figures.smk);
# here Fig. 4 (held-out reconstructions), Fig. 5 (t-SNE by laterality; for BraTS the
# supplement's traversal through the axial slices) and sec. 4.1's vessel AUC, from the
# analyses of the study's models (medgan.studies.beers2018).


include: "beers2018_targets.smk"


rule beers2018:
    input:
        beers2018_targets(),


rule beers2018_fig4:
    input:
        figure="results/analysis/{model}/reconstructions.png",
    output:
        figure=report(
            "results/figures/beers2018/fig4_{model}.png",
            caption="../../report/beers2018/fig4.rst",
            category="beers2018",
            subcategory="Fig. 4",
        ),
    log:
        "logs/figures/beers2018/fig4_{model}.log",
    conda:
        PAPERS_ENV
    script:
        "../../scripts/copy_figure.py"


rule beers2018_fig5_tsne:
    input:
        figure="results/analysis/{model}/tsne.png",
    output:
        figure=report(
            "results/figures/beers2018/fig5_tsne_{model}.png",
            caption="../../report/beers2018/fig5.rst",
            category="beers2018",
            subcategory="Fig. 5",
        ),
    log:
        "logs/figures/beers2018/fig5_{model}.log",
    conda:
        PAPERS_ENV
    script:
        "../../scripts/copy_figure.py"


rule beers2018_traversal:
    input:
        unpack(model_dataset),
        checkpoint="results/models/{model}/checkpoint.pt",
        encoder="results/analysis/{model}/encoder.pt",
        split=model_split,
        tsne="results/analysis/{model}/tsne.tsv",
    output:
        figure=report(
            "results/figures/beers2018/fig5_traversal_{model}.png",
            caption="../../report/beers2018/traversal.rst",
            category="beers2018",
            subcategory="Fig. 5",
        ),
        table="results/figures/beers2018/fig5_traversal_{model}.tsv",
    log:
        "logs/figures/beers2018/traversal_{model}.log",
    conda:
        PAPERS_ENV
    params:
        data_dir=lambda wc: f"results/data/{MODELS[wc.model]['dataset']}",
        column=lambda wc: tsne_color_column(config, MODELS[wc.model]),
    script:
        "../../scripts/beers2018_traversal.py"


rule beers2018_vessel_auc:
    input:
        tables=lambda wc: expand(
            "results/analysis/{model}/vessel_auc.tsv",
            model=beers2018_models("vessel_auc"),
        ),
    output:
        table=report(
            "results/figures/beers2018/sec41_vessel_auc.tsv",
            caption="../../report/beers2018/vessel_auc.rst",
            category="beers2018",
            subcategory="sec. 4.1",
        ),
    log:
        "logs/figures/beers2018/vessel_auc.log",
    conda:
        PAPERS_ENV
    params:
        models=lambda wc: beers2018_models("vessel_auc"),
    script:
        "../../scripts/beers2018_vessel_auc.py"
