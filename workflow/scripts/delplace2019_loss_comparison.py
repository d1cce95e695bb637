from pathlib import Path

from medgan.runlog import log_to
from medgan.studies.delplace2019 import loss_comparison_table, training_images
from medgan.studies.delplace2019_figures import plot_verdicts

log_to(snakemake.log[0], rule=snakemake.rule)
p = snakemake.params
spec = p.study["delplace"]
table = loss_comparison_table(
    spec["loss_comparison"],
    {Path(r).parent.name: Path(r).parent for r in snakemake.input.runs},
    training_images(p.data_dir, snakemake.input.split, p.channels),
    snakemake.output.table,
    n_samples=spec["n_samples"],
    seed=p.metrics["seed"],
    n_components=p.metrics["n_components"],
    threshold=p.metrics["delta_threshold"],
    criteria=spec["criteria"],
    heldout=training_images(p.data_dir, snakemake.input.split, p.channels, part="heldout"),
)
plot_verdicts(table, snakemake.output.figure)
