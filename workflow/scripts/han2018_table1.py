from medgan.runlog import log_to
from medgan.studies.han2018 import write_table1

log_to(snakemake.log[0], rule=snakemake.rule)
write_table1(
    snakemake.input.tables,
    snakemake.output.table,
    models=snakemake.params.models,
    datasets=snakemake.params.datasets,
    vtt_scores=snakemake.input.get("vtt"),
)
