"""``benchmarks/run_profile.py``: a command's process tree, its CPU credited per label."""

from __future__ import annotations

import sys

import pandas as pd
import pytest
from conftest import load_benchmark


def _bench():
    return load_benchmark("run_profile")


def test_a_job_script_gets_its_cpu_and_the_rest_is_accounted(tmp_path):
    """A child named as Snakemake names a job's script (tmpXXXX.<script>.py) is credited to
    <script>.py; the labels and ``unsampled`` add up to the kernel's CPU of the whole tree."""
    script = tmp_path / "tmpab12cd.train_gan.py"
    script.write_text("import time\nt = time.process_time()\n"
                      "while time.process_time() - t < 0.6:\n    pass\n")
    out = tmp_path / "profile.tsv"
    status = _bench().main(["--interval", "0.05", "--out", str(out), "--",
                            sys.executable, "-c",
                            f"import subprocess, sys; subprocess.run([sys.executable, "
                            f"{str(script)!r}], check=True)"])
    assert status == 0
    lines = out.read_text().splitlines()
    table = pd.read_csv(out, sep="\t", comment="#").set_index("label")
    assert table.loc["train_gan.py", "processes"] == 1
    assert 0.4 < table.loc["train_gan.py", "cpu_s"] < 1.5
    assert "snakemake (main)" in table.index and "unsampled" in table.index
    wall, cpu = lines[-1].split("\t")[1], lines[-1].split("\t")[3]
    assert float(cpu) >= 0.6 and float(wall) >= 0.6
    assert table["cpu_s"].sum() == pytest.approx(float(cpu), abs=0.02)
