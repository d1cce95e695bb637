"""Time of the metric suite on a few thousand 64x64 images (the issue's budget: a few minutes on
a 2-core CPU), and the scores of the control sets at that size.

    nice -n 19 python benchmarks/metrics_bench.py --n 3000 --resolution 64 --threads 2

Draws ``--n`` training and ``--n`` held-out images of the structured brain-like family
(:func:`medgan.analysis.metrics.controls.structured_images`), trains the domain feature network
with the
workflow's defaults, then scores each control set (real, blurred, collapsed, noise, memorised)
against the training images with every metric group, timing each group. Prints one table of
scores (one column per control set) and one of seconds per metric group. Nothing here is timed
by a test; run it by hand and read the tables.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch

from medgan.analysis.metrics import METRICS, MetricInputs
from medgan.analysis.metrics.controls import control_sets, structured_images
from medgan.analysis.metrics.featurenet import extract_features, train_feature_net

GROUPS = ["delplace", "swd", "msssim", "domain", "c2st", "memorisation"]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=3000, help="training and held-out images each")
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--feature-steps", type=int, default=600)
    p.add_argument("--sets", nargs="+", default=["real", "blurred", "collapsed", "noise",
                                                   "memorised"])
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    names = [f"ch{i}" for i in range(args.channels)]
    train = structured_images(args.n, resolution=args.resolution, channels=args.channels, seed=1)
    heldout = structured_images(args.n, resolution=args.resolution, channels=args.channels,
                                seed=2)
    sets = control_sets(heldout, train=train, seed=3)

    t0 = time.perf_counter()
    net, info = train_feature_net(train, names, steps=args.feature_steps, seed=0, progress=False)
    t_train = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref_features = extract_features(net, info, train, names)
    t_extract = time.perf_counter() - t0
    print(f"feature network: {t_train:.1f} s to train ({args.feature_steps} steps), "
          f"{t_extract:.1f} s to extract {len(train)} images")

    scores, seconds = {}, {}
    for name in args.sets:
        candidate = sets[name]
        t0 = time.perf_counter()
        features = extract_features(net, info, candidate, names)
        seconds.setdefault("features", {})[name] = time.perf_counter() - t0
        inputs = MetricInputs(reference=train, candidate=candidate, heldout=heldout,
                              channel_names=names, data_range=float(train.max() - train.min()),
                              seed=0, reference_features=ref_features,
                              candidate_features=features)
        row = {}
        for group in GROUPS:
            t0 = time.perf_counter()
            row.update(METRICS[group](inputs))
            seconds.setdefault(group, {})[name] = time.perf_counter() - t0
        scores[name] = {k: float(v) for k, v in row.items() if np.isscalar(v)}
    pd.set_option("display.width", 200)
    pd.set_option("display.max_rows", 200)
    print(pd.DataFrame(scores).round(4).to_string())
    table = pd.DataFrame(seconds).T
    table["mean_s"] = table.mean(axis=1)
    print(table.round(2).to_string())
    print(f"total per scored set: {table['mean_s'].sum():.1f} s "
          f"(+ {t_train:.0f} s feature network, once per dataset)")


if __name__ == "__main__":
    main()
