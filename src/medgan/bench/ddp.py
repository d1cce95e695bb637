"""Data-parallel training throughput: 1 vs N processes side by side.

    python -m medgan.bench --arch dcgan --resolution 64 --batch 256 --processes 1 2 4

For every process count N, G and D train for ``--steps`` timed steps (after ``--warmup``) with
:func:`medgan.training.step.train_step`, the trainer's own step, on random data: N = 1 in this
process, N > 1 under ``torchrun --standalone --nproc_per_node N`` (one GPU per process on CUDA,
gloo processes sharing the cores on CPU), with synchronised BatchNorm and DDP exactly as
:func:`~medgan.training.loop.train_gan` trains. The batch is the global batch (each process
trains ``batch / N`` images), so this is strong scaling: ``scaling_efficiency`` is
``images_per_s(N) / (N * images_per_s(1))``. Rows report images/s (real images shown to D per
second, over all processes), ms per step and rank 0's peak memory.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from medgan.models import build_discriminator, build_generator, resolved_config
from medgan.training import accel, ddp
from medgan.training.distributed import Ranks, resolve_device, start_processes
from medgan.training.losses import build_loss
from medgan.training.stats import StatsAccumulator
from medgan.training.step import train_step

EAGER = dict.fromkeys(accel.PERFORMANCE_DEFAULTS, False)


class _Batches:
    """A fixed real shard and fresh latents of this process's share of the batch."""

    def __init__(self, real: torch.Tensor, latent_dim: int):
        self.real, self.latent_dim = real, latent_dim

    def next_real(self) -> torch.Tensor:
        return self.real

    def next_z(self) -> torch.Tensor:
        return torch.randn(self.real.shape[0], self.latent_dim, device=self.real.device)


def _time_steps(spec: dict[str, Any], ranks: Ranks, dev: torch.device) -> dict[str, Any]:
    """Build G and D as the trainer does for ``ranks`` and time ``spec["steps"]`` steps."""
    perf = accel.resolve_performance(EAGER if spec["mode"] == "eager" else spec["performance"])
    accel.configure_backends(perf, dev)
    arch = resolved_config({"name": spec["arch"], **spec["arch_overrides"]})
    torch.manual_seed(spec["seed"])
    shape = {"channels": spec["channels"], "resolution": spec["resolution"]}
    G = build_generator(arch, **shape).to(dev)
    D = build_discriminator(arch, **shape).to(dev)
    wrap = None
    if ranks.distributed:
        G, D = ddp.for_processes(G, ranks), ddp.for_processes(D, ranks)
        wrap = functools.partial(ddp.wrap, device=dev,
                                 find_unused_parameters=arch["name"] == "pggan")
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    G_run = accel.prepare_module(G, perf, dev, wrap=wrap)
    D_run = accel.prepare_module(D, perf, dev, wrap=wrap)
    loss = build_loss(spec["loss"])
    loss.ranks = ranks if ranks.distributed else None
    local = ranks.local_batch(spec["batch"])
    real = accel.prepare_batch(torch.randn(local, spec["channels"], spec["resolution"],
                                           spec["resolution"], device=dev), perf)
    batches, stats = _Batches(real, int(G.latent_dim)), StatsAccumulator()
    frozen = ({"G_sampler": G, "D_frozen": D} if ranks.distributed else {})
    kw = {"autocast_d": functools.partial(accel.autocast, perf, dev,
                                          enabled=not accel.has_gradient_penalty(loss)),
          "autocast_g": functools.partial(accel.autocast, perf, dev), **frozen}
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    dt = 0.0
    for n, timed in ((spec["warmup"], False), (spec["steps"], True)):
        ranks.barrier()
        _sync(dev)
        t0 = time.perf_counter()
        for _ in range(n):
            train_step(G_run, D_run, loss, opt_g, opt_d, batches.next_real, batches.next_z,
                       stats, **kw)
        _sync(dev)
        ranks.barrier()
        dt = time.perf_counter() - t0 if timed else dt
    return {"arch": spec["arch"], "resolution": spec["resolution"], "batch": spec["batch"],
            "mode": spec["mode"], "processes": ranks.world_size, "local_batch": local,
            "steps": spec["steps"], "seconds": dt, "ms_per_step": 1e3 * dt / spec["steps"],
            "images_per_s": spec["steps"] * loss.n_critic * spec["batch"] / dt,
            "peak_memory_mb": (torch.cuda.max_memory_allocated(dev) / 2**20
                               if dev.type == "cuda" else None)}


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def bench_processes(spec: dict[str, Any], processes: list[int], *,
                    threads: int | None = None) -> list[dict[str, Any]]:
    """One row per process count of ``processes`` for the configuration ``spec`` (keys
    ``arch``, ``arch_overrides``, ``loss``, ``channels``, ``resolution``, ``batch``, ``mode``,
    ``performance``, ``steps``, ``warmup``, ``seed``, ``device``); adds
    ``scaling_efficiency`` relative to the 1-process row (when measured)."""
    rows = []
    for n in processes:
        if n == 1:
            if threads is not None:
                torch.set_num_threads(threads)
            rows.append(_time_steps(spec, Ranks(), resolve_device(spec["device"])))
        else:
            rows.append(_launch(spec, n, threads))
    base = next((r["images_per_s"] for r in rows if r["processes"] == 1), None)
    for r in rows:
        r["scaling_efficiency"] = (r["images_per_s"] / (r["processes"] * base)
                                   if base else None)
    return rows


def _launch(spec: dict[str, Any], n: int, threads: int | None) -> dict[str, Any]:
    """Run :func:`_time_steps` on ``n`` torchrun processes; rank 0's row."""
    with tempfile.TemporaryDirectory(prefix="medgan-bench-") as tmp:
        args, out = Path(tmp) / "spec.json", Path(tmp) / "row.json"
        args.write_text(json.dumps(spec))
        env_threads = str(max(1, (threads or torch.get_num_threads()) // n))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={n}", "-m", "medgan.bench.ddp", str(args), str(out)]
        subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": env_threads})
        return json.loads(out.read_text())


def main(argv: list[str]) -> int:
    """A torchrun process: ``python -m medgan.bench.ddp SPEC.json ROW.json``."""
    spec = json.loads(Path(argv[0]).read_text())
    ranks, dev = start_processes(spec["device"])
    row = _time_steps(spec, ranks, dev)
    if ranks.is_main:
        Path(argv[1]).write_text(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
