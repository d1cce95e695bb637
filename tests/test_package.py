"""Package-level promises: the library never imports snakemake; the conda env is pinned."""

from __future__ import annotations

import pkgutil
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

import medgan

REPO = Path(__file__).resolve().parents[1]


def test_library_never_imports_snakemake():
    modules = [m.name for m in pkgutil.walk_packages(medgan.__path__, "medgan.")]
    assert len(modules) > 10
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'snakemake')\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# pip name -> conda-forge name, where they differ
CONDA_NAMES = {"torch": "pytorch", "matplotlib": "matplotlib-base", "pyyaml": "pyyaml"}


def test_conda_env_is_pinned_and_has_every_dependency():
    env = yaml.safe_load((REPO / "envs" / "medgan.yaml").read_text())
    assert env["channels"][0] == "conda-forge"
    pins = {}
    for dep in env["dependencies"]:
        assert isinstance(dep, str), dep
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*=\s*([0-9][0-9A-Za-z.]*)", dep)
        assert m, f"not pinned to a version: {dep!r}"
        pins[m.group(1).lower()] = m.group(2)
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for req in project["dependencies"]:
        name = re.split(r"[<>=!~ \[]", req, maxsplit=1)[0].lower()
        assert CONDA_NAMES.get(name, name) in pins, f"{name} missing from envs/medgan.yaml"
    assert "python" in pins and "pip" in pins and "setuptools" in pins
    # the pinned torch satisfies the project's lower bound
    major, minor = (int(x) for x in pins["pytorch"].split(".")[:2])
    assert (major, minor) >= (2, 3)


def test_every_rule_uses_the_pinned_env_with_a_post_deploy_script():
    smk = "\n".join(p.read_text() for p in (REPO / "workflow" / "rules").glob("*.smk"))
    n_rules = len(re.findall(r"^rule \w+:", smk, flags=re.M))
    assert n_rules >= 5
    assert len(re.findall(r"^    conda:\n        MEDGAN_ENV$", smk, flags=re.M)) == n_rules
    assert 'MEDGAN_ENV = "../../envs/medgan.yaml"' in smk
    assert (REPO / "envs" / "medgan.post-deploy.sh").is_file()
