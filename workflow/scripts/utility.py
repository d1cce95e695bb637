from pathlib import Path

from medgan.analysis.utility.run import evaluate_utility
from medgan.runlog import log_to

log_to(snakemake.log[0], rule=snakemake.rule)
evaluate_utility(
    snakemake.input.checkpoint,
    snakemake.params.data_dir,
    snakemake.input.split,
    Path(snakemake.output.table).parent,
    settings=snakemake.params.settings,
    model_name=snakemake.wildcards.model,
    threads=snakemake.threads,
    device="auto",
)
