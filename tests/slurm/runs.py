"""The runs of tests/test_slurm.py on the SLURM cluster: working directories, Snakemake heads,
and the controllers of the time-limit cases (what they do to the jobs is described there)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from medgan.training.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[2]
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


def workdir(path: Path) -> Path:
    path.mkdir(parents=True)
    shutil.copy(REPO / "Snakefile", path / "Snakefile")
    shutil.copytree(REPO / "workflow", path / "workflow")
    shutil.copytree(REPO / "envs", path / "envs")
    (path / "config").mkdir()
    shutil.copy(CONFIG, path / "config" / "config.yaml")
    return path


def copy_prepared(src: Path, dst: Path) -> None:
    """The phantoms, prepared data, feature net (the snapshots score with it) and Snakemake's
    records of them: the case runs only train_gan."""
    for part in ("resources", "results/data", "results/featurenets", ".snakemake/metadata"):
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
        self.head: subprocess.Popen | None = None  # the running snakemake

    def start(self, *args: str) -> subprocess.Popen:
        self.head = snakemake(
            self.work,
            [*CLUSTER_ARGS, *args, f"results/models/{self.model}/run.json"],
            self.env,
            log=self.log,
        )
        return self.head

    def note(self, text: str) -> None:
        with open(self.log, "a") as fh:
            fh.write(f"[test {time.strftime('%H:%M:%S')}] {text}\n")

    def running_job(self) -> str | None:
        """The running training job of this case (by its working directory and the rule the
        executor names in the job's comment)."""
        out = slurm("squeue", "-h", "-t", "R", "-o", "%i|%k|%Z", env=self.env, check=False)
        for line in out.splitlines():
            job, rule, cwd = (line.split("|", 2) + ["", ""])[:3]
            if rule.startswith("rule_train_gan") and Path(cwd).resolve() == self.work.resolve():
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
        cmd = ["scontrol", "update", f"JobId={job}", f"EndTime={when}"]
        for _ in range(5):  # slurmctld may be busy (a loaded machine): ask again
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, env=self.env, timeout=60)
            except subprocess.TimeoutExpired:
                self.note(f"job {job}: scontrol update did not answer in 60 s")
                continue
            if proc.returncode == 0:
                self.note(f"job {job}: EndTime={when} (logged step {self.progress()})")
                return
            self.note(f"job {job}: scontrol update failed: {proc.stderr.strip()}")
            time.sleep(1)
        raise AssertionError(f"{self.model}: cannot move the end time of job {job}")


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
    proc = case.start("--preemptible-retries", "3")
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
        proc = case.start("--preemptible-retries", "0")
        job = case.wait_for_job()
        slurm("scancel", job, env=case.env)
        case.note(f"scancel {job}")
        case.wait_gone(job)
        case.rcs.append(wait(proc, case.deadline))
    case.rc = wait(case.start("--preemptible-retries", "0"), case.deadline)
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
            case = self.args[0] if self.args and isinstance(self.args[0], Case) else None
            if case is not None:  # stop its head (which cancels its job): nothing to wait for
                case.note(f"controller failed: {err!r}")
                if case.head is not None and case.head.poll() is None:
                    case.head.terminate()

    def get(self):
        self.join(timeout=CASE_TIMEOUT_S * 2)
        if self.error is not None:
            raise self.error
        assert self.result is not None, "the run did not finish"
        return self.result


def run_all(root: Path, env: dict[str, str]) -> dict:
    started = time.monotonic()
    dag = Runner(run_dag_on_cluster, root, env)
    dag.start()
    base = workdir(root / "local")
    local_env = {**env, "SLURM_JOB_ID": ""}
    deadline = time.monotonic() + CASE_TIMEOUT_S
    rc = wait(
        snakemake(
            base,
            ["--cores", "2", "results/featurenets/brats_tiny/featurenet.pt"],
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
