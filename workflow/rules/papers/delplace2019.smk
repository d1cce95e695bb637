# Delplace 2019, "Synthetic Magnetic Resonance Images with Generative Adversarial Networks":
# Fig. 1, Table 3, the training times, the loss comparison of sec. 3.3 and the latent
# interpolations, under results/figures/delplace2019/. Logic: medgan.studies.delplace2019 and
# medgan.studies.delplace2019_figures. The generic study figures (real grid, sample grids, loss
# curves, model table) come from figures.smk.


include: "delplace2019_targets.smk"


DELPLACE_PARAMS = dict(
    study=lambda wc: STUDIES[DELPLACE],
    data_dir=lambda wc: f"results/data/{STUDIES[DELPLACE]['real_dataset']}",
    channels=lambda wc: study_channels(DELPLACE),
    metrics=config["analysis"]["metrics"],
    losses=lambda wc: {
        label: MODELS[m]["loss"]["name"]
        for label, m in delplace_spec()["models"].items()
    },
)


rule delplace2019:
    input:
        delplace2019_targets(),


rule delplace2019_fig1:
    input:
        **delplace_real(),
        checkpoints=lambda wc: delplace_model_files(
            "checkpoint.pt", delplace_main_models()
        ),
    output:
        report(
            f"{DELPLACE_FIGURES}/fig1.png",
            caption="../../report/delplace2019/fig1.rst",
            category="delplace2019",
            subcategory="Fig. 1",
        ),
    log:
        f"logs/figures/{DELPLACE}/fig1.log",
    conda:
        PAPERS_ENV
    params:
        **DELPLACE_PARAMS,
    script:
        "../../scripts/delplace2019_fig1.py"


rule delplace2019_interpolations:
    input:
        **delplace_real(),
        checkpoints=lambda wc: delplace_model_files(
            "checkpoint.pt", delplace_main_models()
        ),
    output:
        report(
            f"{DELPLACE_FIGURES}/interpolations.png",
            caption="../../report/delplace2019/interpolations.rst",
            category="delplace2019",
            subcategory="latent interpolation",
        ),
    log:
        f"logs/figures/{DELPLACE}/interpolations.log",
    conda:
        PAPERS_ENV
    params:
        **DELPLACE_PARAMS,
    script:
        "../../scripts/delplace2019_interpolations.py"


rule delplace2019_table3:
    input:
        **delplace_real(),
        checkpoints=lambda wc: delplace_model_files(
            "checkpoint.pt", delplace_main_models()
        ),
    output:
        report(
            f"{DELPLACE_FIGURES}/table3.tsv",
            caption="../../report/delplace2019/table3.rst",
            category="delplace2019",
            subcategory="Table 3",
        ),
    log:
        f"logs/figures/{DELPLACE}/table3.log",
    benchmark:
        f"logs/figures/{DELPLACE}/table3.benchmark.tsv"
    conda:
        PAPERS_ENV
    threads: 2
    resources:
        mem_mb=12000,
    params:
        **DELPLACE_PARAMS,
    script:
        "../../scripts/delplace2019_table3.py"


rule delplace2019_training_time:
    input:
        runs=lambda wc: delplace_model_files("run.json", delplace_main_models()),
    output:
        report(
            f"{DELPLACE_FIGURES}/training_time.tsv",
            caption="../../report/delplace2019/training_time.rst",
            category="delplace2019",
            subcategory="training time",
        ),
    log:
        f"logs/figures/{DELPLACE}/training_time.log",
    conda:
        PAPERS_ENV
    params:
        **DELPLACE_PARAMS,
    script:
        "../../scripts/delplace2019_training_time.py"


rule delplace2019_loss_comparison:
    input:
        **delplace_real(),
        runs=lambda wc: delplace_model_files("run.json", delplace_comparison_models()),
        stats=lambda wc: delplace_model_files(
            "stats.jsonl", delplace_comparison_models()
        ),
        checkpoints=lambda wc: delplace_model_files(
            "checkpoint.pt", delplace_comparison_models()
        ),
    output:
        table=report(
            f"{DELPLACE_FIGURES}/loss_comparison.tsv",
            caption="../../report/delplace2019/loss_comparison.rst",
            category="delplace2019",
            subcategory="loss comparison (sec. 3.3)",
        ),
        figure=report(
            f"{DELPLACE_FIGURES}/loss_comparison.png",
            caption="../../report/delplace2019/loss_comparison.rst",
            category="delplace2019",
            subcategory="loss comparison (sec. 3.3)",
        ),
    log:
        f"logs/figures/{DELPLACE}/loss_comparison.log",
    benchmark:
        f"logs/figures/{DELPLACE}/loss_comparison.benchmark.tsv"
    conda:
        PAPERS_ENV
    params:
        **DELPLACE_PARAMS,
    script:
        "../../scripts/delplace2019_loss_comparison.py"
