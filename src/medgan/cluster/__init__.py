"""Running the workflow on a cluster: :mod:`medgan.cluster.slurm_check`, the preflight of a SLURM
run (``medgan slurm-check``). How a training job meets its SLURM time limit is training's own
business (:mod:`medgan.training.deadline`)."""
