# Stage 2: raw files -> prepared dataset (images.npy, meta.tsv, dataset.json).


rule prepare_dataset:
    input:
        source=dataset_source,
    output:
        **prepared("{dataset}"),
    log:
        "logs/data/{dataset}.log",
    benchmark:
        "logs/data/{dataset}.benchmark.tsv"
    conda:
        MEDGAN_ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        dataset=lambda wc: DATASETS[wc.dataset],
    script:
        "../scripts/prepare_dataset.py"
