"""``python -m medgan.bench`` on a tiny configuration (seconds, CPU)."""

import json
import subprocess
import sys

from medgan.bench import format_table, peak_bf16_tflops


def test_bench_runs_and_writes_json(tmp_path):
    out = tmp_path / "out.json"
    proc = subprocess.run(
        [sys.executable, "-m", "medgan.bench", "--steps", "2", "--warmup", "1",
         "--resolution", "16", "--batch", "4", "--device", "cpu", "--threads", "1",
         "--arch-config", '{"width": 4, "max_width": 8, "latent_dim": 8}', "--json", str(out)],
        capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert report["device"] == "cpu" and report["torch_version"]
    rows = {r["mode"]: r for r in report["results"]}
    assert set(rows) == {"eager", "fast"}
    for row in rows.values():
        assert row["images_per_s"] > 0 and row["flops_per_step"] > 0
        assert row["peak_memory_mb"] > 0
    assert rows["fast"]["channels_last"] and rows["fast"]["precision"] == "fp32"
    assert rows["eager"]["speedup_vs_eager"] == 1.0
    assert "dcgan" in proc.stdout and format_table(report) in proc.stdout


def test_bench_unknown_architecture_is_one_line_error():
    proc = subprocess.run([sys.executable, "-m", "medgan.bench", "--arch", "nosucharch",
                           "--steps", "1"], capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "nosucharch" in proc.stderr


def test_peak_table():
    assert peak_bf16_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert peak_bf16_tflops("NVIDIA H100 PCIe") == 756.0
    assert peak_bf16_tflops("NVIDIA H200") == 989.0
    assert peak_bf16_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert peak_bf16_tflops("Some GPU") is None


def test_bench_processes_reports_scaling(tmp_path):
    out = tmp_path / "procs.json"
    proc = subprocess.run(
        [sys.executable, "-m", "medgan.bench", "--processes", "1", "--modes", "eager",
         "--steps", "2", "--warmup", "1", "--resolution", "16", "--batch", "4",
         "--device", "cpu", "--threads", "1",
         "--arch-config", '{"width": 4, "max_width": 8, "latent_dim": 8}', "--json", str(out)],
        capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(out.read_text())["results"]
    assert row["processes"] == 1 and row["local_batch"] == 4 and row["images_per_s"] > 0
    assert row["scaling_efficiency"] == 1.0
    assert "procs" in proc.stdout and "100%" in proc.stdout


def test_bench_stylegan2_beside_dcgan_and_pggan(tmp_path):
    """Issue 20: the three architectures at one resolution, each with its own loss and
    per-architecture widths."""
    out = tmp_path / "three.json"
    widths = {"dcgan": {"width": 4, "max_width": 8, "latent_dim": 8},
              "pggan": {"filters": 4, "latent_dim": 8},
              "stylegan2": {"channel_base": 64, "channel_max": 8, "latent_dim": 8, "w_dim": 8}}
    proc = subprocess.run(
        [sys.executable, "-m", "medgan.bench", "--arch", "dcgan", "pggan", "stylegan2",
         "--modes", "eager", "--steps", "1", "--warmup", "0", "--resolution", "16",
         "--batch", "4", "--channels", "3", "--device", "cpu", "--threads", "1",
         "--arch-config", json.dumps(widths), "--json", str(out)],
        capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stderr
    rows = {r["arch"]: r for r in json.loads(out.read_text())["results"]}
    assert set(rows) == {"dcgan", "pggan", "stylegan2"}
    assert rows["stylegan2"]["loss"] == "stylegan2" and rows["dcgan"]["loss"] == "gan"
    assert all(r["images_per_s"] > 0 and r["resolution"] == 16 for r in rows.values())
