from medgan.analysis.evaluate import study_metrics_table
from medgan.runlog import log_to

log_to(snakemake.log[0])
study_metrics_table(
    list(snakemake.input.tables),
    snakemake.output[0],
    list(snakemake.input.utility),
    privacy_files=list(snakemake.input.privacy),
)
