# medgan: medical-image GAN studies end to end.
# Table of contents only; logic lives in src/medgan, rules in workflow/rules.
from snakemake.utils import min_version, validate

min_version("9.0")


report: "workflow/report/workflow.rst"


# The embedded default, unless a config is given with --configfile (which then replaces it:
# a study config is complete on its own, not merged into the default's phantom models).
if not config:

    configfile: "config/config.yaml"


# The schema is edited as workflow/schemas/config.schema.yaml; its JSON copy loads faster.
validate(config, "workflow/schemas/config.schema.json")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/vtt.smk"
# One file per paper: its named target (rule <study>) and its own figures and tables.
include: "workflow/rules/papers/han2018.smk"
include: "workflow/rules/papers/kitchen2017.smk"
include: "workflow/rules/papers/beers2018.smk"
include: "workflow/rules/papers/delplace2019.smk"


# The end of every run: the health verdict of every model, one line each
# (results/figures/<study>/health.tsv, medgan.analysis.health).
onsuccess:
    print_health(health_tables())


rule all:
    default_target: True
    input:
        all_targets(),
        paper_targets(),
