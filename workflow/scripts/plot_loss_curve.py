from medgan.plotting import plot_loss_curves
from medgan.runlog import log_to

log_to(snakemake.log[0], rule=snakemake.rule)
plot_loss_curves(snakemake.input.stats, snakemake.output[0], title=snakemake.wildcards.model)
