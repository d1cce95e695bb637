# Stage 4: analyses of a trained model (results/analysis/<model>/) and of each study's models.


rule train_feature_net:
    input:
        **prepared("{dataset}"),
        split="results/data/{dataset}/split.tsv",
    output:
        net="results/featurenets/{dataset}/featurenet.pt",
    log:
        "logs/featurenets/{dataset}.log",
    benchmark:
        "logs/featurenets/{dataset}.benchmark.tsv"
    priority: BEFORE_TRAINING
    conda:
        MEDGAN_ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        data_dir=lambda wc: f"results/data/{wc.dataset}",
        settings=config["analysis"]["feature_net"],
        max_images=config["analysis"]["metrics"]["max_reference"],
    script:
        "../scripts/train_feature_net.py"


rule model_metrics:
    input:
        unpack(model_dataset),
        checkpoint="results/models/{model}/checkpoint.pt",
        split=model_split,
        featurenet=model_featurenet_if_needed,
    output:
        table=report(
            "results/analysis/{model}/metrics.tsv",
            caption="../report/model_metrics.rst",
            category="analysis",
            subcategory="{model}",
        ),
        record="results/analysis/{model}/metrics.json",
        memorisation="results/analysis/{model}/memorisation.tsv",
        figure=report(
            "results/analysis/{model}/memorisation.png",
            caption="../report/memorisation.rst",
            category="analysis",
            subcategory="{model}",
        ),
    log:
        "logs/analysis/{model}/metrics.log",
    benchmark:
        "logs/analysis/{model}/metrics.benchmark.tsv"
    conda:
        MEDGAN_ENV
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
        gpu=0,
    params:
        data_dir=lambda wc: f"results/data/{MODELS[wc.model]['dataset']}",
        settings=config["analysis"]["metrics"],
    script:
        "../scripts/evaluate_model.py"


rule synthetic_vessel_auc:
    input:
        unpack(model_dataset),
        checkpoint="results/models/{model}/checkpoint.pt",
        segmenter=model_segmenter,
        split=model_split,
    output:
        table=report(
            "results/analysis/{model}/vessel_auc.tsv",
            caption="../report/vessel_auc.rst",
            category="analysis",
            subcategory="{model}",
        ),
    log:
        "logs/analysis/{model}/vessel_auc.log",
    conda:
        MEDGAN_ENV
    threads: 1
    params:
        data_dir=lambda wc: f"results/data/{MODELS[wc.model]['dataset']}",
        settings=config["analysis"]["vessel_auc"],
    script:
        "../scripts/synthetic_vessel_auc.py"


rule train_encoder:
    input:
        checkpoint="results/models/{model}/checkpoint.pt",
    output:
        encoder="results/analysis/{model}/encoder.pt",
        stats="results/analysis/{model}/encoder_stats.jsonl",
    log:
        "logs/analysis/{model}/encoder.log",
    benchmark:
        "logs/analysis/{model}/encoder.benchmark.tsv"
    conda:
        MEDGAN_ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=240,
        gpu=0,
    params:
        settings=config["analysis"]["encoder"],
    script:
        "../scripts/train_encoder.py"


rule invert_heldout:
    input:
        unpack(model_dataset),
        checkpoint="results/models/{model}/checkpoint.pt",
        encoder="results/analysis/{model}/encoder.pt",
        split=model_split,
    output:
        figure=report(
            "results/analysis/{model}/reconstructions.png",
            caption="../report/reconstructions.rst",
            category="analysis",
            subcategory="{model}",
        ),
        table="results/analysis/{model}/reconstructions.tsv",
        codes="results/analysis/{model}/heldout_latents.tsv",
    log:
        "logs/analysis/{model}/invert.log",
    conda:
        MEDGAN_ENV
    threads: 1
    params:
        data_dir=lambda wc: f"results/data/{MODELS[wc.model]['dataset']}",
        settings=config["analysis"]["encoder"],
    script:
        "../scripts/invert_heldout.py"


rule tsne:
    input:
        unpack(model_dataset),
        checkpoint="results/models/{model}/checkpoint.pt",
        encoder="results/analysis/{model}/encoder.pt",
        split=model_split,
    output:
        figure=report(
            "results/analysis/{model}/tsne.png",
            caption="../report/tsne.rst",
            category="analysis",
            subcategory="{model}",
        ),
        table="results/analysis/{model}/tsne.tsv",
    log:
        "logs/analysis/{model}/tsne.log",
    conda:
        MEDGAN_ENV
    threads: 1
    params:
        data_dir=lambda wc: f"results/data/{MODELS[wc.model]['dataset']}",
        settings=config["analysis"]["tsne"],
        color_by=lambda wc: tsne_color_column(config, MODELS[wc.model]),
    script:
        "../scripts/tsne.py"


rule interpolation:
    input:
        unpack(model_dataset),
        checkpoint="results/models/{model}/checkpoint.pt",
    output:
        figure=report(
            "results/analysis/{model}/interpolation.png",
            caption="../report/interpolation.rst",
            category="analysis",
            subcategory="{model}",
        ),
        walk="results/analysis/{model}/walk.gif",
    log:
        "logs/analysis/{model}/interpolation.log",
    conda:
        MEDGAN_ENV
    threads: 1
    params:
        data_dir=lambda wc: f"results/data/{MODELS[wc.model]['dataset']}",
        settings=config["analysis"]["interpolation"],
    script:
        "../scripts/interpolate.py"


rule study_metrics:
    input:
        tables=lambda wc: expand(
            "results/analysis/{model}/metrics.tsv", model=study_metric_models(wc.study)
        ),
        utility=lambda wc: expand(
            "results/analysis/{model}/utility.tsv",
            model=study_utility_models(wc.study),
        ),
        stats=lambda wc: expand(
            "results/models/{model}/stats.jsonl", model=study_models(STUDIES[wc.study])
        ),
        # a model without the metric suite is judged by its last training snapshot
        snapshots=lambda wc: expand(
            "results/models/{model}/snapshots.jsonl",
            model=study_models(STUDIES[wc.study]),
        ),
        privacy=lambda wc: expand(
            "results/analysis/{model}/privacy.tsv",
            model=study_privacy_models(wc.study),
        ),
    output:
        table=report(
            "results/figures/{study}/metrics.tsv",
            caption="../report/study_metrics.rst",
            category="{study}",
            subcategory="metrics",
        ),
        health=report(
            "results/figures/{study}/health.tsv",
            caption="../report/health.rst",
            category=HEALTH_CATEGORY,
            subcategory="{study}",
        ),
    log:
        "logs/figures/{study}/metrics.log",
    conda:
        MEDGAN_ENV
    params:
        models=lambda wc: study_models(STUDIES[wc.study]),
        health=config["analysis"]["health"],
    script:
        "../scripts/study_metrics.py"


rule utility:
    input:
        unpack(model_dataset),
        checkpoint="results/models/{model}/checkpoint.pt",
        split=model_split,
    output:
        table=report(
            "results/analysis/{model}/utility.tsv",
            caption="../report/utility.rst",
            category="analysis",
            subcategory="{model}",
        ),
        runs="results/analysis/{model}/utility_runs.tsv",
        record="results/analysis/{model}/utility.json",
        figure=report(
            "results/analysis/{model}/utility.png",
            caption="../report/utility.rst",
            category="analysis",
            subcategory="{model}",
        ),
    log:
        "logs/analysis/{model}/utility.log",
    benchmark:
        "logs/analysis/{model}/utility.benchmark.tsv"
    conda:
        MEDGAN_ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
        gpu=0,
    params:
        data_dir=lambda wc: f"results/data/{MODELS[wc.model]['dataset']}",
        settings=config["analysis"]["utility"],
    script:
        "../scripts/utility.py"


rule privacy:
    input:
        unpack(model_dataset),
        checkpoint="results/models/{model}/checkpoint.pt",
        split=model_split,
        featurenet=model_featurenet,
    output:
        table=report(
            "results/analysis/{model}/privacy.tsv",
            caption="../report/privacy.rst",
            category="analysis",
            subcategory="{model}",
        ),
        scores="results/analysis/{model}/privacy_scores.tsv",
        record="results/analysis/{model}/privacy.json",
        figure=report(
            "results/analysis/{model}/privacy.png",
            caption="../report/privacy.rst",
            category="analysis",
            subcategory="{model}",
        ),
    log:
        "logs/analysis/{model}/privacy.log",
    benchmark:
        "logs/analysis/{model}/privacy.benchmark.tsv"
    conda:
        MEDGAN_ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=0,
    params:
        data_dir=lambda wc: f"results/data/{MODELS[wc.model]['dataset']}",
        settings=config["analysis"]["privacy"],
    script:
        "../scripts/privacy.py"
