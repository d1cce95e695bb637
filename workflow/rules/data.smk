# Stage 1: raw inputs. Phantoms in the real releases' file formats, for running without data.


rule brats_phantoms:
    output:
        directory("resources/phantoms/brats"),
    log:
        "logs/phantoms/brats.log",
    benchmark:
        "logs/phantoms/brats.benchmark.tsv"
    conda:
        MEDGAN_ENV
    params:
        phantom=config.get("phantoms", {}).get("brats", {}),
    script:
        "../scripts/make_brats_phantoms.py"
