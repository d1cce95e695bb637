# Target list of delplace2019 (functions only: snakemake --lint wants rules and functions in
# separate files); included by delplace2019.smk.


def delplace2019_targets():
    return []


PAPER_TARGETS["delplace2019"] = delplace2019_targets
