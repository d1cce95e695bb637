from medgan.analysis.encoder import train_encoder
from medgan.runlog import log_to

log_to(snakemake.log[0], rule=snakemake.rule)
s = snakemake.params.settings
train_encoder(
    snakemake.input.checkpoint,
    snakemake.output.encoder,
    steps=s["steps"],
    batch_size=s.get("batch_size"),
    seed=s["seed"],
    stats_path=snakemake.output.stats,
    threads=snakemake.threads,
    device="auto",
)
