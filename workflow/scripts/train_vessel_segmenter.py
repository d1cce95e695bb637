from medgan.data.vessels import train_vessel_segmenter
from medgan.runlog import log_to

log_to(snakemake.log[0], rule=snakemake.rule)
ds = snakemake.params.dataset
prep = ds["preprocessing"]
seg = dict(ds["segmenter"])
train_vessel_segmenter(
    snakemake.input.source,
    snakemake.output.checkpoint,
    snakemake.output.auc,
    resolution=prep["resolution"],
    aspect=prep["aspect"],
    gamma=prep["gamma"],
    clahe_clip=prep["clahe_clip"],
    clahe_kernel=prep["clahe_kernel"],
    overlap=prep["overlap"],
    threads=snakemake.threads,
    **seg,
)
