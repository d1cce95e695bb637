from medgan.runlog import log_to
from medgan.split import write_split

log_to(snakemake.log[0])
h = snakemake.params.holdout
write_split(
    snakemake.input.meta,
    snakemake.output.split,
    fraction=h["fraction"],
    seed=h["seed"],
    group_by=h["group_by"],
)
