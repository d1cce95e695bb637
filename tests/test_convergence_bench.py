"""``benchmarks/convergence.py`` on a tiny setting: two tiny models (a DCGAN and a progressive
GAN) on 24 structured 16 px images, scored at every other step (seconds, CPU)."""

from __future__ import annotations

import pandas as pd
import yaml
from conftest import load_benchmark

from medgan.analysis.metrics.controls import structured_images
from medgan.data.prepared import PreparedDatasetWriter
from medgan.data.split import write_split


def _bench():
    return load_benchmark("convergence")


def test_convergence_benchmark_writes_curves_and_a_table(tmp_path, one_torch_thread):
    data = tmp_path / "results" / "data" / "tiny"
    images = structured_images(24, resolution=16, seed=0)
    with PreparedDatasetWriter(data, channels=["T1"], resolution=16) as w:
        w.append(images, [{"subject": f"s{i}", "slice": 0} for i in range(24)])
    write_split(data / "meta.tsv", data / "split.tsv", fraction=0.25, seed=0)
    common = {"dataset": "tiny", "resolution": 16, "channels": ["T1"], "seed": 0,
              "loss": {"name": "wgan_gp", "n_critic": 1}, "optimizer": {"name": "adam"}}
    models = {
        "dc": {**common, "architecture": {"name": "dcgan", "latent_dim": 8, "width": 4,
                                          "max_width": 8},
               "schedule": {"steps": 2, "batch_size": 8}},
        "pg": {**common, "architecture": {"name": "pggan", "latent_dim": 8, "filters": 4},
               "schedule": {"steps_per_phase": 1, "batch_sizes": 8}},
    }
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"models": models}))
    out = tmp_path / "bench"
    table = _bench().main(["--config", str(config), "--root", str(tmp_path), "--models", "dc",
                           "pg", "--factor", "2", "--every", "2", "--n", "16",
                           "--out", str(out)])
    curves = pd.read_csv(out / "curves.tsv", sep="\t")
    # dc: 4 steps scored at 2 and 4; pg: 5 phases of 2 steps, scored once at 10
    assert curves.loc[curves["model"] == "dc", "step"].tolist() == ["2", "4", "heldout"]
    assert curves.loc[curves["model"] == "pg", "step"].tolist() == ["10", "heldout"]
    assert list(table["model"]) == ["dc", "pg"] and (out / "curves.png").stat().st_size > 0
    assert table["final_step"].tolist() == [4, 10]
    assert curves[["precision", "recall", "rho_ratio"]].notna().all().all()
    heldout = curves[curves["step"] == "heldout"]
    assert (heldout["rho_ratio"] == 1.0).all()
