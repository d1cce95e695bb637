# Stage 3: prepared dataset -> trained GAN (checkpoint.pt, stats.jsonl, snapshots.jsonl,
# samples.png, run.json, TensorBoard events).


rule train_gan:
    input:
        unpack(model_dataset),
        split=model_split,
        # snapshots' domain metrics (analysis.snapshots feature_net); none: MS-SSIM and rho
        featurenet=snapshot_featurenet,
    output:
        checkpoint="results/models/{model}/checkpoint.pt",
        stats="results/models/{model}/stats.jsonl",
        snapshots="results/models/{model}/snapshots.jsonl",
        # TensorBoard event files: tensorboard --logdir results/models
        tensorboard=directory("results/models/{model}/tensorboard"),
        samples="results/models/{model}/samples.png",
        run="results/models/{model}/run.json",
        losses="results/models/{model}/losses.png",
    log:
        "logs/train/{model}.log",
    benchmark:
        "logs/train/{model}.benchmark.tsv"
    # longest first (steps): the run's tail is not one long training alone
    priority: train_priority
    conda:
        MEDGAN_ENV
    # One thread per model lets a laptop train two models at once; raise it (or give a GPU)
    # with --set-threads / --set-resources or a profile, never in config.
    threads: 1
    resources:
        mem_mb=4000,
        runtime=240,
        gpu=0,
    params:
        model=lambda wc: MODELS[wc.model],
        data_dir=lambda wc: f"results/data/{MODELS[wc.model]['dataset']}",
        # Interim checkpoints (schedule.checkpoint_every) live outside the declared outputs,
        # which Snakemake deletes before re-running a failed job; the next run resumes there.
        resume_dir=lambda wc: f"results/resume/{wc.model}",
        snapshots=config["analysis"]["snapshots"],
        # the health rule's thresholds (medgan.analysis.health; None: its defaults)
        health=config["analysis"].get("health"),
    script:
        "../scripts/train_gan.py"


rule synthetic_images:
    input:
        checkpoint="results/models/{model}/checkpoint.pt",
    output:
        directory("results/synthetic/{model}"),
    log:
        "logs/synthetic/{model}.log",
    conda:
        MEDGAN_ENV
    threads: 1
    params:
        synthetic=config["synthetic"],
    script:
        "../scripts/write_synthetic.py"
