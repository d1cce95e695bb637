"""A failed job leaves one line on the terminal: ``<rule>: <file>: <problem>`` for bad input,
the last line of the traceback (the traceback itself in the job's log) for anything else."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, add_truncated_brats, run, workflow_copy

TRACEBACK = "Traceback (most recent call last)"


def job(tmp_path: Path, body: str) -> tuple[subprocess.CompletedProcess, str]:
    """Run a script that starts like every workflow script and then runs ``body``; its result
    and its log."""
    log = tmp_path / "logs" / "job.log"
    script = (f"from medgan.runlog import log_to\nlog_to({str(log)!r}, rule='some_rule')\n"
              "print('working')\n" + body)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    return proc, log.read_text()


def test_bad_input_is_one_line_on_stderr_and_in_the_log(tmp_path):
    proc, log = job(tmp_path, "from medgan.errors import InputError\n"
                              "raise InputError('data/a.nii.gz', 'the file is\\ntruncated')")
    line = "some_rule: data/a.nii.gz: the file is truncated"
    assert proc.returncode == 1
    assert proc.stderr == line + "\n"
    assert log == f"working\n{line}\n"


def test_config_error_is_one_line(tmp_path):
    proc, log = job(tmp_path, "from medgan.config import ConfigError\n"
                              "raise ConfigError('models.m.dataset: no dataset named x')")
    assert proc.returncode == 1
    assert proc.stderr == "some_rule: models.m.dataset: no dataset named x\n"
    assert TRACEBACK not in log


def test_unexpected_error_keeps_its_traceback_in_the_log(tmp_path):
    proc, log = job(tmp_path, "def deep():\n    raise ZeroDivisionError('division\\nby zero')\n"
                              "deep()\n")
    line = (f"some_rule: ZeroDivisionError: division by zero "
            f"(traceback in {tmp_path / 'logs' / 'job.log'})")
    assert proc.returncode == 1
    assert proc.stderr == line + "\n"
    lines = log.splitlines()
    assert lines[1] == TRACEBACK + ":" and "in deep" in log  # the whole traceback, for debugging
    assert lines[-1] == line


def test_an_exit_status_passes_through(tmp_path):
    """A training job stopped at its time limit exits 75 (SystemExit) for its retry to resume."""
    proc, log = job(tmp_path, "raise SystemExit(75)")
    assert proc.returncode == 75
    assert proc.stderr == "" and log == "working\n"


def test_every_workflow_script_reports_its_errors_through_log_to():
    scripts = sorted((REPO / "workflow" / "scripts").glob("*.py"))
    assert len(scripts) > 30
    missing = [s.name for s in scripts
               if "log_to(snakemake.log[0], rule=snakemake.rule)" not in s.read_text()]
    assert not missing


@pytest.mark.workflow
def test_a_truncated_scan_is_one_line_on_the_terminal(tmp_path):
    """A real run through the local profile: the job's own stderr and the failed job's log
    (``show-failed-logs``) both show the line; no traceback, no prepared output."""
    work = workflow_copy(tmp_path / "w")
    bad = add_truncated_brats(work)
    proc = run(["snakemake", "--workflow-profile", "workflow/profiles/default", "--cores", "1",
                "results/data/brats_user/images.npy"], cwd=work, check=False)
    terminal = proc.stdout + proc.stderr
    assert proc.returncode == 1, terminal[-4000:]
    lines = [ln for ln in terminal.splitlines() if ln.startswith(f"prepare_dataset: {bad}: ")]
    assert len(lines) == 2, terminal[-4000:]
    assert "truncated" in lines[0] and lines[0] == lines[1]
    assert "Logfile logs/data/brats_user.log:" in terminal
    assert TRACEBACK not in terminal
    assert not [p for p in (work / "results").rglob("*") if p.is_file()]


@pytest.mark.parametrize("profile", ["default", "slurm"])
def test_both_profiles_print_a_failed_jobs_log(profile):
    """On SLURM the job's stderr (its one line) is in the plugin's log of the job: only
    ``show-failed-logs`` brings it to the terminal."""
    import yte

    with open(REPO / "workflow" / "profiles" / profile / "config.yaml") as fh:
        assert yte.process_yaml(fh)["show-failed-logs"] is True
