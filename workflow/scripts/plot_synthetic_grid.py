from medgan.runlog import log_to
from medgan.studies.figures import plot_synthetic_grid

log_to(snakemake.log[0], rule=snakemake.rule)
study = snakemake.params.study
plot_synthetic_grid(
    snakemake.input.checkpoint,
    snakemake.output[0],
    data_dir=snakemake.params.data_dir,
    n_images=study["n_images"],
    seed=study["seed"],
    title=snakemake.wildcards.model,
)
