from medgan.runlog import log_to
from medgan.studies.figures import write_model_table

log_to(snakemake.log[0], rule=snakemake.rule)
write_model_table(snakemake.params.models, snakemake.input.runs, snakemake.output[0])
