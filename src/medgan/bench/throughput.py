"""Training-speed benchmark of the registered GAN architectures; needs only torch and numpy.

    python -m medgan.bench --arch dcgan --resolution 32 64 --batch 64 --steps 20 --device auto

For every architecture x resolution x batch size, a generator and discriminator built from the
architecture's defaults (plus ``--arch-config`` overrides) are trained on random data with a loss
from :mod:`medgan.training.losses` (``--loss``, default ``gan``): one step is ``n_critic``
discriminator
steps and one generator step, with Adam, exactly like :func:`medgan.training.step.train_step`.
After
``--warmup`` steps, ``--steps`` steps are timed. Two modes run side by side in one process:

* ``eager``: plain fp32 eager mode (TF32 off, cudnn.benchmark off);
* ``fast``: on CUDA bf16 autocast (forward passes only), channels_last, TF32 matmuls and
  convolutions, cudnn.benchmark, and ``torch.compile`` of G and D with ``--compile``; on CPU
  fp32 + channels_last only (CPU autocast is not used).

Reported per row: images/s (real images shown to D per second, as in ``stats.jsonl``), ms per
step, peak memory (CUDA: ``torch.cuda.max_memory_allocated``; CPU: the process's peak RSS,
reset per row through ``/proc/self/clear_refs`` where Linux allows it, otherwise the peak so far),
FLOPs per step (counted once per configuration with ``FlopCounterMode`` on an fp32 step),
achieved TFLOP/s and, where a peak is known, its fraction of the device's dense bf16 peak (from
:data:`BF16_PEAK_TFLOPS` by device name or ``--peak-tflops``; the eager rows are compared with
the same bf16 peak), and the fast/eager speed-up.

``--processes 1 2 4``: data-parallel training instead, 1 vs N processes side by side (images/s
and scaling efficiency at the same global batch; see :mod:`medgan.bench.ddp`).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import resource
import sys
import time
from collections.abc import Sequence
from typing import Any

import torch

from medgan import __version__
from medgan.models import ARCHITECTURES, build_discriminator, build_generator, resolved_config
from medgan.training.losses import build_loss

# dense bf16 tensor-core peaks (TFLOP/s), matched in order against the CUDA device name
BF16_PEAK_TFLOPS: list[tuple[str, float]] = [
    ("H100 PCIe", 756.0), ("H100", 989.0), ("H200", 989.0), ("GH200", 989.0),
    ("A100", 312.0), ("L40S", 362.0), ("A10G", 70.0), ("L4", 121.0),
]
MODES = ("eager", "fast")


def peak_bf16_tflops(device_name: str) -> float | None:
    """The dense bf16 peak of a CUDA device by name, or ``None`` if not in the table."""
    for key, tflops in BF16_PEAK_TFLOPS:
        if key.lower() in device_name.lower():
            return tflops
    return None


def device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# --- memory ------------------------------------------------------------------------------------

def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter of this process (Linux >= 4.0); False if not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# --- one configuration -------------------------------------------------------------------------

def _set_backend_flags(fast: bool) -> None:
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = fast
    torch.backends.cudnn.allow_tf32 = fast
    torch.backends.cudnn.benchmark = fast


class _Setup:
    """G, D, their optimisers, a loss object and a random real batch for one configuration."""

    def __init__(self, arch: dict, loss_cfg: dict, *, channels: int, resolution: int,
                 batch: int, dev: torch.device, fast: bool, compile_models: bool, seed: int):
        torch.manual_seed(seed)
        self.G = build_generator(arch, channels=channels, resolution=resolution).to(dev)
        self.D = build_discriminator(arch, channels=channels, resolution=resolution).to(dev)
        self.real = torch.randn(batch, channels, resolution, resolution, device=dev)
        if fast:
            self.G = self.G.to(memory_format=torch.channels_last)
            self.D = self.D.to(memory_format=torch.channels_last)
            self.real = self.real.contiguous(memory_format=torch.channels_last)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.G_run, self.D_run = self.G, self.D
        if compile_models:
            self.G_run, self.D_run = torch.compile(self.G), torch.compile(self.D)
        self.loss = build_loss(loss_cfg)
        if hasattr(self.loss, "bind"):  # stylegan2 + ADA: the augmentation's channel names
            self.loss.bind([f"c{i}" for i in range(channels)])
        self.latent_dim = int(self.G.latent_dim)
        self.batch, self.dev = batch, dev
        self.autocast = fast and dev.type == "cuda"

    def _forward(self):
        if self.autocast:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def step(self) -> None:
        """``n_critic`` D steps then one G step, as :func:`medgan.training.step.train_step`."""
        G, D, loss = self.G_run, self.D_run, self.loss
        for _ in range(loss.n_critic):
            z = torch.randn(self.batch, self.latent_dim, device=self.dev)
            with self._forward():
                with torch.no_grad():
                    fake = G(z)
                d_loss, _ = loss.d_loss(D, self.real, fake)
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            self.opt_d.step()
            loss.after_d_step(self.D)
        self.D.requires_grad_(False)
        try:
            z = torch.randn(self.batch, self.latent_dim, device=self.dev)
            with self._forward():
                g_loss, _ = loss.g_loss(D, G(z))
            self.opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            self.opt_g.step()
        finally:
            self.D.requires_grad_(True)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def count_step_flops(setup: _Setup) -> int:
    """FLOPs of one training step (forward and backward, all D and G passes)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        setup.step()
    return int(counter.get_total_flops())


def bench_one(arch_name: str, *, arch_overrides: dict, loss_cfg: dict, channels: int,
              resolution: int, batch: int, mode: str, steps: int, warmup: int,
              dev: torch.device, compile_models: bool, seed: int) -> dict[str, Any]:
    """Time ``steps`` training steps of one configuration in one mode; one result row."""
    fast = mode == "fast"
    arch = resolved_config({"name": arch_name, **arch_overrides})
    _set_backend_flags(fast)
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
    rss_reset = dev.type != "cuda" and _reset_peak_rss()
    setup = _Setup(arch, loss_cfg, channels=channels, resolution=resolution, batch=batch,
                   dev=dev, fast=fast, compile_models=fast and compile_models, seed=seed)
    for _ in range(warmup):
        setup.step()
    _sync(dev)
    t0 = time.perf_counter()
    for _ in range(steps):
        setup.step()
    _sync(dev)
    dt = time.perf_counter() - t0
    n_critic = setup.loss.n_critic
    row: dict[str, Any] = {
        "arch": arch_name, "resolution": resolution, "batch": batch, "mode": mode,
        "loss": setup.loss.config["name"], "n_critic": n_critic, "steps": steps,
        "warmup": warmup, "compiled": bool(fast and compile_models),
        "precision": "bf16-autocast" if setup.autocast else "fp32",
        "channels_last": fast, "seconds": dt,
        "ms_per_step": 1e3 * dt / steps,
        "images_per_s": steps * n_critic * batch / dt,
        "g_params": sum(p.numel() for p in setup.G.parameters()),
        "d_params": sum(p.numel() for p in setup.D.parameters()),
    }
    if dev.type == "cuda":
        row["peak_memory_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
        row["memory_kind"] = "cuda_max_allocated"
    else:
        row["peak_memory_mb"] = _peak_rss_mb()
        row["memory_kind"] = "peak_rss" if rss_reset else "process_peak_rss_so_far"
    del setup
    return row


# --- the whole table ---------------------------------------------------------------------------

# ``--loss auto`` (the default): each architecture's own objective; stylegan2 with ADA at
# p = 0.5, the cost of a run whose augmentation has adapted (lazy R1 every 16 steps)
ARCH_LOSSES: dict[str, dict[str, Any]] = {
    "stylegan2": {"name": "stylegan2", "ada": {"initial_p": 0.5}},
}


def loss_for(arch_name: str, loss: dict | None) -> dict[str, Any]:
    """The loss config benchmarked with ``arch_name`` (``None`` or ``{"name": "auto"}``: its
    own, :data:`ARCH_LOSSES`, else ``gan``)."""
    if loss is None or loss.get("name") == "auto":
        return ARCH_LOSSES.get(arch_name, {"name": "gan"})
    return loss


def overrides_for(arch_name: str, overrides: dict | None) -> dict[str, Any]:
    """``--arch-config`` for ``arch_name``: the dict itself, or (when every key names an
    architecture) its entry for ``arch_name``."""
    overrides = overrides or {}
    if overrides and all(k in ARCHITECTURES for k in overrides):
        return overrides.get(arch_name, {})
    return overrides


def run_benchmark(*, archs: Sequence[str], resolutions: Sequence[int], batches: Sequence[int],
                  steps: int = 20, warmup: int = 3, device: str = "auto", channels: int = 1,
                  loss: dict | None = None, arch_overrides: dict | None = None,
                  modes: Sequence[str] = MODES, compile_models: bool = False,
                  peak_tflops: float | None = None, threads: int | None = None,
                  seed: int = 0) -> dict[str, Any]:
    """Benchmark every configuration in every mode; return machine info and result rows."""
    if threads is not None:
        torch.set_num_threads(threads)
    dev = torch.device(("cuda" if torch.cuda.is_available() else "cpu")
                       if device == "auto" else device)
    unknown = [a for a in archs if a not in ARCHITECTURES]
    if unknown:
        raise ValueError(f"unknown architecture(s) {unknown}; known: {sorted(ARCHITECTURES)}")
    name = device_name(dev)
    peak = peak_tflops if peak_tflops is not None else (
        peak_bf16_tflops(name) if dev.type == "cuda" else None)
    rows: list[dict[str, Any]] = []
    for arch_name in archs:
        loss_cfg, overrides = loss_for(arch_name, loss), overrides_for(arch_name, arch_overrides)
        for res in resolutions:
            for batch in batches:
                common = {"arch_name": arch_name, "arch_overrides": overrides,
                          "loss_cfg": loss_cfg, "channels": channels, "resolution": res,
                          "batch": batch, "dev": dev, "seed": seed}
                try:
                    arch = resolved_config({"name": arch_name, **overrides})
                    flops = count_step_flops(_Setup(arch, loss_cfg, channels=channels,
                                                    resolution=res, batch=batch, dev=dev,
                                                    fast=False, compile_models=False,
                                                    seed=seed))
                except (ValueError, RuntimeError) as err:  # e.g. unsupported resolution
                    rows.append({"arch": arch_name, "resolution": res, "batch": batch,
                                 "mode": "skipped", "error": " ".join(str(err).split())})
                    continue
                eager = None
                for mode in modes:
                    row = bench_one(mode=mode, steps=steps, warmup=warmup,
                                    compile_models=compile_models, **common)
                    row["flops_per_step"] = flops
                    row["tflops_per_s"] = flops * steps / row["seconds"] / 1e12
                    row["fraction_of_bf16_peak"] = (row["tflops_per_s"] / peak
                                                    if peak else None)
                    if mode == "eager":
                        eager = row
                    row["speedup_vs_eager"] = (row["images_per_s"] / eager["images_per_s"]
                                               if eager else None)
                    rows.append(row)
    _set_backend_flags(False)
    return {
        "medgan_version": __version__, "torch_version": str(torch.__version__),
        "python_version": platform.python_version(), "machine": platform.platform(),
        "hostname": platform.node(), "device": str(dev), "device_name": name,
        "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
        "cuda_version": torch.version.cuda, "peak_bf16_tflops": peak,
        "fast_mode": ("bf16 autocast + channels_last + TF32 + cudnn.benchmark"
                      + (" + torch.compile" if compile_models else "")
                      if dev.type == "cuda" else "fp32 + channels_last (CPU: no autocast)"),
        "results": rows,
    }


def format_table(report: dict[str, Any]) -> str:
    """The result rows as a fixed-width text table with a header describing the machine."""
    lines = [f"medgan {report['medgan_version']}  torch {report['torch_version']}  "
             f"python {report['python_version']}",
             f"machine: {report['machine']}  device: {report['device']} "
             f"({report['device_name']})  threads: {report['threads']}",
             f"fast mode: {report['fast_mode']}; bf16 peak: "
             f"{report['peak_bf16_tflops'] or 'unknown'} TFLOP/s", ""]
    head = (f"{'arch':<16}{'res':>5}{'batch':>6} {'mode':<6}{'img/s':>10}{'ms/step':>9}"
            f"{'peak MB':>9}{'GFLOP/step':>11}{'TFLOP/s':>9}{'%peak':>7}{'speedup':>8}")
    lines += [head, "-" * len(head)]
    for r in report["results"]:
        if r["mode"] == "skipped":
            lines.append(f"{r['arch']:<16}{r['resolution']:>5}{r['batch']:>6} skipped: "
                         f"{r['error']}")
            continue
        frac = r.get("fraction_of_bf16_peak")
        speed = r.get("speedup_vs_eager")
        lines.append(
            f"{r['arch']:<16}{r['resolution']:>5}{r['batch']:>6} {r['mode']:<6}"
            f"{r['images_per_s']:>10.1f}{r['ms_per_step']:>9.1f}{r['peak_memory_mb']:>9.0f}"
            f"{r['flops_per_step'] / 1e9:>11.2f}{r['tflops_per_s']:>9.3f}"
            f"{(f'{100 * frac:.1f}' if frac is not None else '-'):>7}"
            f"{(f'{speed:.2f}x' if speed is not None else '-'):>8}")
    return "\n".join(lines)


def run_process_benchmark(*, archs: Sequence[str], resolutions: Sequence[int],
                          batches: Sequence[int], processes: Sequence[int], modes: Sequence[str],
                          steps: int, warmup: int, device: str, channels: int, loss: dict,
                          arch_overrides: dict, compile_models: bool, threads: int | None,
                          seed: int) -> list[dict[str, Any]]:
    """:func:`medgan.bench.ddp.bench_processes` for every configuration and mode."""
    from medgan.bench.ddp import bench_processes

    rows = []
    for arch, res, batch, mode in itertools.product(archs, resolutions, batches, modes):
        spec = {"arch": arch, "arch_overrides": overrides_for(arch, arch_overrides),
                "loss": loss_for(arch, loss),
                "channels": channels, "resolution": res, "batch": batch, "mode": mode,
                "performance": {"compile": compile_models}, "steps": steps,
                "warmup": warmup, "seed": seed, "device": device}
        rows += bench_processes(spec, list(processes), threads=threads)
    return rows


def format_process_table(rows: list[dict[str, Any]]) -> str:
    head = (f"{'arch':<16}{'res':>5}{'batch':>6} {'mode':<6}{'procs':>6}{'img/s':>11}"
            f"{'ms/step':>9}{'scaling':>9}{'peak MB':>9}")
    lines = [head, "-" * len(head)]
    for r in rows:
        eff, mem = r["scaling_efficiency"], r["peak_memory_mb"]
        lines.append(f"{r['arch']:<16}{r['resolution']:>5}{r['batch']:>6} {r['mode']:<6}"
                     f"{r['processes']:>6}{r['images_per_s']:>11.1f}{r['ms_per_step']:>9.1f}"
                     f"{(f'{100 * eff:.0f}%' if eff is not None else '-'):>9}"
                     f"{(f'{mem:.0f}' if mem is not None else '-'):>9}")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m medgan.bench",
                                description="GAN training-speed benchmark (eager fp32 vs fast).")
    p.add_argument("--arch", nargs="+", default=["dcgan"],
                   help=f"architectures ('all' = every registered one: {sorted(ARCHITECTURES)})")
    p.add_argument("--resolution", nargs="+", type=int, default=[64])
    p.add_argument("--batch", nargs="+", type=int, default=[64])
    p.add_argument("--steps", type=int, default=20, help="timed steps per configuration")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--device", default="auto")
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--loss", default="auto",
                   help="loss name, or a JSON loss config (auto: each architecture's own - "
                        "gan, stylegan2 with ADA at p 0.5 for stylegan2)")
    p.add_argument("--arch-config", default="{}",
                   help="JSON overrides of the architecture defaults, e.g. '{\"width\": 32}', "
                        "or per architecture: '{\"dcgan\": {...}, \"stylegan2\": {...}}'")
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    p.add_argument("--compile", action="store_true", help="torch.compile G and D in fast mode")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="peak bf16 TFLOP/s of the device (default: from a table by name)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--processes", nargs="+", type=int, default=None,
                   help="data-parallel: time 1 vs N torchrun processes (e.g. 1 2 4)")
    p.add_argument("--json", default=None, help="also write the report as JSON here")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if min(args.steps, *args.resolution, *args.batch, args.channels) < 1 or args.warmup < 0:
            raise ValueError("steps, resolutions, batches and channels must be >= 1, "
                             "warmup >= 0")
        archs = sorted(ARCHITECTURES) if args.arch == ["all"] else args.arch
        loss = (json.loads(args.loss) if args.loss.lstrip().startswith("{")
                else {"name": args.loss})
        if args.processes:
            return _main_processes(args, archs, loss)
        report = run_benchmark(archs=archs, resolutions=args.resolution, batches=args.batch,
                               steps=args.steps, warmup=args.warmup, device=args.device,
                               channels=args.channels, loss=loss,
                               arch_overrides=json.loads(args.arch_config), modes=args.modes,
                               compile_models=args.compile, peak_tflops=args.peak_tflops,
                               threads=args.threads, seed=args.seed)
    except ValueError as err:  # json.JSONDecodeError is a ValueError
        print(f"medgan.bench: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    print(format_table(report))
    if args.json:
        from medgan.atomic import write_json

        write_json(args.json, report)
    return 0


def _main_processes(args: argparse.Namespace, archs: list[str], loss: dict) -> int:
    if min(args.processes) < 1:
        raise ValueError("--processes must be >= 1")
    rows = run_process_benchmark(
        archs=archs, resolutions=args.resolution, batches=args.batch, processes=args.processes,
        modes=args.modes, steps=args.steps, warmup=args.warmup, device=args.device,
        channels=args.channels, loss=loss, arch_overrides=json.loads(args.arch_config),
        compile_models=args.compile, threads=args.threads, seed=args.seed)
    print(format_process_table(rows))
    if args.json:
        from medgan.atomic import write_json

        write_json(args.json, {"medgan_version": __version__,
                               "torch_version": str(torch.__version__), "results": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
