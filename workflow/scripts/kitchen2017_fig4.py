from medgan.runlog import log_to
from medgan.studies.kitchen2017 import plot_lesion_page

log_to(snakemake.log[0], rule=snakemake.rule)
plot_lesion_page(
    snakemake.input.checkpoint,
    snakemake.params.data_dir,
    snakemake.output.figure,
    n_rows=snakemake.params.study["n_images"],
    seed=snakemake.params.study["seed"],
)
