# Delplace 2019 (placeholder: the Delplace helper replaces this file).


include: "delplace2019_targets.smk"


rule delplace2019:
    input:
        delplace2019_targets(),
