# Target list of han2018 (functions only: snakemake --lint wants rules and functions in
# separate files); included by han2018.smk.


def han2018_targets():
    if "han2018" not in STUDIES:
        return []
    out = study_targets("han2018")
    if study_metric_models("han2018"):
        out.append("results/figures/han2018/table1.tsv")
    return out


PAPER_TARGETS["han2018"] = han2018_targets
