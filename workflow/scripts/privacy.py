from pathlib import Path

from medgan.analysis.privacy.run import evaluate_privacy
from medgan.runlog import log_to

log_to(snakemake.log[0], rule=snakemake.rule)
evaluate_privacy(
    snakemake.input.checkpoint,
    snakemake.params.data_dir,
    snakemake.input.split,
    Path(snakemake.output.table).parent,
    settings=snakemake.params.settings,
    featurenet=snakemake.input.featurenet,
    model_name=snakemake.wildcards.model,
    device="auto",
)
