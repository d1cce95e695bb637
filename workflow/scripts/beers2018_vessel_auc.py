from medgan.runlog import log_to
from medgan.studies.beers2018 import vessel_auc_table

log_to(snakemake.log[0], rule=snakemake.rule)
vessel_auc_table(snakemake.params.models, snakemake.input.tables, snakemake.output.table)
