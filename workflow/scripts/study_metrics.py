from medgan.analysis.evaluate import study_metrics_table
from medgan.runlog import log_to

log_to(snakemake.log[0], rule=snakemake.rule)
study_metrics_table(
    list(snakemake.input.tables),
    snakemake.output.table,
    list(snakemake.input.utility),
    stats_files=dict(zip(snakemake.params.models, snakemake.input.stats, strict=True)),
    snapshot_files=dict(
        zip(snakemake.params.models, snakemake.input.snapshots, strict=True)
    ),
    health_path=snakemake.output.health,
    health=snakemake.params.health,
    privacy_files=list(snakemake.input.privacy),
)
