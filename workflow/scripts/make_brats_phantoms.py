from medgan.phantoms import make_brats_phantoms
from medgan.runlog import log_to

log_to(snakemake.log[0])
p = snakemake.params.phantom
make_brats_phantoms(
    snakemake.output[0],
    n_subjects=p.get("n_subjects", 10),
    shape=tuple(p.get("shape", (120, 120, 78))),
    seed=p.get("seed", 0),
)
