# Han et al. 2018 (DCGAN vs WGAN on multi-sequence brain MRI): Figs. 2-4 come from the generic
# rules of figures.smk (real grids, synthetic grids, panels); Table 1 from the classifier
# two-sample test of every model's metrics (medgan.studies.han2018).


include: "han2018_targets.smk"


rule han2018:
    input:
        han2018_targets(),


rule han2018_table1:
    input:
        unpack(han2018_vtt_scores),
        tables=lambda wc: expand(
            "results/analysis/{model}/metrics.tsv",
            model=study_metric_models("han2018"),
        ),
    output:
        table=report(
            "results/figures/han2018/table1.tsv",
            caption="../../report/han2018/table1.rst",
            category="han2018",
            subcategory="Table 1",
        ),
    log:
        "logs/figures/han2018/table1.log",
    conda:
        PAPERS_ENV
    params:
        models=lambda wc: {m: MODELS[m] for m in study_metric_models("han2018")},
        datasets=lambda wc: {
            MODELS[m]["dataset"]: DATASETS[MODELS[m]["dataset"]]
            for m in study_metric_models("han2018")
        },
    script:
        "../../scripts/han2018_table1.py"
