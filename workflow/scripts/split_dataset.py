from medgan.data.split import write_split
from medgan.runlog import log_to

log_to(snakemake.log[0], rule=snakemake.rule)
h = snakemake.params.holdout
write_split(
    snakemake.input.meta,
    snakemake.output.split,
    fraction=h["fraction"],
    seed=h["seed"],
    group_by=h["group_by"],
)
