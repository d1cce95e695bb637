from medgan.runlog import log_to
from medgan.studies.beers2018 import write_slice_traversal

log_to(snakemake.log[0], rule=snakemake.rule)
write_slice_traversal(
    snakemake.input.checkpoint,
    snakemake.input.encoder,
    snakemake.params.data_dir,
    snakemake.input.split,
    snakemake.input.tsne,
    snakemake.output.figure,
    table=snakemake.output.table,
    column=snakemake.params.column,
)
