# Stage 1: raw inputs. Phantoms in the real releases' file formats, for running without data.


rule phantoms:
    output:
        directory("resources/phantoms/{kind}"),
    log:
        "logs/phantoms/{kind}.log",
    benchmark:
        "logs/phantoms/{kind}.benchmark.tsv"
    priority: BEFORE_TRAINING
    conda:
        MEDGAN_ENV
    params:
        phantom=lambda wc: config["phantoms"][wc.kind],
    script:
        "../scripts/make_phantoms.py"
