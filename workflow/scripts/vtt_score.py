from medgan.runlog import log_to
from medgan.studies.vtt.scoring import score_answers

log_to(snakemake.log[0], rule=snakemake.rule)
score_answers(
    answers_dir=snakemake.input.answers,
    key_path=snakemake.input.key,
    record_path=snakemake.input.record,
    table1_path=snakemake.output.table1,
    scores_path=snakemake.output.scores,
    readers_path=snakemake.output.readers,
    figure_path=snakemake.output.figure,
)
