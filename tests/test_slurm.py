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
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from medgan.training.checkpoint import load_checkpoint

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CONFIG = REPO / "tests" / "slurm" / "config.yaml"
DAG_TARGETS = [
    "results/data/brats_tiny/preview.png",
    "results/synthetic/dag_dcgan",
    "results/analysis/dag_dcgan/metrics.tsv",
    "results/analysis/dag_dcgan/reconstructions.png",
]
# the models whose weights are compared: the GAN, the feature network and the encoder
DAG_MODELS = [
    "results/models/dag_dcgan/checkpoint.pt",
    "results/featurenets/brats_tiny/featurenet.pt",
    "results/analysis/dag_dcgan/encoder.pt",
]
CASE_TIMEOUT_S = 900  # each run of the module fixture (bounded waits everywhere)
PROCS: list[subprocess.Popen] = []  # every snakemake started here, stopped at teardown
POLL_S = 0.1
KILLWAIT_END_IN_S, KILLWAIT_MARGIN_S = 25, 20  # the trainer stops ~5 s after the update


def slurm_env() -> dict[str, str]:
    """The environment of every command: the cluster's config, this checkout's library."""
    env = dict(os.environ)
    default_conf = Path(env.get("MEDGAN_SLURM_DIR", "/tmp/medgan-slurm")) / "etc" / "slurm.conf"
    if "SLURM_CONF" not in env and default_conf.is_file():
        env["SLURM_CONF"] = str(default_conf)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH")) if p)
    for key in ("MEDGAN_SLURM_POLL_S", "MEDGAN_STOP_MARGIN_S", "MEDGAN_SLURM_GPUS"):
        env.pop(key, None)
    return env


def slurm(*args: str, env: dict[str, str], check: bool = True) -> str:
    """A SLURM command's output; ``check=False``: "" if it fails or hangs (polling goes on)."""
    try:
        proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=60)
    except subprocess.TimeoutExpired:
        if check:
            raise
        return ""
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout if proc.returncode == 0 else ""


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


def workdir(path: Path) -> Path:
    path.mkdir(parents=True)
    shutil.copy(REPO / "Snakefile", path / "Snakefile")
    shutil.copytree(REPO / "workflow", path / "workflow")
    shutil.copytree(REPO / "envs", path / "envs")
    (path / "config").mkdir()
    shutil.copy(CONFIG, path / "config" / "config.yaml")
    return path


def copy_prepared(src: Path, dst: Path) -> None:
    """The phantoms, prepared data and Snakemake's records of them: the case runs only train."""
    for part in ("resources", "results/data", ".snakemake/metadata"):
        shutil.copytree(src / part, dst / part)


def snakemake(
    work: Path, args: list[str], env: dict[str, str], *, log: Path, timeout: float = CASE_TIMEOUT_S
) -> subprocess.Popen:
    fh = open(log, "a")  # noqa: SIM115 - closed by the caller's wait()
    fh.write(f"\n$ snakemake {' '.join(args)}\n")
    fh.flush()
    proc = subprocess.Popen(
        [str(BIN / "snakemake"), *args],
        cwd=work,
        env=env,
        stdout=fh,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    PROCS.append(proc)
    return proc


def wait(proc: subprocess.Popen, deadline: float) -> int:
    try:
        return proc.wait(timeout=max(deadline - time.monotonic(), 1))
    except subprocess.TimeoutExpired:
        proc.terminate()  # Snakemake cancels its SLURM jobs
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        raise


CLUSTER_ARGS = [
    "--workflow-profile",
    "workflow/profiles/slurm",
    # the plugin waits 40 s before its first status check and 10 s more after each; tests poll
    "--slurm-init-seconds-before-status-checks",
    "2",
    "--slurm-keep-successful-logs",
]


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


# --- the runs -----------------------------------------------------------------------------------


class Case:
    """One time-limit case: its own directory, Snakemake head(s), and the SLURM jobs it sees."""

    def __init__(self, root: Path, model: str, base: Path, env: dict[str, str], **env_extra):
        self.model, self.env = model, {**env, **env_extra}
        self.work = workdir(root / model)
        copy_prepared(base, self.work)
        self.log = root / f"{model}.log"
        self.resume = self.work / "results" / "resume" / model
        self.out = self.work / "results" / "models" / model
        self.jobs: list[str] = []  # SLURM jobs of the training, in order
        self.states: dict[str, str] = {}
        self.stops: list[int] = []  # the resume checkpoint's step after each stopped job
        self.deadline = time.monotonic() + CASE_TIMEOUT_S

    def start(self, *args: str) -> subprocess.Popen:
        return snakemake(
            self.work,
            [*CLUSTER_ARGS, *args, f"results/models/{self.model}/run.json"],
            self.env,
            log=self.log,
        )

    def note(self, text: str) -> None:
        with open(self.log, "a") as fh:
            fh.write(f"[test {time.strftime('%H:%M:%S')}] {text}\n")

    def running_job(self) -> str | None:
        """The running training job of this case (by its working directory)."""
        out = slurm("squeue", "-h", "-t", "R", "-o", "%i|%Z", env=self.env, check=False)
        for line in out.splitlines():
            job, _, cwd = line.partition("|")
            if Path(cwd).resolve() == self.work.resolve():
                return job
        return None

    def progress(self) -> int:
        """The last step logged by the running (or last) attempt."""
        path = self.resume / "stats.jsonl.partial"
        try:
            lines = path.read_text().splitlines()
            return json.loads(lines[-1])["step"] if lines else 0
        except (OSError, ValueError, KeyError):
            return 0

    def wait_for_job(self) -> str:
        """The next training job once it runs and its trainer has logged a new step."""
        while time.monotonic() < self.deadline:
            job = self.running_job()
            if job and job not in self.jobs:
                self.jobs.append(job)
                start = self.progress()
                self.note(f"job {job} runs (logged step {start})")
                while time.monotonic() < self.deadline and self.progress() <= start:
                    time.sleep(POLL_S)
                self.note(f"job {job} trains (logged step {self.progress()})")
                return job
            time.sleep(POLL_S)
        raise TimeoutError(f"{self.model}: no new training job within {CASE_TIMEOUT_S} s")

    def wait_gone(self, job: str) -> str:
        """Wait for ``job`` to end; record and return its SLURM state and the resume step."""
        while time.monotonic() < self.deadline:
            state = slurm(
                "squeue", "-h", "-t", "all", "-j", job, "-o", "%T", env=self.env, check=False
            ).strip()  # "": squeue failed, ask again
            if state and state not in ("RUNNING", "COMPLETING", "PENDING", "CONFIGURING"):
                self.states[job] = state
                ckpt = self.resume / "checkpoint.pt"
                self.stops.append(load_checkpoint(ckpt)["step"] if ckpt.is_file() else 0)
                self.note(f"job {job} ended {state}; resume checkpoint at {self.stops[-1]}")
                return state
            time.sleep(POLL_S)
        raise TimeoutError(f"{self.model}: job {job} did not end")

    def end_now(self, job: str, in_s: int = 0) -> None:
        """Move the job's end time to now (+ ``in_s`` seconds)."""
        when = f"now+{in_s}" if in_s else "now"
        slurm("scontrol", "update", f"JobId={job}", f"EndTime={when}", env=self.env)
        self.note(f"job {job}: EndTime={when} (logged step {self.progress()})")


def run_timeout_case(case: Case) -> Case:
    """Stopped twice by SLURM's own time-limit timer (SIGTERM), then finished."""
    proc = case.start()
    for _ in range(2):
        job = case.wait_for_job()
        case.end_now(job)
        case.wait_gone(job)
    case.rc = wait(proc, case.deadline)
    return case


def run_killwait_case(case: Case) -> Case:
    """Stopped twice by the trainer before the (moved) end time; then the job ends after its
    limit with training finished; the retry must only write the outputs again."""
    proc = case.start("--retries", "3")
    for _ in range(2):
        job = case.wait_for_job()
        # the trainer reads the new end time within MEDGAN_SLURM_POLL_S and stops
        # MEDGAN_STOP_MARGIN_S before it
        case.end_now(job, in_s=KILLWAIT_END_IN_S)
        case.wait_gone(job)
    job = case.wait_for_job()
    final = case.out / "checkpoint.pt"
    while not final.is_file() and time.monotonic() < case.deadline:  # training has finished
        time.sleep(0.02)
    case.end_now(job)
    case.finished_in_time = case.running_job() == job
    case.wait_gone(job)
    case.rc = wait(proc, case.deadline)
    return case


def run_cancel_case(case: Case) -> Case:
    """scancel twice (as a preemption does), each time followed by a new snakemake run."""
    case.rcs = []
    for _ in range(2):
        proc = case.start("--retries", "0")
        job = case.wait_for_job()
        slurm("scancel", job, env=case.env)
        case.note(f"scancel {job}")
        case.wait_gone(job)
        case.rcs.append(wait(proc, case.deadline))
    case.rc = wait(case.start("--retries", "0"), case.deadline)
    return case


def run_dag_on_cluster(root: Path, env: dict[str, str]) -> dict:
    work = workdir(root / "dag_cluster")
    log = root / "dag_cluster.log"
    rc = wait(
        snakemake(work, [*CLUSTER_ARGS, *DAG_TARGETS], env, log=log),
        time.monotonic() + CASE_TIMEOUT_S,
    )
    text = log.read_text()
    jobs = [
        line.split("SLURM jobid")[1].split()[0]
        for line in text.splitlines()
        if "has been submitted with SLURM jobid" in line
    ]
    info = slurm(
        "squeue",
        "-h",
        "-t",
        "all",
        "-j",
        ",".join(jobs) or "0",
        "-O",
        "JobID:30,State:20,Partition:30,tres-per-job:60",
        env=env,
        check=False,
    )
    return {
        "work": work,
        "rc": rc,
        "log": text,
        "jobs": jobs,
        "squeue": [line.split() for line in info.splitlines()],
    }


class Runner(threading.Thread):
    def __init__(self, fn, *args):
        super().__init__(daemon=True)
        self.fn, self.args, self.result, self.error = fn, args, None, None

    def run(self):
        try:
            self.result = self.fn(*self.args)
        except BaseException as err:  # noqa: BLE001 - re-raised by get()
            self.error = err

    def get(self):
        self.join(timeout=CASE_TIMEOUT_S * 2)
        if self.error is not None:
            raise self.error
        assert self.result is not None, "the run did not finish"
        return self.result


@pytest.fixture(scope="module")
def runs(env, tmp_path_factory):
    root = tmp_path_factory.mktemp("slurm")
    try:
        yield _run_all(root, env)
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


def _run_all(root: Path, env: dict[str, str]) -> dict:
    started = time.monotonic()
    dag = Runner(run_dag_on_cluster, root, env)
    dag.start()
    base = workdir(root / "local")
    local_env = {**env, "SLURM_JOB_ID": ""}
    deadline = time.monotonic() + CASE_TIMEOUT_S
    rc = wait(
        snakemake(
            base,
            ["--cores", "2", "results/data/brats_tiny/split.tsv"],
            local_env,
            log=root / "local.log",
        ),
        deadline,
    )
    assert rc == 0, (root / "local.log").read_text()[-3000:]
    cases = {
        "timeout": Runner(run_timeout_case, Case(root, "tl_timeout", base, env)),
        "killwait": Runner(
            run_killwait_case,
            Case(
                root,
                "tl_killwait",
                base,
                env,
                MEDGAN_SLURM_POLL_S="1",
                MEDGAN_STOP_MARGIN_S=str(KILLWAIT_MARGIN_S),
            ),
        ),
        "cancel": Runner(run_cancel_case, Case(root, "tl_cancel", base, env)),
    }
    for runner in cases.values():
        runner.start()
    # the reference: the DAG and the time-limit models, uninterrupted, locally
    refs = [f"results/models/{m}/run.json" for m in ("tl_timeout", "tl_killwait")]
    local_rc = wait(
        snakemake(base, ["--cores", "2", *DAG_TARGETS, *refs], local_env, log=root / "local.log"),
        deadline,
    )
    out = {"root": root, "local": base, "local_rc": local_rc, "dag": dag, **cases}
    for runner in (dag, *cases.values()):
        runner.join(timeout=CASE_TIMEOUT_S * 2)
    out["wall_s"] = time.monotonic() - started
    print(f"\nSLURM test runs: {out['wall_s']:.0f} s wall (logs in {root})")
    return out


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
