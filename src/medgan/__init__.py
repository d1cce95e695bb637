"""medgan: medical-image GAN studies end to end.

The library holds all logic; the Snakemake workflow in ``workflow/`` only calls it.
It never imports snakemake, so training and benchmarks run where only torch and numpy exist.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("medgan")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
