from medgan.analysis.evaluate import evaluate_synthetic_vessels
from medgan.runlog import log_to

log_to(snakemake.log[0], rule=snakemake.rule)
s = snakemake.params.settings
evaluate_synthetic_vessels(
    snakemake.input.checkpoint,
    snakemake.input.segmenter,
    snakemake.params.data_dir,
    snakemake.input.split,
    snakemake.output.table,
    n_images=s["n_images"],
    threshold=s["threshold"],
    seed=s["seed"],
)
