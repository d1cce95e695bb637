from medgan.analysis.latent_analysis import tsne_of_training_set
from medgan.runlog import log_to

log_to(snakemake.log[0], rule=snakemake.rule)
s = snakemake.params.settings
tsne_of_training_set(
    snakemake.input.checkpoint,
    snakemake.input.encoder,
    snakemake.params.data_dir,
    snakemake.input.split,
    figure=snakemake.output.figure,
    table=snakemake.output.table,
    color_by=snakemake.params.color_by,
    perplexity=s["perplexity"],
    seed=s["seed"],
)
