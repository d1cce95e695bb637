# Kitchen & Seah 2017 (prostate lesions): Fig. 4 (a page of real and synthetic lesions), Fig. 5
# (linear interpolation in Z) and Tables 1-2 (layer lists traced from the networks), for each
# model of the study (medgan.studies.kitchen2017).


include: "kitchen2017_targets.smk"


rule kitchen2017:
    input:
        kitchen2017_targets(),


rule kitchen2017_fig4:
    input:
        unpack(model_dataset),
        checkpoint="results/models/{model}/checkpoint.pt",
    output:
        figure=report(
            "results/figures/kitchen2017/fig4_lesions_{model}.png",
            caption="../../report/kitchen2017/fig4.rst",
            category="kitchen2017",
            subcategory="Fig. 4",
        ),
    log:
        "logs/figures/kitchen2017/fig4_{model}.log",
    conda:
        PAPERS_ENV
    params:
        data_dir=lambda wc: f"results/data/{MODELS[wc.model]['dataset']}",
        study=lambda wc: STUDIES["kitchen2017"],
    script:
        "../../scripts/kitchen2017_fig4.py"


rule kitchen2017_fig5:
    input:
        unpack(model_dataset),
        checkpoint="results/models/{model}/checkpoint.pt",
    output:
        figure=report(
            "results/figures/kitchen2017/fig5_interpolation_{model}.png",
            caption="../../report/kitchen2017/fig5.rst",
            category="kitchen2017",
            subcategory="Fig. 5",
        ),
    log:
        "logs/figures/kitchen2017/fig5_{model}.log",
    conda:
        PAPERS_ENV
    params:
        data_dir=lambda wc: f"results/data/{MODELS[wc.model]['dataset']}",
        study=lambda wc: STUDIES["kitchen2017"],
    script:
        "../../scripts/kitchen2017_fig5.py"


rule kitchen2017_tables:
    input:
        checkpoint="results/models/{model}/checkpoint.pt",
    output:
        generator=report(
            "results/figures/kitchen2017/table1_generator_{model}.tsv",
            caption="../../report/kitchen2017/table1.rst",
            category="kitchen2017",
            subcategory="Tables 1-2",
        ),
        discriminator=report(
            "results/figures/kitchen2017/table2_discriminator_{model}.tsv",
            caption="../../report/kitchen2017/table2.rst",
            category="kitchen2017",
            subcategory="Tables 1-2",
        ),
    log:
        "logs/figures/kitchen2017/tables_{model}.log",
    conda:
        PAPERS_ENV
    script:
        "../../scripts/kitchen2017_tables.py"
