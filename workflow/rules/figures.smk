# Stage 5: the studies' figures and tables.


rule real_grid:
    input:
        unpack(study_real_dataset),
    output:
        report(
            "results/figures/{study}/real_{channel}.png",
            caption="../report/real_grid.rst",
            category="{study}",
            subcategory="real images",
        ),
    log:
        "logs/figures/{study}/real_{channel}.log",
    conda:
        MEDGAN_ENV
    params:
        study=lambda wc: STUDIES[wc.study],
        data_dir=lambda wc: f"results/data/{STUDIES[wc.study]['real_dataset']}",
    script:
        "../scripts/plot_real_grid.py"


rule synthetic_grid:
    input:
        unpack(model_dataset),
        checkpoint="results/models/{model}/checkpoint.pt",
    output:
        report(
            "results/figures/{study}/synthetic_{model}.png",
            caption="../report/synthetic_grid.rst",
            category="{study}",
            subcategory="synthetic images",
        ),
    log:
        "logs/figures/{study}/synthetic_{model}.log",
    conda:
        MEDGAN_ENV
    params:
        study=lambda wc: STUDIES[wc.study],
        data_dir=lambda wc: f"results/data/{MODELS[wc.model]['dataset']}",
    script:
        "../scripts/plot_synthetic_grid.py"


rule loss_curve:
    input:
        stats="results/models/{model}/stats.jsonl",
    output:
        report(
            "results/figures/{study}/loss_{model}.png",
            caption="../report/loss_curve.rst",
            category="{study}",
            subcategory="training",
        ),
    log:
        "logs/figures/{study}/loss_{model}.log",
    conda:
        MEDGAN_ENV
    script:
        "../scripts/plot_loss_curve.py"


rule synthetic_panel:
    input:
        checkpoints=panel_checkpoints,
    output:
        report(
            "results/figures/{study}/{panel}.png",
            caption="../report/synthetic_panel.rst",
            category="{study}",
            subcategory="synthetic images",
        ),
    log:
        "logs/figures/{study}/{panel}.log",
    conda:
        MEDGAN_ENV
    params:
        study=lambda wc: STUDIES[wc.study],
        models=lambda wc: STUDIES[wc.study]["panels"][wc.panel],
        data_dirs=lambda wc: [
            f"results/data/{MODELS[m]['dataset']}"
            for m in STUDIES[wc.study]["panels"][wc.panel]
        ],
    script:
        "../scripts/plot_synthetic_panel.py"


rule model_table:
    input:
        runs=lambda wc: expand(
            "results/models/{model}/run.json", model=study_models(STUDIES[wc.study])
        ),
    output:
        report(
            "results/figures/{study}/models.tsv",
            caption="../report/model_table.rst",
            category="{study}",
            subcategory="training",
        ),
    log:
        "logs/figures/{study}/models.log",
    conda:
        MEDGAN_ENV
    params:
        models=lambda wc: study_models(STUDIES[wc.study]),
    script:
        "../scripts/model_table.py"
