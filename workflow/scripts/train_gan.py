from pathlib import Path

from medgan.analysis.snapshot_scorer import snapshot_scorer_for
from medgan.runlog import log_to
from medgan.training import train_gan

log_to(snakemake.log[0], rule=snakemake.rule)
m = snakemake.params.model
scorer = snapshot_scorer_for(
    m["schedule"],
    snakemake.params.data_dir,
    snakemake.input.split,
    channels=m["channels"],
    featurenet=snakemake.input.featurenet or None,
    settings=snakemake.params.snapshots,
    thresholds=snakemake.params.health,
)
train_gan(
    snakemake.params.data_dir,
    Path(snakemake.output.checkpoint).parent,
    channels=m["channels"],
    resolution=m["resolution"],
    architecture=m["architecture"],
    loss=m["loss"],
    optimizer=m["optimizer"],
    schedule=m["schedule"],
    performance=m["performance"],
    seed=m["seed"],
    threads=snakemake.threads,
    resume_dir=snakemake.params.resume_dir,
    split=snakemake.input.split,
    condition=m.get("condition"),
    snapshot_scorer=scorer,
    tensorboard=snakemake.output.tensorboard,
    privacy=m.get("privacy"),
    provenance={"model": snakemake.wildcards.model, "dataset": m["dataset"]},
    # gpu=N > 1 (from a profile or --set-resources): N torchrun processes, one per GPU
    processes=snakemake.resources.gpu,
)
