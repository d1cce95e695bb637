from medgan.runlog import log_to
from medgan.studies.delplace2019 import table3, training_images

log_to(snakemake.log[0], rule=snakemake.rule)
p = snakemake.params
models = p.study["delplace"]["models"]
table3(
    dict(zip(models, snakemake.input.checkpoints, strict=True)),
    p.losses,
    training_images(p.data_dir, snakemake.input.split, p.channels,
                    part=p.study["delplace"].get("table3_real", "train")),
    snakemake.output[0],
    n=p.metrics["delplace_n"],
    seed=p.metrics["seed"],
    n_components=p.metrics["n_components"],
    threshold=p.metrics["delta_threshold"],
)
