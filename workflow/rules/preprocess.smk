# Stage 2: raw files -> prepared dataset (images.npy, meta.tsv, dataset.json).


rule train_vessel_segmenter:
    input:
        source=dataset_source,
    output:
        checkpoint="results/segmenters/{dataset}/unet.pt",
        auc=report(
            "results/segmenters/{dataset}/heldout_auc.tsv",
            caption="../report/heldout_auc.rst",
            category="datasets",
        ),
    log:
        "logs/segmenters/{dataset}.log",
    benchmark:
        "logs/segmenters/{dataset}.benchmark.tsv"
    priority: BEFORE_TRAINING
    conda:
        MEDGAN_ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        dataset=lambda wc: DATASETS[wc.dataset],
    script:
        "../scripts/train_vessel_segmenter.py"


rule prepare_dataset:
    input:
        unpack(dataset_inputs),
    output:
        **prepared("{dataset}"),
    log:
        "logs/data/{dataset}.log",
    benchmark:
        "logs/data/{dataset}.benchmark.tsv"
    priority: BEFORE_TRAINING
    conda:
        MEDGAN_ENV
    # one worker process per thread, each holding one subject (~400 MB at 240x240x155); 4 fits
    # a small cluster node (more: --set-threads prepare_dataset=N; locally capped at --cores).
    # A phantom set (8-20 subjects, seconds) takes one: a job of 2 threads waits until both
    # cores are free at once, and with the long trainings started first that was never, until
    # 29 min into the default run
    threads: prepare_threads
    resources:
        mem_mb=lambda wc, threads: 2000 + 500 * threads,
        runtime=60,
    params:
        dataset=lambda wc: DATASETS[wc.dataset],
    script:
        "../scripts/prepare_dataset.py"


rule dataset_preview:
    input:
        **prepared("{dataset}"),
    output:
        report(
            "results/data/{dataset}/preview.png",
            caption="../report/dataset_preview.rst",
            category="datasets",
        ),
    log:
        "logs/data/{dataset}.preview.log",
    conda:
        MEDGAN_ENV
    script:
        "../scripts/plot_dataset_preview.py"


rule split_dataset:
    input:
        meta="results/data/{dataset}/meta.tsv",
    output:
        split="results/data/{dataset}/split.tsv",
    log:
        "logs/data/{dataset}.split.log",
    priority: BEFORE_TRAINING
    conda:
        MEDGAN_ENV
    params:
        holdout=lambda wc: dataset_holdout(DATASETS[wc.dataset]),
    script:
        "../scripts/split_dataset.py"
