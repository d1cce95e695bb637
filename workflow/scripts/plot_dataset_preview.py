from pathlib import Path

from medgan.plotting import plot_dataset_preview
from medgan.runlog import log_to

log_to(snakemake.log[0], rule=snakemake.rule)
plot_dataset_preview(Path(snakemake.input.images).parent, snakemake.output[0])
