from medgan.runlog import log_to
from medgan.studies.vtt.kit import build_kit

log_to(snakemake.log[0], rule=snakemake.rule)
s = snakemake.params.settings
build_kit(
    name=snakemake.wildcards.kit,
    models=s["models"],
    checkpoints=snakemake.input.checkpoints,
    data_dirs=snakemake.params.data_dirs,
    splits=snakemake.input.splits,
    page_path=snakemake.output.page,
    key_path=snakemake.output.key,
    record_path=snakemake.output.record,
    n_real=s["n_real"],
    n_synthetic=s["n_synthetic"],
    seed=s["seed"],
    confidence=s["confidence"],
    second_round=s["second_round"],
    title=s["title"],
    instructions=s["instructions"],
)
