from medgan.runlog import log_to
from medgan.studies.beers2018 import copy_figure

log_to(snakemake.log[0], rule=snakemake.rule)
copy_figure(snakemake.input.figure, snakemake.output.figure)
