#!/usr/bin/env bash
# Snakemake runs this once, inside the new environment, after creating envs/medgan.yaml.
# It installs the medgan library from the checkout Snakemake was started in (the working
# directory; set MEDGAN_SOURCE to the checkout when running with --directory elsewhere).
set -euo pipefail
src="${MEDGAN_SOURCE:-$PWD}"
if [ ! -f "$src/pyproject.toml" ] || [ ! -d "$src/src/medgan" ]; then
    echo "medgan post-deploy: $src is not a medgan checkout; set MEDGAN_SOURCE to one" >&2
    exit 1
fi
python -m pip install --no-deps --no-build-isolation -e "$src"
