"""Where a whole workflow run's CPU goes, including what the rules' benchmark files cannot see.

    python benchmarks/run_profile.py [--interval 0.1] [--out run_profile.tsv] -- \\
        snakemake --cores all

Runs the command and samples its process tree every ``--interval`` seconds (``psutil``, which
Snakemake itself needs). Each process's own CPU time (user + sys, without its children's) is
credited to a label:

- ``snakemake (main)``: the command's own process, the scheduler: building and updating the
  DAG, checking outputs and input sizes, writing the logs;
- the rule's script for a job (``.snakemake/scripts/tmpXXXX.<script>.py``), with the workers it
  forks, which keep its command line;
- ``snakemake (job)`` for other Snakemake processes, and the program's name for anything else
  (the shell that starts a job, ``git``).

At the end the run's whole CPU time is taken from the kernel (``RUSAGE_CHILDREN`` of this
process, which counts every descendant that was waited for), so ``unsampled`` is the CPU of
processes too short-lived to be sampled and of samples missed between a process's last sample
and its exit. The table gives, per label, the processes that ran (a job's forked workers count
as processes of its label), their CPU seconds and the share of the run's CPU; then the wall
time, the CPU in all and the mean number of busy cores.
"""

from __future__ import annotations

import argparse
import re
import resource
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import psutil

SCRIPT = re.compile(r"tmp[\w-]+\.(\w+)\.py$")
# labels a process may shed when it execs (a shell that becomes the job's python)
PROVISIONAL = {"bash", "sh", "(gone)", "(unnamed)"}
Table = dict[str, tuple[int, float]]  # label -> (processes, CPU seconds)


def label(proc: psutil.Process, root: int) -> str:
    """The label a process's CPU is credited to (see the module docstring)."""
    if proc.pid == root:
        return "snakemake (main)"
    try:
        cmdline = proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return "(gone)"
    for arg in cmdline:
        match = SCRIPT.search(arg)
        if match:
            return match.group(1) + ".py"
    if any("snakemake" in arg for arg in cmdline):
        return "snakemake (job)"
    return Path(cmdline[0]).name if cmdline else "(unnamed)"


class TreeSampler:
    """Latest own CPU time of every process seen under ``root``, keyed by (pid, start time)."""

    def __init__(self, root: int) -> None:
        self.root = psutil.Process(root)
        self.cpu: dict[tuple[int, float], float] = {}
        self.labels: dict[tuple[int, float], str] = {}

    def sample(self) -> None:
        try:
            procs = [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        for proc in procs:
            try:
                with proc.oneshot():
                    key = (proc.pid, proc.create_time())
                    times = proc.cpu_times()
                    if self.labels.get(key, "(unnamed)") in PROVISIONAL:
                        self.labels[key] = label(proc, self.root.pid)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            self.cpu[key] = times.user + times.system

    def table(self) -> Table:
        """Per label: processes seen and their CPU seconds."""
        out: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
        for key, cpu in self.cpu.items():
            row = out[self.labels[key]]
            row[0] += 1
            row[1] += cpu
        return {name: (int(n), cpu) for name, (n, cpu) in out.items()}


def run(command: list[str], interval: float) -> tuple[Table, float, float, int]:
    """Run ``command``, sampling it; per-label table, wall s, whole CPU s, exit status."""
    start = time.monotonic()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(command)
    sampler = TreeSampler(proc.pid)
    while proc.poll() is None:
        sampler.sample()
        time.sleep(interval)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return sampler.table(), wall, total, proc.returncode


def write_table(rows: Table, wall: float, total: float, out: Path) -> None:
    """Print the table (largest first) and write it as TSV."""
    sampled = sum(cpu for _, cpu in rows.values())
    rows = dict(rows, unsampled=(0, max(total - sampled, 0.0)))
    lines = ["label\tprocesses\tcpu_s\tshare"]
    print(f"{'label':34s}{'procs':>7s}{'cpu s':>10s}{'share':>8s}")
    for name, (n, cpu) in sorted(rows.items(), key=lambda item: -item[1][1]):
        share = cpu / total if total else 0.0
        print(f"{name:34s}{n:7d}{cpu:10.1f}{share:8.1%}")
        lines.append(f"{name}\t{n}\t{cpu:.2f}\t{share:.4f}")
    print(f"wall {wall:.1f} s, CPU {total:.1f} s, mean busy cores {total / wall:.2f}")
    lines.append(f"# wall_s\t{wall:.2f}\tcpu_s\t{total:.2f}")
    out.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between samples")
    parser.add_argument("--out", type=Path, default=Path("run_profile.tsv"))
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to run")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to profile after --")
    rows, wall, total, status = run(command, args.interval)
    write_table(rows, wall, total, args.out)
    return status


if __name__ == "__main__":
    sys.exit(main())
