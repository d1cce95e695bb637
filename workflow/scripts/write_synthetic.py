from medgan.runlog import log_to
from medgan.training.generate import write_synthetic

log_to(snakemake.log[0], rule=snakemake.rule)
s = snakemake.params.synthetic
write_synthetic(
    snakemake.input.checkpoint,
    snakemake.output[0],
    n=s["n"],
    seed=s["seed"],
    formats=tuple(s["formats"]),
    nifti_layout=s["nifti_layout"],
    png_dtype=s["png_dtype"],
)
