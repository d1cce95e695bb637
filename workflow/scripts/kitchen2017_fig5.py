from medgan.runlog import log_to
from medgan.studies.kitchen2017 import plot_lesion_interpolation

log_to(snakemake.log[0], rule=snakemake.rule)
plot_lesion_interpolation(
    snakemake.input.checkpoint,
    snakemake.params.data_dir,
    snakemake.output.figure,
    seed=snakemake.params.study["seed"],
)
