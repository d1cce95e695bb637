# Visual Turing Test kits (Han 2018 Table 1): a reader page that works offline, its answer
# key, and the scores of the readers' answer files. Code: src/medgan/studies/vtt/.


rule vtt_kit:
    input:
        unpack(vtt_kit_inputs),
    output:
        page=report(
            "results/vtt/{kit}/vtt_{kit}.html",
            caption="../report/vtt_kit.rst",
            category="visual turing test",
            subcategory="{kit}",
        ),
        key="results/vtt/{kit}/key/answer_key.tsv",
        record="results/vtt/{kit}/key/kit.json",
    log:
        "logs/vtt/{kit}/kit.log",
    benchmark:
        "logs/vtt/{kit}/kit.benchmark.tsv"
    conda:
        MEDGAN_ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        settings=lambda wc: VTT_KITS[wc.kit],
        data_dirs=lambda wc: [
            f"results/data/{MODELS[m]['dataset']}" for m in VTT_KITS[wc.kit]["models"]
        ],
    script:
        "../scripts/vtt_kit.py"


rule vtt_score:
    input:
        answers=lambda wc: vtt_answers_dir(config, wc.kit),
        key="results/vtt/{kit}/key/answer_key.tsv",
        record="results/vtt/{kit}/key/kit.json",
    output:
        table1=report(
            "results/vtt/{kit}/scores/table1.tsv",
            caption="../report/vtt_table1.rst",
            category="visual turing test",
            subcategory="{kit}",
        ),
        scores="results/vtt/{kit}/scores/scores.tsv",
        readers="results/vtt/{kit}/scores/readers.tsv",
        figure=report(
            "results/vtt/{kit}/scores/scores.png",
            caption="../report/vtt_scores.rst",
            category="visual turing test",
            subcategory="{kit}",
        ),
    log:
        "logs/vtt/{kit}/score.log",
    conda:
        MEDGAN_ENV
    threads: 1
    script:
        "../scripts/vtt_score.py"
