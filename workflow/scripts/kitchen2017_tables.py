from medgan.runlog import log_to
from medgan.studies.kitchen2017 import write_layer_tables

log_to(snakemake.log[0], rule=snakemake.rule)
write_layer_tables(
    snakemake.input.checkpoint,
    generator_table=snakemake.output.generator,
    discriminator_table=snakemake.output.discriminator,
)
