from pathlib import Path

from medgan.analysis.evaluate import evaluate_model
from medgan.runlog import log_to

log_to(snakemake.log[0], rule=snakemake.rule)
evaluate_model(
    snakemake.input.checkpoint,
    snakemake.params.data_dir,
    snakemake.input.split,
    Path(snakemake.output.table).parent,
    settings=snakemake.params.settings,
    featurenet=snakemake.input.featurenet or None,
    model_name=snakemake.wildcards.model,
)
