"""Where a workflow run's CPU time goes: per rule, and how much of it is process start-up.

    python benchmarks/rule_times.py [--logs logs] [--repeats 3] [--no-dag]

1. Per rule, from a finished run's ``logs/**/*.benchmark.tsv`` (the rules that declare
   ``benchmark:``): jobs, wall seconds and CPU seconds (``cpu_time``), summed.
2. Start-up per job: every ``workflow/scripts/*.py`` is a new Python process that unpickles the
   ``snakemake`` object (Snakemake's script preamble imports ``snakemake``) and runs the
   script's top-level imports before any work. ``import snakemake.script`` and each script's
   import lines are run in a fresh interpreter ``--repeats`` times and the least CPU time
   (user + sys, the child's rusage; not wall time, which the machine's load inflates) is the
   script's start-up; ``import snakemake.script`` alone (the preamble) and a bare
   ``python -c pass`` are reported for scale. Only the top-level imports count: a script whose
   function imports torch when it is called (``evaluate_model``: ``load_generator``) pays
   torch's import in its job all the same, though its start-up here does not show it.
3. The start-up summed over the default DAG: the jobs per rule of
   ``snakemake -n --forceall`` (in the repository root, the default config) times its script's
   start-up (rules without a script are not counted).

The numbers are CPU seconds on this machine; compare runs on the same machine.
"""

from __future__ import annotations

import argparse
import ast
import csv
import os
import re
import resource
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "workflow" / "scripts"
RULES = ROOT / "workflow" / "rules"


def rule_of(path: Path, logs: Path) -> str:
    """``logs/train/<model>.benchmark.tsv`` -> ``train``; ``logs/analysis/<model>/metrics...``
    -> ``analysis/metrics`` (the wildcard is the file name, or the folder above it)."""
    parts = path.relative_to(logs).parts
    stem = parts[-1].removesuffix(".benchmark.tsv")
    return parts[0] if len(parts) == 2 else f"{parts[0]}/{stem}"


def benchmark_table(logs: Path) -> dict[str, dict[str, float]]:
    """Jobs, wall seconds and CPU seconds per rule of the benchmark files under ``logs``."""
    out: dict[str, dict[str, float]] = defaultdict(lambda: {"jobs": 0, "s": 0.0, "cpu_s": 0.0})
    for path in sorted(logs.rglob("*.benchmark.tsv")):
        with open(path) as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        if not rows:
            continue
        row = rows[-1]
        entry = out[rule_of(path, logs)]
        entry["jobs"] += 1
        entry["s"] += float(row["s"])
        entry["cpu_s"] += float(row.get("cpu_time") or 0.0)
    return dict(out)


def script_imports(script: Path) -> str:
    """The top-level import statements of ``script``, as one source text."""
    tree = ast.parse(script.read_text())
    return "\n".join(ast.unparse(node) for node in tree.body
                     if isinstance(node, ast.Import | ast.ImportFrom))


def cpu_seconds(code: str, *, repeats: int) -> float:
    """The least CPU time (user + sys) of ``python -c code`` over ``repeats`` fresh runs."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    best = float("inf")
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        best = min(best, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
    return best


def rule_scripts() -> dict[str, str]:
    """Rule name -> its script's file name, from ``workflow/rules/**/*.smk``."""
    out = {}
    for smk in RULES.rglob("*.smk"):
        rule = None
        for line in smk.read_text().splitlines():
            if m := re.match(r"\s*(?:rule|checkpoint)\s+(\w+):", line):
                rule = m.group(1)
            elif rule and (m := re.search(r'"\.\./(?:\.\./)?scripts/([\w.]+\.py)"', line)):
                out[rule] = m.group(1)
    return out


def dag_jobs() -> dict[str, int]:
    """Jobs per rule of the whole default DAG (``snakemake -n --forceall --quiet rules``).

    ``--forceall`` so that a finished run's jobs are counted too, not only what is left to do.
    """
    proc = subprocess.run(["snakemake", "-n", "--forceall", "--quiet", "rules"], cwd=ROOT,
                          text=True,
                          capture_output=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    counts = {}
    for line in (proc.stdout + proc.stderr).splitlines():
        if m := re.match(r"^(\w+)\s+(\d+)$", line.strip()):
            if m.group(1) != "total":
                counts[m.group(1)] = int(m.group(2))
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logs", type=Path, default=ROOT / "logs")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-dag", action="store_true", help="skip the snakemake -n count")
    args = parser.parse_args(argv)

    if args.logs.is_dir():
        table = benchmark_table(args.logs)
        print(f"per rule, from {args.logs}/**/*.benchmark.tsv")
        print(f"{'rule':32s} {'jobs':>5s} {'wall s':>9s} {'cpu s':>9s}")
        for rule, e in sorted(table.items(), key=lambda kv: -kv[1]["cpu_s"]):
            print(f"{rule:32s} {e['jobs']:5d} {e['s']:9.1f} {e['cpu_s']:9.1f}")
        print(f"{'total':32s} {sum(e['jobs'] for e in table.values()):5d} "
              f"{sum(e['s'] for e in table.values()):9.1f} "
              f"{sum(e['cpu_s'] for e in table.values()):9.1f}\n")

    floor = cpu_seconds("pass", repeats=args.repeats)
    preamble = cpu_seconds("import snakemake.script", repeats=args.repeats)
    print(f"start-up, CPU s (best of {args.repeats}): python {floor:.2f}, "
          f"+ snakemake preamble (import snakemake.script) {preamble:.2f}")
    startup = {}
    for script in sorted(SCRIPTS.glob("*.py")):
        code = "import snakemake.script\n" + script_imports(script)
        startup[script.name] = cpu_seconds(code, repeats=args.repeats)
    if args.no_dag:
        for name, s in startup.items():
            print(f"  {name:34s} start-up {s:5.2f}")
        return 0
    jobs, scripts = dag_jobs(), rule_scripts()
    total, n_jobs = 0.0, 0
    print(f"{'script':34s} {'start-up s':>10s} {'jobs':>5s} {'sum s':>7s}")
    for name, s in sorted(startup.items(), key=lambda kv: -kv[1]):
        n = sum(c for rule, c in jobs.items() if scripts.get(rule) == name)
        total, n_jobs = total + n * s, n_jobs + n
        print(f"{name:34s} {s:10.2f} {n:5d} {n * s:7.1f}")
    print(f"default DAG: {n_jobs} script jobs of {sum(jobs.values())}; start-up "
          f"{total:.0f} CPU s in all, {total / max(n_jobs, 1):.2f} s per job")
    return 0


if __name__ == "__main__":
    sys.exit(main())
