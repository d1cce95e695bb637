# the paper's copy of an analysis figure (Beers 2018 Fig. 4: the held-out reconstructions;
# Fig. 5: the t-SNE map)
from medgan.atomic import copy_file
from medgan.runlog import log_to

log_to(snakemake.log[0], rule=snakemake.rule)
copy_file(snakemake.input.figure, snakemake.output.figure)
