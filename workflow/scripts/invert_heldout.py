from medgan.analysis.latent_analysis import invert_heldout
from medgan.runlog import log_to

log_to(snakemake.log[0], rule=snakemake.rule)
invert_heldout(
    snakemake.input.checkpoint,
    snakemake.input.encoder,
    snakemake.params.data_dir,
    snakemake.input.split,
    figure=snakemake.output.figure,
    table=snakemake.output.table,
    codes=snakemake.output.codes,
    n_figure=snakemake.params.settings["n_figure"],
    seed=snakemake.params.settings["seed"],
)
