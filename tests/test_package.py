"""Package-level promises: the library never imports snakemake; the conda env is pinned."""

from __future__ import annotations

import ast
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
    # not the ``__main__`` modules: importing one runs it (python -m medgan.bench: a benchmark)
    modules = [m.name for m in pkgutil.walk_packages(medgan.__path__, "medgan.")
               if not m.name.endswith(".__main__")]
    assert len(modules) > 10
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'snakemake')\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)



# the workflow scripts whose jobs load or train a network; every other job is a new process that
# must start without torch (its import alone costs a job seconds of CPU)
TORCH_SCRIPTS = {
    "evaluate_model", "interpolate", "invert_heldout", "kitchen2017_fig4", "kitchen2017_fig5",
    "kitchen2017_tables", "privacy", "synthetic_vessel_auc", "train_encoder",
    "train_feature_net", "train_gan", "train_vessel_segmenter", "tsne", "utility",
    "write_synthetic",
}


def test_light_workflow_scripts_start_without_torch():
    scripts = sorted((REPO / "workflow" / "scripts").glob("*.py"))
    assert TORCH_SCRIPTS <= {p.stem for p in scripts}
    imports = {}
    for path in scripts:
        if path.stem not in TORCH_SCRIPTS:
            tree = ast.parse(path.read_text())
            imports[path.name] = "\n".join(ast.unparse(node) for node in tree.body
                                           if isinstance(node, ast.Import | ast.ImportFrom))
    code = (
        "import importlib.abc, sys\n"
        "class NoTorch(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.partition('.')[0] == 'torch':\n"
        "            raise ImportError(f'{name} imported')\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "bad = {}\n"
        f"for script, code in {imports!r}.items():\n"
        "    try:\n"
        "        exec(code, {})\n"
        "    except ImportError as err:\n"
        "        bad[script] = str(err)\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)

# pip name -> conda-forge name, where they differ
CONDA_NAMES = {"torch": "pytorch", "matplotlib": "matplotlib-base", "isal": "python-isal"}


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
    assert (major, minor) >= (2, 6)  # opacus's floor


def test_every_imported_third_party_package_is_a_dependency():
    """What src/medgan imports must be installed by pyproject (and so by the conda env)."""
    stdlib = set(sys.stdlib_module_names)
    imported = set()
    for path in (REPO / "src" / "medgan").rglob("*.py"):
        for m in re.finditer(r"^\s*(?:import|from)\s+([A-Za-z_][A-Za-z0-9_]*)", path.read_text(),
                             flags=re.M):
            imported.add(m.group(1))
    imported -= stdlib | {"medgan"}
    import_names = {"PIL": "pillow", "SimpleITK": "simpleitk", "skimage": "scikit-image",
                    "sklearn": "scikit-learn", "yaml": "pyyaml"}
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    deps = {re.split(r"[<>=!~ \[]", r, maxsplit=1)[0].lower() for r in project["dependencies"]}
    optional_ok = {"tifffile"}  # a guarded fallback reader, imported only when installed
    missing = {import_names.get(n, n).lower() for n in imported} - deps - optional_ok
    assert not missing, f"imported but not declared in pyproject.toml: {sorted(missing)}"


def test_every_rule_uses_the_pinned_env_with_a_post_deploy_script():
    smk = "\n".join(p.read_text() for p in (REPO / "workflow" / "rules").glob("*.smk"))
    n_rules = len(re.findall(r"^rule \w+:", smk, flags=re.M))
    assert n_rules >= 5
    assert len(re.findall(r"^    conda:\n        MEDGAN_ENV$", smk, flags=re.M)) == n_rules
    assert 'MEDGAN_ENV = "../../envs/medgan.yaml"' in smk
    assert (REPO / "envs" / "medgan.post-deploy.sh").is_file()
