from medgan.runlog import log_to
from medgan.studies.delplace2019 import table3, training_images

log_to(snakemake.log[0], rule=snakemake.rule)
p = snakemake.params
models = p.study["delplace"]["models"]
part = p.study["delplace"].get("table3_real", "train")
table3(
    dict(zip(models, snakemake.input.checkpoints, strict=True)),
    p.losses,
    training_images(p.data_dir, snakemake.input.split, p.channels, part=part),
    snakemake.output[0],
    n=p.metrics["delplace_n"],
    seed=p.metrics["seed"],
    n_components=p.metrics["n_components"],
    threshold=p.metrics["delta_threshold"],
    # with "all" the held-out images are in the real row already
    heldout=(training_images(p.data_dir, snakemake.input.split, p.channels, part="heldout")
             if part == "train" else None),
)
