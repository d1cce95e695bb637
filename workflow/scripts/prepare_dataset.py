from pathlib import Path

from medgan.data.prepare import prepare_dataset
from medgan.runlog import log_to

log_to(snakemake.log[0], rule=snakemake.rule)
prepare_dataset(
    snakemake.input.source,
    Path(snakemake.output.images).parent,
    dataset=snakemake.params.dataset,
    name=snakemake.wildcards.dataset,
    segmenter=snakemake.input.get("segmenter"),
    workers=snakemake.threads,
)
