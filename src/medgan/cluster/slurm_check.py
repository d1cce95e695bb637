"""Preflight for SLURM runs: every request the workflow will make, against what the cluster has.

SLURM accepts a job that no node of its partition can ever run and leaves it PENDING forever
(``Reason=PartitionConfig``, ``PartitionTimeLimit``); Snakemake then waits without a word. And
without an accounting daemon ``sacct`` knows no jobs, so status checks with it never see one end.
:func:`slurm_check` finds both before anything is submitted:

* the requests: a dry run of the workflow with the SLURM profile
  (``snakemake -n --workflow-profile ...``) gives each job's rule, threads and resources
  (``mem_mb``, ``runtime``, ``slurm_partition``, ``gpu``), exactly as they will be submitted;
* the cluster: ``sinfo`` gives each partition's nodes (CPUs, memory, GRES gpus) and time limit,
  ``scontrol show config`` the accounting storage and ``MinJobAge``;
* one line per impossible request, naming the rule, the request and the largest node of the
  partition, e.g. ``train_gan asks 8 CPUs / 32000 MB / 1 GPU on partition gpu; its largest node
  has 2 CPUs / 22000 MB / 0 GPUs``; and a line if the status command cannot work.

Run it as ``medgan slurm-check --workflow-profile workflow/profiles/slurm [snakemake args]``.
Needs only the ``snakemake``, ``sinfo`` and ``scontrol`` commands (the library never imports
Snakemake).
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import yaml

COMMAND_TIMEOUT_S = 120
STATUS_CHECK_S = 40  # the SLURM plugin's first status check; squeue must keep jobs 3x as long


@dataclass(frozen=True)
class Request:
    """What one job asks SLURM for (None: the partition's default / no limit)."""

    rule: str
    threads: int = 1
    mem_mb: int | None = None
    runtime: int | None = None  # minutes
    partition: str | None = None
    gpus: int = 0

    def describe(self) -> str:
        parts = [f"{self.threads} CPU{'s' * (self.threads != 1)}"]
        if self.mem_mb is not None:
            parts.append(f"{self.mem_mb} MB")
        if self.gpus:
            parts.append(f"{self.gpus} GPU{'s' * (self.gpus != 1)}")
        return " / ".join(parts)


@dataclass(frozen=True)
class Node:
    name: str
    cpus: int
    mem_mb: int
    gpus: int

    def describe(self) -> str:
        return f"{self.cpus} CPUs / {self.mem_mb} MB / {self.gpus} GPU{'s' * (self.gpus != 1)}"

    def fits(self, req: Request) -> bool:
        return (
            req.threads <= self.cpus and (req.mem_mb or 0) <= self.mem_mb and req.gpus <= self.gpus
        )


@dataclass
class Partition:
    name: str
    default: bool = False
    max_time: int | None = None  # minutes; None: unlimited
    nodes: list[Node] = field(default_factory=list)


# --- parsing -------------------------------------------------------------------------------------


def parse_minutes(text: str) -> int | None:
    """SLURM time ``[days-]hours:minutes:seconds``, ``minutes:seconds``, ``minutes`` -> minutes
    (rounded up); ``infinite``/``UNLIMITED`` -> None."""
    text = text.strip()
    if text.lower() in ("infinite", "unlimited", "n/a", ""):
        return None
    days, _, clock = text.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    if len(parts) == 3:
        h, m, s = parts
    elif len(parts) == 2:
        h, (m, s) = 0, parts
    else:
        h, m, s = 0, parts[0], 0
    total_s = ((int(days or 0) * 24 + h) * 60 + m) * 60 + s
    return -(-total_s // 60)


def parse_gpus(gres: str) -> int:
    """GPUs in a ``sinfo`` GRES field such as ``gpu:4``, ``gpu:a100:2(S:0-1)``, ``(null)``."""
    total = 0
    for item in re.split(r",(?![^(]*\))", gres):
        fields = re.sub(r"\(.*\)", "", item).split(":")
        if fields[0] == "gpu":
            total += int(fields[-1]) if len(fields) > 1 and fields[-1].isdigit() else 1
    return total


def parse_dry_run(text: str) -> list[Request]:
    """The jobs of ``snakemake -n`` output (local rules, which are not submitted, left out)."""
    requests, rule, threads, resources = [], None, 1, None

    def flush() -> None:
        if rule is not None and resources is not None:
            requests.append(_request(rule, threads, resources))

    for line in text.splitlines():
        head = re.match(r"^(local)?rule (\w+):$", line)
        if head:
            flush()
            rule = None if head.group(1) else head.group(2)
            threads, resources = 1, None
        elif rule and (m := re.match(r"^\s+threads: (\d+)$", line)):
            threads = int(m.group(1))
        elif rule and (m := re.match(r"^\s+resources: (.*)$", line)):
            resources = dict(re.findall(r"(\w+)=([^,]*)", m.group(1)))
    flush()
    return requests


def _request(rule: str, threads: int, res: dict[str, str]) -> Request:
    def number(key: str) -> int | None:
        value = res.get(key, "").strip()
        return int(float(value)) if re.fullmatch(r"\d+(\.\d+)?", value) else None

    gpus = number("gpu") or 0
    return Request(
        rule=rule,
        threads=threads,
        mem_mb=number("mem_mb"),
        runtime=number("runtime"),
        partition=res.get("slurm_partition") or None,
        gpus=gpus,
    )


def parse_sinfo(text: str) -> dict[str, Partition]:
    """Partitions from ``sinfo -h -N -o '%P|%N|%c|%m|%G|%l'`` (default partition marked ``*``)."""
    partitions: dict[str, Partition] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        name, node, cpus, mem, gres, limit = line.split("|")
        default = name.endswith("*")
        part = partitions.setdefault(
            name.rstrip("*"), Partition(name.rstrip("*"), default, parse_minutes(limit))
        )
        part.nodes.append(Node(node, int(cpus.rstrip("+")), int(mem.rstrip("+")), parse_gpus(gres)))
    return partitions


def parse_config(text: str) -> dict[str, str]:
    """``scontrol show config`` as a dict."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


# --- checks --------------------------------------------------------------------------------------


def check_requests(requests: list[Request], partitions: dict[str, Partition]) -> list[str]:
    """One line per distinct request that no node of its partition can run."""
    default = next((p for p in partitions.values() if p.default), None)
    problems: list[str] = []
    for req in dict.fromkeys(requests):  # distinct, in order
        part = partitions.get(req.partition) if req.partition else default
        where = f"partition {req.partition or (default.name if default else '(default)')}"
        if part is None:
            known = ", ".join(p.name + "*" * p.default for p in partitions.values())
            line = (
                f"{req.rule} asks for {where}, which this cluster does not have "
                f"(partitions: {known or 'none'})"
            )
        else:
            too_long = (
                req.runtime is not None
                and part.max_time is not None
                and req.runtime > part.max_time
            )
            time_note = (
                f"{req.runtime} min on {where}; its time limit is {part.max_time} min"
                if too_long
                else ""
            )
            if not any(node.fits(req) for node in part.nodes):
                largest = max(part.nodes, key=lambda n: (n.cpus, n.mem_mb, n.gpus), default=None)
                has = f"its largest node has {largest.describe()}" if largest else "it has no nodes"
                line = f"{req.rule} asks {req.describe()} on {where}; {has}"
                if too_long:
                    line += f"; and {req.runtime} min, beyond its time limit of {part.max_time} min"
            elif too_long:
                line = f"{req.rule} asks {time_note}"
            else:
                continue
        if line not in problems:
            problems.append(line)
    return problems


def check_status_command(config: dict[str, str], status_command: str | None) -> list[str]:
    """Lines for a status command that cannot see the cluster's finished jobs."""
    problems = []
    accounting = config.get("AccountingStorageType", "")
    min_age = parse_minutes_seconds(config.get("MinJobAge", ""))
    if accounting.endswith("/none") and status_command != "squeue":
        problems.append(
            f"this cluster has no accounting (AccountingStorageType={accounting}): "
            "sacct knows no jobs, so Snakemake would wait forever; use "
            "--slurm-status-command squeue (as workflow/profiles/slurm does)"
        )
    if status_command == "squeue" and min_age is not None and min_age < 3 * STATUS_CHECK_S:
        note = (
            ""
            if not accounting.endswith("/none")
            else " and without accounting there is no sacct to fall back on"
        )
        problems.append(
            f"squeue forgets a finished job after MinJobAge={min_age} s, before "
            f"Snakemake's status checks see it{note}; ask for MinJobAge >= "
            f"{3 * STATUS_CHECK_S} s"
        )
    return problems


def parse_minutes_seconds(text: str) -> int | None:
    """``MinJobAge`` of ``scontrol show config`` (``300 sec``) in seconds."""
    m = re.match(r"^(\d+)", text.strip())
    return int(m.group(1)) if m else None


def profile_status_command(profile: str | os.PathLike, args: list[str]) -> str | None:
    """The ``slurm-status-command`` of the command line, else of the profile's config.yaml."""
    for i, arg in enumerate(args):
        if arg == "--slurm-status-command" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--slurm-status-command="):
            return arg.split("=", 1)[1]
    path = Path(profile) / "config.yaml"
    if not path.is_file():
        return None
    text = path.read_text()
    if "__use_yte__" in text:
        import yte  # Snakemake's profile template engine, installed with Snakemake

        with open(path) as fh:
            data = yte.process_yaml(fh, require_use_yte=True)
    else:
        data = yaml.safe_load(text)
    return (data or {}).get("slurm-status-command")


# --- running ------------------------------------------------------------------------------------


def _run(cmd: list[str], cwd: str | os.PathLike | None = None) -> str:
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, cwd=cwd, timeout=COMMAND_TIMEOUT_S
        )
    except FileNotFoundError:
        raise OSError(f"{cmd[0]} not found") from None
    except subprocess.TimeoutExpired:
        raise OSError(f"{' '.join(cmd[:3])} ... did not answer in {COMMAND_TIMEOUT_S} s") from None
    if proc.returncode != 0:
        tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-5:]
        raise OSError(
            f"{' '.join(cmd[:4])} ... failed (exit {proc.returncode}): " + " | ".join(tail)
        )
    return proc.stdout + proc.stderr


def planned_requests(
    profile: str | os.PathLike,
    args: list[str],
    *,
    snakemake: str = "snakemake",
    cwd: str | os.PathLike | None = None,
) -> list[Request]:
    """The requests of the jobs that ``snakemake --workflow-profile profile *args`` would run."""
    out = _run(
        [
            snakemake,
            "--dry-run",
            "--workflow-profile",
            str(profile),
            "--cores",
            "100000",
            "--nolock",
            *args,
        ],
        cwd=cwd,
    )  # threads not capped by cores
    return parse_dry_run(out)


def slurm_check(
    profile: str | os.PathLike = "workflow/profiles/slurm",
    args: list[str] | None = None,
    *,
    snakemake: str = "snakemake",
    cwd: str | os.PathLike | None = None,
) -> tuple[list[Request], list[str]]:
    """(the planned requests, one line per problem) for a SLURM run of the workflow in ``cwd``."""
    args = list(args or [])
    partitions = parse_sinfo(_run(["sinfo", "-h", "-N", "-o", "%P|%N|%c|%m|%G|%l"]))
    config = parse_config(_run(["scontrol", "show", "config"]))
    profile_path = Path(cwd or ".") / profile
    requests = planned_requests(profile, args, snakemake=snakemake, cwd=cwd)
    problems = check_requests(requests, partitions)
    problems += check_status_command(config, profile_status_command(profile_path, args))
    return requests, problems
