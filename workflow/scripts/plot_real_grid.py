from medgan.runlog import log_to
from medgan.studies.figures import plot_real_grid

log_to(snakemake.log[0], rule=snakemake.rule)
study = snakemake.params.study
plot_real_grid(
    snakemake.params.data_dir,
    snakemake.output[0],
    channel=snakemake.wildcards.channel,
    n_images=study["n_images"],
    seed=study["seed"],
)
