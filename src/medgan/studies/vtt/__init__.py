"""A Visual Turing Test kit (Han et al. 2018 Table 1; Park et al. 2021; Higaki et al. 2022):
a blinded reader page that works offline, its answer key, and the scoring of answer files.

* :mod:`~medgan.studies.vtt.selection`: which real and synthetic images a kit shows;
* :mod:`~medgan.studies.vtt.kit`: blinding, the kit id, writing page, key and kit.json;
* :mod:`~medgan.studies.vtt.page`: the self-contained HTML page;
* :mod:`~medgan.studies.vtt.answers`: reading and checking answer files;
* :mod:`~medgan.studies.vtt.scoring`: Table 1 per image type, statistics, kappa, figure.
"""
