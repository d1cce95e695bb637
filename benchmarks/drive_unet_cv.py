"""Cross-validated vessel AUC of the Beers 2018 U-net (medgan.data.vessels) on DRIVE's training
images.

Trains one U-net per fold on the other folds' photos (random 48x48 patches inside the field of
view), segments each held-out photo with overlapping patches and scores the ROC AUC inside its
field of view against the first observer's manual mask. Also reports a no-learning reference:
the AUC of the inverted preprocessed (luminance, CLAHE, gamma) intensity. Writes the per-image
table (TSV) and a JSON summary with the training budget and wall time. Run it niced, e.g.::

    nice -n 19 python benchmarks/drive_unet_cv.py --folds 4 --n-patches 40000 --out /tmp/cv.tsv

Published U-nets reach about 0.975-0.98 AUC on DRIVE's test set (trained on all 20 training
images with ~10^5-10^6 patches on a GPU).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from medgan.data.preprocess.fundus_image import (
    DEFAULT_CLAHE_CLIP,
    DEFAULT_GAMMA,
    load_segmentation_set,
)
from medgan.data.readers.fundus import discover_fundus_images
from medgan.data.vessels import crossval_vessel_auc, vessel_auc

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=REPO.parent / "shared/data/DRIVE/training")
    p.add_argument("--folds", type=int, default=4)
    p.add_argument("--resolution", default="native",
                   help="'native' (the photos' own 565x584) or a square size in px, e.g. 512")
    p.add_argument("--n-patches", type=int, default=40000)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--width", type=int, default=8)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--overlap", type=int, default=8)
    p.add_argument("--gamma", type=float, default=DEFAULT_GAMMA)
    p.add_argument("--clahe-clip", type=float, default=DEFAULT_CLAHE_CLIP)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("/tmp/drive_unet_cv.tsv"))
    args = p.parse_args(argv)

    resolution = None if args.resolution == "native" else int(args.resolution)
    prep = {"resolution": resolution, "gamma": args.gamma, "clahe_clip": args.clahe_clip}
    train = {"n_patches": args.n_patches, "epochs": args.epochs, "batch_size": args.batch_size,
             "lr": args.lr, "unet": {"width": args.width, "depth": args.depth},
             "threads": args.threads}

    t0 = time.perf_counter()
    cpu0 = time.process_time()
    table = crossval_vessel_auc(args.root, folds=args.folds, overlap=args.overlap,
                                seed=args.seed, **prep, **train)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0

    records = discover_fundus_images(args.root, require_vessels=True)
    images, vessels, fovs = load_segmentation_set(records, **prep)
    baseline = {r.image_id: vessel_auc(1.0 - img, v, f)
                for r, img, v, f in zip(records, images, vessels, fovs, strict=True)}
    table["auc_intensity_baseline"] = table["image"].map(baseline)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, sep="\t", index=False, float_format="%.5f")
    summary = {
        "root": str(args.root), "folds": args.folds, "n_images": len(table),
        "auc_mean": float(table["auc"].mean()), "auc_std": float(table["auc"].std()),
        "auc_median": float(table["auc"].median()), "auc_min": float(table["auc"].min()),
        "baseline_auc_mean": float(table["auc_intensity_baseline"].mean()),
        "fold_auc_mean": table.groupby("fold")["auc"].mean().round(5).tolist(),
        "preprocessing": prep, "training": train, "patch_size": 48,
        "steps_per_fold": args.epochs * int(np.ceil(args.n_patches / args.batch_size)),
        "wall_seconds": round(wall, 1), "cpu_seconds": round(cpu, 1),
        "train_seconds_per_fold": table.groupby("fold")["train_seconds"].first().tolist(),
        "torch": torch.__version__, "python": platform.python_version(),
        "machine": platform.processor() or platform.machine(),
    }
    args.out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    print(table.to_string(index=False))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
