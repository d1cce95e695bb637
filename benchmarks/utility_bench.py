"""Time the downstream-utility grid of the default run's utility models on phantoms, and print
the phantom results table.

    nice python benchmarks/utility_bench.py                    # both models, default grid
    nice python benchmarks/utility_bench.py --controls         # + oracle, noise, repeat
    nice python benchmarks/utility_bench.py --models kitchen_prostatex --device cuda

For each model (entries of config/config.yaml: ``utility_dcgan_labels16`` - BraTS phantoms with
label channels, segmentation and tumour presence; ``kitchen_prostatex`` - ProstateX phantoms,
conditioned on ClinSig) it generates the config's phantoms, prepares the model's dataset,
splits it (the schema's default holdout), trains the GAN as configured (``--gan-steps``
overrides the steps), and runs :func:`~medgan.analysis.utility.run.evaluate_utility` with the
config's ``analysis.utility`` section on one thread, as the workflow's rule does. It prints the
seconds of each stage and, per task, the main metric of every training set at every real
fraction (mean over seeds, 95 % interval, paired difference to real only and its verdict).
Nothing here is timed by a test.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def _timed(what: str, times: dict[str, float], fn, *args, **kwargs):
    """Run ``fn``; record its wall seconds and its CPU seconds (``<what>_cpu``: what it costs
    on a machine that others share)."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    times[what] = time.perf_counter() - t0
    times[f"{what}_cpu"] = time.process_time() - c0
    print(f"  {what}: {times[what]:.1f} s wall, {times[f'{what}_cpu']:.1f} s CPU", flush=True)
    return out


def bench_model(name: str, cfg: dict, root: Path, args) -> tuple[dict[str, float], pd.DataFrame]:
    from medgan.analysis.utility.run import evaluate_utility
    from medgan.config import dataset_holdout
    from medgan.data.phantoms import make_phantoms
    from medgan.data.prepare import prepare_dataset
    from medgan.data.split import write_split
    from medgan.training.loop import train_gan

    model = cfg["models"][name]
    ds = cfg["datasets"][model["dataset"]]
    times: dict[str, float] = {}
    print(f"{name} ({model['dataset']}, {ds['kind']})", flush=True)
    raw, data = root / "phantoms" / ds["kind"], root / "data" / model["dataset"]
    if not raw.exists():
        _timed("phantoms", times, make_phantoms, ds["kind"], raw, **cfg["phantoms"][ds["kind"]])
    _timed("prepare", times, prepare_dataset, raw, data, dataset=ds, name=model["dataset"])
    holdout = dataset_holdout(ds)
    write_split(data / "meta.tsv", data / "split.tsv", fraction=holdout["fraction"],
                seed=holdout["seed"], group_by=holdout["group_by"])
    schedule = dict(model["schedule"])
    if args.gan_steps:
        schedule["steps"] = args.gan_steps
    _timed("train_gan", times, train_gan, data, root / "models" / name,
           channels=model["channels"], resolution=model["resolution"],
           architecture=model["architecture"], loss=model["loss"],
           optimizer=model["optimizer"], schedule=schedule, seed=model.get("seed", 0),
           device=args.device, threads=1, progress=False, split=data / "split.tsv",
           condition=model.get("condition"))
    settings = dict(cfg.get("analysis", {}).get("utility", {}))
    if args.controls:
        settings["controls"] = True
    if args.steps:
        settings["steps"] = args.steps
    summary = _timed("utility", times, evaluate_utility, root / "models" / name / "checkpoint.pt",
                     data, data / "split.tsv", root / "analysis" / name, settings=settings,
                     model_name=name, threads=1, device=args.device, progress=False)
    return times, summary


def print_table(summary: pd.DataFrame) -> None:
    main = summary[summary["main"]]
    for task, rows in main.groupby("task", sort=False):
        print(f"\n{rows['model'].iloc[0]} / {task} ({rows['metric'].iloc[0]}, mean over "
              f"{int(rows['n_seeds'].max())} seeds [95% interval], paired difference to real)")
        for _, r in rows.iterrows():
            name = r["training_set"] + (f" {r['ratio']:g}x" if "+" in r["training_set"] else "")
            diff = "" if pd.isna(r.get("diff_vs_real")) else (
                f"{r['diff_vs_real']:+.3f} [{r['diff_ci_low']:+.3f}, {r['diff_ci_high']:+.3f}]"
                f" {r['verdict']}")
            print(f"  {r['real_fraction']:<5g} {name:<18} {r['mean']:.3f} "
                  f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}]  n_real={r['n_real']:<5} "
                  f"n_syn={r['n_synthetic']:<5} {diff}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+",
                        default=["utility_dcgan_labels16", "kitchen_prostatex"])
    parser.add_argument("--config", default=str(REPO / "config" / "config.yaml"))
    parser.add_argument("--controls", action="store_true", help="add the control sources")
    parser.add_argument("--gan-steps", type=int, default=0, help="override the GAN's steps")
    parser.add_argument("--steps", type=int, default=0, help="override the task nets' steps")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="", help="keep the outputs here (default: temporary)")
    args = parser.parse_args(argv)
    cfg = yaml.safe_load(Path(args.config).read_text())
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.out or tmp)
        results = {m: bench_model(m, cfg, root, args) for m in args.models}
    print("\nseconds per stage (1 torch thread):")
    for m, (times, _) in results.items():
        print(f"  {m}: " + ", ".join(f"{k} {v:.1f}" for k, v in times.items()))
    for _, summary in results.values():
        print_table(summary)


if __name__ == "__main__":
    main()
