from medgan.analysis.evaluate import train_dataset_feature_net
from medgan.runlog import log_to

log_to(snakemake.log[0], rule=snakemake.rule)
train_dataset_feature_net(
    snakemake.params.data_dir,
    snakemake.input.split,
    snakemake.output.net,
    settings=snakemake.params.settings,
    max_images=snakemake.params.max_images,
    device="auto",
)
