from medgan.runlog import log_to
from medgan.studies.delplace2019 import training_time_table

log_to(snakemake.log[0], rule=snakemake.rule)
models = snakemake.params.study["delplace"]["models"]
training_time_table(dict(zip(models, snakemake.input.runs, strict=True)), snakemake.output[0])
