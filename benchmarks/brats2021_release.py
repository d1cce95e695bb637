"""A BraTS 2021-sized release (1,251 cases), simulated: write it, dry-run the BraTS paper
configs on it, prepare a subset of it.

    python benchmarks/brats2021_release.py write --out DIR [--cases 1251] [--shape 24 24 16]
    python benchmarks/brats2021_release.py dryrun [--release DIR] [--repeats 3] [--profile N]
    python benchmarks/brats2021_release.py prepare [--release DIR] [--cases 16] [--workers 2]

``write`` puts a phantom release in BraTS 2021's layout (``BraTS2021_00000/BraTS2021_00000_
{t1,t1ce,t2,flair,seg}.nii.gz`` ..., and a ``name_mapping.csv`` with grades, which the real
2021 release does not have: Han's ``grades: [HGG]`` reads it) with
:func:`medgan.data.phantoms.make_brats2021_phantoms`. ``--distinct K`` draws only K subjects
and hard-links the others' files to theirs (seconds for 1,251 cases of any shape, the disk
space of K).

``dryrun`` copies the workflow to a temporary folder and times ``snakemake -n`` of the paper
configs (``config/studies/han2018.yaml``, ``beers2018.yaml``) with every BraTS dataset's
``path`` set to the release (Beers' fundus dataset to 4 fundus phantoms) by a second
``--configfile``; without ``--release`` it writes a 1,251-case release at 24 x 24 x 16 voxels
(a dry run reads no voxels). For scale it also times Han's dry run on a 4-case release and
``snakemake -n`` of an empty Snakefile (Snakemake's own start-up). ``--workflows A B`` times
the workflows of two checkouts side by side (before and after a change). Each run is repeated
``--repeats`` times as a fresh process, the repeats interleaved; the table gives the least and
the median wall time and CPU time (user + sys of the child). Wall time grows with the
machine's load (printed); CPU time much less. ``--profile N`` also prints the N functions
with the most cumulative CPU time of one dry run of the first study (cProfile, CPU clock).

``prepare`` runs :func:`medgan.data.prepare.prepare_dataset` (what the workflow's
``prepare_dataset`` rule calls) with a paper config's dataset section (``--dataset``, default
Han's ``brats_han_128``) on the first ``--cases`` cases of ``--release`` (linked into a
temporary folder), or on a release of that many cases written at ``--shape`` (default 240 x
240 x 155, a real BraTS volume), and reports the time and the images prepared.

Nothing here is timed by a test (tests/test_brats2021_release.py checks the plan and the
layout); run it by hand and read the numbers.
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
STUDIES = ROOT / "config" / "studies"
SNAKEMAKE = Path(sys.executable).parent / "snakemake"


def write_release(out: Path, *, cases: int, shape, distinct: int | None, lgg: int,
                  seed: int = 0) -> float:
    """Write a BraTS 2021 phantom release to ``out``; return the seconds it took."""
    from medgan.data.phantoms import make_brats2021_phantoms

    start = time.perf_counter()
    make_brats2021_phantoms(out, n_subjects=cases, shape=tuple(shape), seed=seed, n_lgg=lgg,
                            n_distinct=distinct)
    return time.perf_counter() - start


def copy_workflow(work: Path, source: Path = ROOT) -> None:
    """The workflow of checkout ``source`` (Snakefile, rules, schemas, envs, configs) in
    ``work``, as the tests do."""
    work.mkdir(parents=True)
    shutil.copy(source / "Snakefile", work / "Snakefile")
    for name in ("workflow", "envs", "config"):
        shutil.copytree(source / name, work / name)


def study_override(study: str, *, brats: Path, fundus: Path) -> dict:
    """A second config file for ``study``: every BraTS dataset reads ``brats``, every fundus
    dataset ``fundus``."""
    cfg = yaml.safe_load((STUDIES / f"{study}.yaml").read_text())
    paths = {"brats": str(brats), "fundus": str(fundus)}
    datasets = {}
    for name, ds in cfg["datasets"].items():
        if ds["kind"] not in paths:
            raise SystemExit(f"{study}: dataset {name} is of kind {ds['kind']}; this benchmark "
                             f"only points brats and fundus datasets at phantoms")
        datasets[name] = {"path": paths[ds["kind"]]}
    return {"datasets": datasets}


def timed_run(cmd: list[str], cwd: Path) -> tuple[float, float, str]:
    """Run ``cmd`` in ``cwd``; return (wall s, CPU s of the child, stdout + stderr)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{out[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, out


def planned_jobs(out: str) -> dict[str, int]:
    """The ``Job stats`` table of a dry run's output: {rule: jobs, ..., "total": n}."""
    stats = out[out.index("Job stats:"):]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, re.MULTILINE)}


def dry_run_cases(tmp: Path, args) -> list[tuple[str, list[str], Path]]:
    """(label, snakemake arguments, folder) of every dry run to time."""
    release = Path(args.release).resolve() if args.release else tmp / "BraTS2021"
    if not args.release:
        seconds = write_release(release, cases=1251, shape=(24, 24, 16), distinct=8, lgg=0)
        print(f"wrote 1251 cases (8 distinct, 24x24x16) to {release} in {seconds:.1f} s")
    n_cases = sum(1 for p in release.iterdir() if p.is_dir())
    small = tmp / "BraTS2021_4"
    write_release(small, cases=4, shape=(24, 24, 16), distinct=None, lgg=0)
    from medgan.data.phantoms.fundus import make_fundus_phantoms

    fundus = tmp / "fundus"
    make_fundus_phantoms(fundus, n_images=4, size=64)
    runs = []
    sources = [Path(w).resolve() for w in args.workflows]
    for k, source in enumerate(sources):
        work = tmp / f"work{k}"
        copy_workflow(work, source)
        tag = f"{source.name}: " if len(sources) > 1 else ""
        for study in args.studies:
            for brats in (release, small):
                if brats is small and study != args.studies[0]:
                    continue
                n = n_cases if brats is release else 4
                override = tmp / f"{study}_{brats.name}.yaml"
                override.write_text(yaml.safe_dump(study_override(study, brats=brats,
                                                                  fundus=fundus)))
                configs = ["--configfile", f"config/studies/{study}.yaml", str(override)]
                runs.append((f"{tag}{study}, {n} cases", ["-n", *configs, "--cores", "1"], work))
    empty = tmp / "empty"
    empty.mkdir()
    (empty / "Snakefile").write_text("rule all:\n    input: [],\n")
    runs.append(("empty Snakefile", ["-n", "--cores", "1"], empty))
    return runs


def dryrun(args) -> int:
    with tempfile.TemporaryDirectory(prefix="brats2021_dryrun.") as tmp:
        tmp = Path(tmp)
        runs = dry_run_cases(tmp, args)
        print(f"load average at start: {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs)")
        walls = [[] for _ in runs]
        cpus = [[] for _ in runs]
        jobs = [0] * len(runs)
        for _ in range(args.repeats):  # interleaved, so that a change of load hits every run
            for k, (_, smk_args, cwd) in enumerate(runs):
                wall, cpu, out = timed_run([str(SNAKEMAKE), *smk_args], cwd)
                walls[k].append(wall)
                cpus[k].append(cpu)
                jobs[k] = planned_jobs(out).get("total", 0) if "Job stats:" in out else 0
        print(f"load average at end: {os.getloadavg()[0]:.1f}")
        print_table(("snakemake -n", "jobs", "wall s (least)", "wall s (median)",
                     "CPU s (least)", "CPU s (median)"),
                    [(label, str(jobs[k]), f"{min(walls[k]):.2f}",
                      f"{statistics.median(walls[k]):.2f}", f"{min(cpus[k]):.2f}",
                      f"{statistics.median(cpus[k]):.2f}")
                     for k, (label, _, _) in enumerate(runs)])
        if args.profile:
            label, smk_args, cwd = runs[0]
            print(f"\nmost cumulative CPU time, one dry run ({label}):")
            profile_run(smk_args, cwd, top=args.profile)
    return 0


def print_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    """A Markdown table: the first column left-aligned, the others right-aligned."""
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    for k, row in enumerate((header, *rows)):
        print(" | ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(row, widths, strict=True))))
        if k == 0:
            print(" | ".join("-" * w for w in widths))


_PROFILE = """
import cProfile, pstats, sys, time
from snakemake.cli import main
out, sys.argv = sys.argv[1], ["snakemake", *sys.argv[2:]]
prof = cProfile.Profile(time.process_time)
prof.enable()
try:
    main()
except SystemExit:
    pass
prof.disable()
with open(out, "w") as f:
    pstats.Stats(prof, stream=f).sort_stats("cumulative").print_stats(int(TOP))
"""


def profile_run(smk_args: list[str], cwd: Path, *, top: int) -> None:
    """One dry run under cProfile (CPU clock); print its ``top`` functions by cumulative time.
    The profiler inflates pure-Python code (YAML parsing, Snakemake's parser) several times."""
    code = _PROFILE.replace("TOP", str(top))
    stats = cwd / "profile.txt"
    proc = subprocess.run([sys.executable, "-c", code, str(stats), *smk_args], cwd=cwd,
                          capture_output=True, text=True)
    print(stats.read_text() if stats.is_file() else proc.stderr[-3000:])


def subset(release: Path, n: int, out: Path) -> Path:
    """The first ``n`` case folders of ``release`` (and its name_mapping.csv), linked into
    ``out``."""
    out.mkdir()
    cases = sorted(p for p in release.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(cases) < n:
        raise SystemExit(f"{release} has {len(cases)} cases, fewer than --cases {n}")
    for case in cases[:n]:
        (out / case.name).symlink_to(case, target_is_directory=True)
    mapping = release / "name_mapping.csv"
    if mapping.is_file():
        shutil.copy(mapping, out / "name_mapping.csv")
    return out


def paper_dataset(name: str) -> dict:
    """Dataset ``name`` of the paper configs, validated by the workflow's schema (which fills
    in the defaults, as the workflow does before its rules see it)."""
    from snakemake.utils import validate

    for path in sorted(STUDIES.glob("*.yaml")):
        cfg = yaml.safe_load(path.read_text())
        if name in cfg.get("datasets", {}):
            validate(cfg, str(ROOT / "workflow" / "schemas" / "config.schema.json"))
            return copy.deepcopy(cfg["datasets"][name])
    raise SystemExit(f"no paper config in {STUDIES} has a dataset {name!r}")


def prepare(args) -> int:
    from medgan.data.prepare import prepare_dataset

    dataset = paper_dataset(args.dataset)
    with tempfile.TemporaryDirectory(prefix="brats2021_prepare.") as tmp:
        tmp = Path(tmp)
        if args.release:
            source = subset(Path(args.release).resolve(), args.cases, tmp / "subset")
            print(f"the first {args.cases} cases of {args.release}")
        else:
            source = tmp / "BraTS2021"
            seconds = write_release(source, cases=args.cases, shape=args.shape, distinct=None,
                                    lgg=args.lgg)
            print(f"wrote {args.cases} cases ({args.lgg} LGG) of {tuple(args.shape)} in "
                  f"{seconds:.1f} s ({seconds / args.cases:.2f} s per case)")
        dataset["path"] = str(source)
        cpu0, kids0 = time.process_time(), resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        info = prepare_dataset(source, tmp / "out", dataset=dataset, name=args.dataset,
                               workers=args.workers)
        wall = time.perf_counter() - start
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (time.process_time() - cpu0 + kids.ru_utime - kids0.ru_utime
               + kids.ru_stime - kids0.ru_stime)
    grades = ", ".join(dataset["grades"]) if dataset.get("grades") else "all"
    kept = info.get("n_subjects", args.cases)
    print(f"prepare_dataset({args.dataset}, workers={args.workers}): {args.cases} cases, "
          f"{kept} kept (grades: {grades}) -> {info['n_images']} images of "
          f"{info.get('channels')}, {info.get('resolution')} px, in {wall:.1f} s wall "
          f"({wall / max(kept, 1):.2f} s per case kept), {cpu:.1f} s CPU with the workers; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    wr = sub.add_parser("write", help="write a BraTS 2021 phantom release")
    wr.add_argument("--out", required=True, help="the release folder (replaced atomically)")
    wr.add_argument("--cases", type=int, default=1251)
    wr.add_argument("--shape", type=int, nargs=3, default=[24, 24, 16], metavar=("X", "Y", "Z"))
    wr.add_argument("--distinct", type=int, default=None,
                    help="draw only this many subjects, link the rest (default: all distinct)")
    wr.add_argument("--lgg", type=int, default=0, help="the last N cases are LGG (default 0)")
    wr.add_argument("--seed", type=int, default=0)
    dr = sub.add_parser("dryrun", help="time snakemake -n of the BraTS paper configs")
    dr.add_argument("--release", help="a release folder (default: 1,251 cases written to tmp)")
    dr.add_argument("--studies", nargs="+", default=["han2018", "beers2018"])
    dr.add_argument("--workflows", nargs="+", default=[str(ROOT)], metavar="CHECKOUT",
                    help="checkouts whose workflows to time side by side (default: this one)")
    dr.add_argument("--repeats", type=int, default=3)
    dr.add_argument("--profile", type=int, default=0, metavar="N",
                    help="also print the top N functions of a profiled dry run")
    pr = sub.add_parser("prepare", help="prepare a subset with a paper config's dataset")
    pr.add_argument("--release", help="take the first --cases cases of this release")
    pr.add_argument("--cases", type=int, default=16)
    pr.add_argument("--shape", type=int, nargs=3, default=[240, 240, 155],
                    metavar=("X", "Y", "Z"), help="without --release (default 240 240 155)")
    pr.add_argument("--lgg", type=int, default=4, help="without --release: LGG cases (4)")
    pr.add_argument("--dataset", default="brats_han_128")
    pr.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    if args.command == "write":
        seconds = write_release(Path(args.out), cases=args.cases, shape=args.shape,
                                distinct=args.distinct, lgg=args.lgg, seed=args.seed)
        print(f"wrote {args.cases} cases of {tuple(args.shape)} to {args.out} in {seconds:.1f} s")
        return 0
    return dryrun(args) if args.command == "dryrun" else prepare(args)


if __name__ == "__main__":
    sys.exit(main())
