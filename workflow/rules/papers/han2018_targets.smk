# Target list of han2018 (functions only: snakemake --lint wants rules and functions in
# separate files); included by han2018.smk.


def han2018_targets():
    if "han2018" not in STUDIES:
        return []
    out = study_targets("han2018")
    if study_metric_models("han2018"):
        out.append("results/figures/han2018/table1.tsv")
    return out


def han2018_vtt_scores(wildcards):
    """The scored reader study of the kit named han2018, once readers' answers are there: its
    pooled counts stand beside the C2ST's in Table 1."""
    scores = "results/vtt/han2018/scores/table1.tsv"
    return {"vtt": scores} if scores in vtt_targets() else {}


PAPER_TARGETS["han2018"] = han2018_targets
