from medgan.analysis.latent_analysis import interpolate_model
from medgan.runlog import log_to

log_to(snakemake.log[0], rule=snakemake.rule)
interpolate_model(
    snakemake.input.checkpoint,
    snakemake.params.data_dir,
    figure=snakemake.output.figure,
    walk=snakemake.output.walk,
    settings=snakemake.params.settings,
)
