from medgan.runlog import log_to
from medgan.studies.figures import plot_synthetic_panel

log_to(snakemake.log[0], rule=snakemake.rule)
study = snakemake.params.study
plot_synthetic_panel(
    snakemake.params.models,
    snakemake.input.checkpoints,
    snakemake.output[0],
    data_dirs=snakemake.params.data_dirs,
    n_images=min(study["n_images"], 8),
    seed=study["seed"],
    title=f"{snakemake.wildcards.study}: {snakemake.wildcards.panel}",
)
