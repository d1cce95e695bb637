"""Downstream utility of a model's synthetic images (issue 13): does training a task network on
them, alone or with real images, help when real data is scarce?

* :mod:`~medgan.analysis.utility.tasks`: the tasks of each dataset kind (segmentation of the
  label channels a GAN generates, classification of a meta.tsv label);
* :mod:`~medgan.analysis.utility.fit`: the small seeded task networks, classic augmentation,
  the metrics;
* :mod:`~medgan.analysis.utility.sources`: synthetic sources - the GAN and the controls with
  known answers (oracle, noise, one repeated image);
* :mod:`~medgan.analysis.utility.grid`: training sets x real fractions x seeds, the summary with
  intervals and the paired comparison with real-only training;
* :mod:`~medgan.analysis.utility.run`: the workflow's ``utility`` (files in, files out);
  :mod:`~medgan.analysis.utility.figure` its figure; :mod:`~medgan.analysis.utility.columns`
  the study table's utility columns (pandas only, no torch).
"""
