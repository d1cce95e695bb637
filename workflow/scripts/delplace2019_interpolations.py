from medgan.runlog import log_to
from medgan.studies.delplace2019 import training_images
from medgan.studies.delplace2019_figures import plot_interpolations

log_to(snakemake.log[0], rule=snakemake.rule)
p = snakemake.params
plot_interpolations(
    dict(zip(p.study["delplace"]["models"], snakemake.input.checkpoints, strict=True)),
    training_images(p.data_dir, snakemake.input.split, p.channels),
    snakemake.output[0],
    steps=p.study["delplace"]["interpolation_steps"],
    seed=p.study["seed"],
)
