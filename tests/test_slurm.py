"""The workflow on a real one-node SLURM cluster, through the shipped profile.

Needs the cluster of ``tests/slurm/start_cluster.sh`` (or any cluster that ``sinfo`` reaches with
a `cpu` and a `gpu` partition): skipped when none answers, failed when MEDGAN_REQUIRE_SLURM=1.
One module fixture runs everything at once (the machine has two cores; the waits are SLURM's):

* a local ``--cores 2`` run of tests/slurm/config.yaml (data, the DAG of ``dag_dcgan``, and the
  uninterrupted reference models of the time-limit cases);
* the same DAG through ``--workflow-profile workflow/profiles/slurm`` in a fresh directory;
* three time-limit cases, each in its own directory with the local run's prepared data:
  - ``tl_timeout``: the job's end time is moved to now (``scontrol update EndTime=now``: SLURM's
    smallest --time is a minute) and SLURM's own timer stops it (TIMEOUT, SIGTERM), twice;
  - ``tl_killwait``: stopped twice by the trainer itself a margin before the moved end time
    (exit 75; MEDGAN_SLURM_POLL_S=1 so that it reads the new end time within a second),
    then the end time is moved once training has finished, so the job ends after its limit
    (TIMEOUT: Snakemake deletes its outputs); the retry must not train again;
  - ``tl_cancel``: ``scancel`` twice, each followed by a new ``snakemake`` run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import add_truncated_brats, workflow_copy
from slurm.runs import (
    BIN,
    CLUSTER_ARGS,
    CONFIG,
    DAG_MODELS,
    DAG_TARGETS,
    PROCS,
    run_all,
    slurm,
    slurm_env,
    workdir,
)

from medgan.training.checkpoint import load_checkpoint

pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module")
def env():
    env = slurm_env()
    reason = None
    if shutil.which("sinfo", path=env["PATH"]) is None:
        reason = "sinfo not found (install slurm-wlm and munge, run tests/slurm/start_cluster.sh)"
    else:
        try:
            proc = subprocess.run(
                ["sinfo", "-h", "-o", "%P %T"], capture_output=True, text=True, env=env, timeout=15
            )
            states = proc.stdout.split()
            if proc.returncode != 0 or not any(
                s.startswith(("idle", "mix", "alloc")) for s in states
            ):
                reason = f"no SLURM node answers: {proc.stderr.strip() or proc.stdout.strip()}"
        except subprocess.TimeoutExpired:
            reason = "sinfo did not answer within 15 s"
    if reason:
        reason += " (start one with tests/slurm/start_cluster.sh)"
        if os.environ.get("MEDGAN_REQUIRE_SLURM") == "1":
            pytest.fail(reason + "; MEDGAN_REQUIRE_SLURM=1")
        pytest.skip(reason)
    return env


# --- the preflight check ------------------------------------------------------------------------


def slurm_check(work: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "medgan.cli",
            "slurm-check",
            "--workflow-profile",
            "workflow/profiles/slurm",
            "--snakemake",
            str(BIN / "snakemake"),
            "--",
            "--forceall",
            *DAG_TARGETS,
            "results/models/tl_timeout/run.json",
            *args,
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_preflight_passes_the_shipped_profile(env, tmp_path):
    proc = slurm_check(workdir(tmp_path / "w"), env)
    assert proc.returncode == 0, proc.stderr
    assert "every request fits the cluster" in proc.stdout
    assert "11 job(s) of 10 rule(s)" in proc.stdout  # the DAG and a time-limit model


def test_preflight_names_an_impossible_request(env, tmp_path):
    proc = slurm_check(workdir(tmp_path / "w"), env, "--set-threads", "train_gan=64")
    assert proc.returncode == 1
    cpus, mem, gres = (
        slurm("sinfo", "-h", "-N", "-p", "gpu", "-o", "%c|%m|%G", env=env).split()[0].split("|")
    )
    gpus = int(gres.split(":")[-1].split("(")[0])
    expected = (
        f"train_gan asks 64 CPUs / 4000 MB / 1 GPU on partition gpu; its largest node "
        f"has {cpus} CPUs / {mem} MB / {gpus} GPU{'s' * (gpus != 1)}"
    )
    assert proc.stderr.splitlines() == [f"medgan slurm-check: {expected}"]


def test_preflight_detects_missing_accounting(env, tmp_path):
    config = slurm("scontrol", "show", "config", env=env)
    if "accounting_storage/none" not in config:
        pytest.skip("this cluster has accounting")
    proc = slurm_check(workdir(tmp_path / "w"), env, "--slurm-status-command", "sacct")
    assert proc.returncode == 1
    assert "no accounting" in proc.stderr and "--slurm-status-command squeue" in proc.stderr


# --- a failed job on the terminal ---------------------------------------------------------------


def test_bad_input_on_the_cluster_is_one_line_on_the_terminal(env, tmp_path):
    """A truncated scan stops a cluster job; the head prints the rule's log and the job's SLURM
    log (``show-failed-logs``), each with the job's one line, and no traceback. One small job,
    and the profile does not resubmit it (only its training rules are retried): a bad file
    stays bad."""
    work = workflow_copy(tmp_path / "w", CONFIG)
    bad = add_truncated_brats(work)
    proc = subprocess.run(
        [str(BIN / "snakemake"), *CLUSTER_ARGS, "results/data/brats_user/images.npy",
         "--set-threads", "prepare_dataset=1"],  # nargs+ last: not the target
        cwd=work, env=env, capture_output=True, text=True, timeout=600,
    )
    terminal = proc.stdout + proc.stderr
    assert proc.returncode == 1, terminal[-4000:]
    submitted = list((work / ".snakemake/slurm_logs/rule_prepare_dataset").rglob("*.log"))
    assert len(submitted) == 1, f"prepare_dataset was submitted {len(submitted)} times"
    lines = [ln for ln in terminal.splitlines() if ln.startswith(f"prepare_dataset: {bad}: ")]
    assert len(lines) >= 2 and "truncated" in lines[0], terminal[-4000:]
    assert "Logfile logs/data/brats_user.log:" in terminal
    assert re.search(r"^Logfile /\S+/\.snakemake/slurm_logs/rule_prepare_dataset/\S+\.log:$",
                     terminal, re.M), terminal[-4000:]  # the plugin's log of the job
    assert "Traceback (most recent call last)" not in terminal


@pytest.fixture(scope="module")
def runs(env, tmp_path_factory):
    root = tmp_path_factory.mktemp("slurm")
    try:
        yield run_all(root, env)
    finally:
        for proc in PROCS:  # a head still running after a failure: it cancels its jobs
            if proc.poll() is None:
                proc.terminate()
        for proc in PROCS:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        # nothing of ours may stay on the cluster
        for line in slurm("squeue", "-h", "-o", "%i|%Z", env=env, check=False).splitlines():
            job, _, cwd = line.partition("|")
            if str(root) in cwd:
                slurm("scancel", job, env=env, check=False)


# --- assertions ---------------------------------------------------------------------------------


def tensors(obj, prefix=""):
    if isinstance(obj, torch.Tensor):
        return {prefix: obj}
    items = (
        obj.items()
        if isinstance(obj, dict)
        else (enumerate(obj) if isinstance(obj, list | tuple) else [])
    )
    out = {}
    for k, v in items:
        out.update(tensors(v, f"{prefix}.{k}"))
    return out


def assert_same_weights(a: Path, b: Path) -> None:
    ta = tensors(torch.load(a, map_location="cpu", weights_only=True))
    tb = tensors(torch.load(b, map_location="cpu", weights_only=True))
    assert ta.keys() == tb.keys() and len(ta) > 4, f"{a} and {b} hold different tensors"
    differ = [k for k in ta if not torch.equal(ta[k], tb[k])]
    assert not differ, f"{b} differs from {a} in {differ[:5]}"


def stats_steps(path: Path) -> list[int]:
    return [json.loads(line)["step"] for line in path.read_text().splitlines()]


def test_shipped_profile_runs_the_dag_through_sbatch(runs):
    dag = runs["dag"].get()
    assert dag["rc"] == 0, dag["log"][-4000:]
    total = next(
        int(line.split()[1]) for line in dag["log"].splitlines() if line.startswith("total ")
    )
    assert len(dag["jobs"]) == total >= 9, "every job goes through sbatch"
    rules = {
        p.name.removeprefix("rule_") for p in (dag["work"] / ".snakemake" / "slurm_logs").iterdir()
    }
    assert {
        "phantoms",
        "prepare_dataset",
        "train_gan",
        "train_feature_net",
        "train_encoder",
        "model_metrics",
    } <= rules
    rows = {r[0]: r for r in dag["squeue"]}
    assert set(rows) == set(dag["jobs"]) and all(r[1] == "COMPLETED" for r in rows.values())
    # the training rules on the gpu partition with the node's GPU, the rest on the default
    by_partition = {r[2] for r in rows.values()}
    assert by_partition == {"cpu", "gpu"}
    assert all("gpu" in r[3] for r in rows.values() if r[2] == "gpu")


def test_cluster_models_equal_a_local_run_bit_for_bit(runs):
    dag = runs["dag"].get()
    assert runs["local_rc"] == 0
    for rel in DAG_MODELS:
        assert_same_weights(runs["local"] / rel, dag["work"] / rel)


def test_time_limit_mid_training_resumes_exactly(runs):
    case = runs["timeout"].get()
    assert case.rc == 0, case.log.read_text()[-4000:]
    assert [case.states[j] for j in case.jobs[:2]] == ["TIMEOUT", "TIMEOUT"]
    steps = load_checkpoint(case.out / "checkpoint.pt")["config"]["schedule"]["steps"]
    assert 0 < case.stops[0] < case.stops[1] < steps, f"stopped at {case.stops}"
    run = json.loads((case.out / "run.json").read_text())
    assert run["resumed_from_step"] == case.stops[1]
    ref = runs["local"] / "results/models/tl_timeout"
    assert_same_weights(ref / "checkpoint.pt", case.out / "checkpoint.pt")
    assert stats_steps(case.out / "stats.jsonl") == stats_steps(ref / "stats.jsonl")


def test_training_finished_inside_killwait_is_not_repeated(runs):
    case = runs["killwait"].get()
    assert case.rc == 0, case.log.read_text()[-4000:]
    assert case.finished_in_time, "the job ended before the test moved its end time"
    states = [case.states[j] for j in case.jobs[:3]]
    # stopped twice by the trainer itself (exit 75 before the limit), then ended after it
    assert states == ["FAILED", "FAILED", "TIMEOUT"], states
    assert 0 < case.stops[0] < case.stops[1] < 1500
    run = json.loads((case.out / "run.json").read_text())
    assert run["resumed_from_step"] == 1500, "the retry trained again"
    ref = runs["local"] / "results/models/tl_killwait"
    assert_same_weights(ref / "checkpoint.pt", case.out / "checkpoint.pt")
    assert stats_steps(case.out / "stats.jsonl") == stats_steps(ref / "stats.jsonl")


def test_scancel_resumes_in_the_next_run(runs):
    case = runs["cancel"].get()
    assert case.rcs[0] != 0 and case.rcs[1] != 0 and case.rc == 0, case.log.read_text()[-4000:]
    assert [case.states[j] for j in case.jobs[:2]] == ["CANCELLED", "CANCELLED"]
    assert 0 < case.stops[0] < case.stops[1] < 1500
    run = json.loads((case.out / "run.json").read_text())
    assert run["resumed_from_step"] == case.stops[1]
    ref = runs["local"] / "results/models/tl_killwait"  # the same config
    assert_same_weights(ref / "checkpoint.pt", case.out / "checkpoint.pt")
