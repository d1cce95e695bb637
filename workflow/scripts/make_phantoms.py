from medgan.data.phantoms import make_phantoms
from medgan.runlog import log_to

log_to(snakemake.log[0], rule=snakemake.rule)
make_phantoms(snakemake.wildcards.kind, snakemake.output[0], **snakemake.params.phantom)
