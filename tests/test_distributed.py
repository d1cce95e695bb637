"""Data-parallel training on CPU with gloo: N processes train as one, stop together, resume.

Two torchrun launches of 2 processes serve every test (starting processes is what costs time):

* launch A (through :func:`medgan.training.launch.run_processes`, as ``train_gan(processes=2)``
  does): DCGAN + BCE (label smoothing, EMA), WGAN-GP (n_critic 2) and a PGGAN crossing two
  fade-ins (per-resolution batch sizes, minibatch-stddev groups), then a slowed-down run that
  the test stops with SIGTERM;
* launch B: the stopped run resumed, and the same run uninterrupted.

Tolerance of "equal" between 1 and 2 processes: the two compute the same sums in a different
order (each process's loss is a mean over half the batch and DDP averages the gradients;
BatchNorm statistics are all-reduced sums instead of one kernel; the DRAGAN std is two-pass).
Each such sum differs by a few float32 ulps (~1e-7 relative); training carries the differences
on, and Adam, dividing by sqrt(v), enlarges them where a gradient is close to zero. Measured
(weights: |w1 - w2| / |w1 - w0|, the distance from initialisation; losses: relative difference
of each logged mean), against controls that break one thing on purpose:

=====================  ==================  =====================================================
run                    correct (measured)  broken (measured)
=====================  ==================  =====================================================
DCGAN/WGAN-GP/DRAGAN   weights <= 1.6e-7   >= 4.7e-4 (per-process BatchNorm statistics, or
                       losses  <= 2.8e-6   per-process GP/DRAGAN draws); losses >= 8e-5
PGGAN (equalised lr,   weights <= 3.7e-4   >= 2.4e-2 (minibatch-stddev groups split across
 weights O(1))         losses  <= 6.2e-8   processes, or per-process GP draws); losses >= 4e-4
=====================  ==================  =====================================================

(PGGAN: 3.7e-4 for a 15-step run of other seed and phases; this file's run: 8.5e-6.) The bounds
sit between the two columns: weights 1e-5 (DCGAN family) and 3e-3 (PGGAN), losses 2e-5
relative.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch
from conftest import tensors_by_name

from medgan.data.prepared import PreparedDatasetWriter
from medgan.models import build_discriminator, build_generator, resolved_config
from medgan.training import train_gan
from medgan.training.checkpoint import EXIT_INTERRUPTED, load_checkpoint
from medgan.training.distributed import Ranks
from medgan.training.launch import torchrun_command

pytestmark = pytest.mark.distributed

# of the distance the weights travelled from initialisation; see the module docstring
TOLERANCE = {"dcgan_bce": 1e-5, "wgan_gp": 1e-5, "pggan_fade": 3e-3, "stopped": 1e-5}
LOSS_TOLERANCE = 2e-5  # relative, per logged mean
COMMON = {"channels": None, "resolution": 16, "seed": 5, "device": "cpu", "threads": 1,
          "progress": False, "optimizer": {"name": "adam"}}
DCGAN = {"name": "dcgan", "latent_dim": 8, "width": 4, "max_width": 8}
RUNS = {
    "dcgan_bce": {"architecture": DCGAN, "loss": {"name": "gan", "label_smoothing": 0.1},
                  "schedule": {"steps": 6, "batch_size": 8, "log_every": 3, "sample_every": 0,
                               "ema_decay": 0.9}},
    "wgan_gp": {"architecture": DCGAN, "loss": {"name": "wgan_gp", "n_critic": 2},
                "schedule": {"steps": 4, "batch_size": 8, "log_every": 2, "sample_every": 0}},
    # 4 px stable, 8 px fade-in + stable, 16 px fade-in + stable; batch 8, then 4 at 16 px
    "pggan_fade": {"architecture": {"name": "pggan", "latent_dim": 8, "filters": 8,
                                    "mbstd_group_size": 2},
                   "loss": {"name": "wgan_gp", "n_critic": 1},
                   "schedule": {"steps_per_phase": 2, "batch_sizes": {"default": 8, "16": 4},
                                "log_every": 2, "sample_every": 0}},
}
# DRAGAN (global-batch std and per-pixel draws), g_steps 2 and the EMA across a SIGTERM
STOPPED = {"architecture": DCGAN, "loss": {"name": "dragan", "g_steps": 2},
           "schedule": {"steps": 30, "batch_size": 8, "log_every": 1, "sample_every": 0,
                        "ema_decay": 0.9}}

WORKER = textwrap.dedent("""
    import json, sys, time
    import medgan.training.loop as loop
    from medgan.training import train_gan
    from medgan.training.checkpoint import TrainingInterrupted

    spec = json.load(open(sys.argv[1]))
    for job in spec["jobs"]:
        if job.pop("slow", False):  # slow enough to be stopped mid-run; numbers unchanged
            step = loop.train_step
            def slow(*a, **kw):
                step(*a, **kw)
                time.sleep(0.05)
            loop.train_step = slow
        try:
            train_gan(job.pop("data_dir"), job.pop("out_dir"), **job)
        except TrainingInterrupted as stop:
            sys.exit(stop.code)
""")


def _job(data, out, run, **kw):
    return {"data_dir": str(data), "out_dir": str(out), **COMMON, **run, **kw}


def _wait_for_rows(path, n, proc, timeout=300):
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text().count("\n") >= n):
        assert proc.poll() is None, "the 2-process run ended before it was stopped"
        assert time.monotonic() < deadline, "the 2-process run did not start"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    data = root / "data"
    rng = np.random.default_rng(0)
    with PreparedDatasetWriter(data, channels=["T1"], resolution=16) as w:
        w.append(np.tanh(rng.normal(size=(20, 1, 16, 16))).astype(np.float32),
                 [{"subject": f"s{i}", "slice": i} for i in range(20)])
    (root / "ddp_test_worker.py").write_text(WORKER)
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    stopped = root / "stopped"

    # launch A: the three comparisons, then the run stopped by SIGTERM
    jobs = [_job(data, root / f"{name}-2", run) for name, run in RUNS.items()]
    jobs.append(_job(data, stopped, STOPPED, slow=True))
    launcher = textwrap.dedent(f"""
        import json, sys
        from medgan.training.launch import run_processes
        kwargs = {{"jobs": json.loads(sys.argv[1]), "out_dir": {str(stopped)!r}, "threads": 2}}
        run_processes(2, kwargs, module="ddp_test_worker")
    """)
    proc = subprocess.Popen([sys.executable, "-c", launcher, json.dumps(jobs)], env=env,
                            stderr=subprocess.PIPE, text=True)
    _wait_for_rows(stopped / "stats.jsonl.partial", 2, proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=300)
    shutil.copytree(stopped, root / "stopped-copy")

    # launch B: resume the stopped run; the same run uninterrupted
    spec = root / "b.json"
    spec.write_text(json.dumps({"jobs": [_job(data, stopped, STOPPED),
                                         _job(data, root / "whole", STOPPED)]}))
    cmd = torchrun_command(2, spec, module="ddp_test_worker")
    subprocess.run(cmd, env=env, check=True, timeout=600)
    return {"root": root, "data": data, "returncode": proc.returncode, "stderr": stderr}


def _weights(state_dict):
    return torch.cat([v.double().flatten() for v in state_dict.values()
                      if torch.is_tensor(v) and v.is_floating_point()])


def _assert_close_runs(a, b, run, seed, tolerance):
    """``a`` and ``b`` (checkpoints) agree within ``tolerance`` of the distance travelled."""
    torch.manual_seed(seed)  # the initial weights, drawn as TrainingState.create draws them
    arch = resolved_config(run["architecture"])
    initial = {"generator": build_generator(arch, channels=1, resolution=16).state_dict(),
               "discriminator": build_discriminator(arch, channels=1, resolution=16).state_dict()}
    for model in ("generator", "discriminator"):
        w0, wa, wb = (_weights(s) for s in (initial[model], a[model], b[model]))
        travelled = (wa - w0).norm()
        assert travelled > 1e-2, model  # training moved the weights
        ratio = float((wa - wb).norm() / travelled)
        print(f"{model}: |w1 - w2| / |w1 - w0| = {ratio:.2e}")
        assert ratio <= tolerance, (model, ratio)


@pytest.mark.parametrize("name", list(RUNS))
def test_two_processes_train_as_one(runs, name, tmp_path):
    run = RUNS[name]
    one = train_gan(runs["data"], tmp_path / "one", **{**COMMON, **run})
    two = json.loads((runs["root"] / f"{name}-2" / "run.json").read_text())
    a = load_checkpoint(tmp_path / "one" / "checkpoint.pt")
    b = load_checkpoint(runs["root"] / f"{name}-2" / "checkpoint.pt")
    assert a["step"] == b["step"] == one["config"]["schedule"]["steps"]
    assert two["config"] == one["config"]  # the same run: the batch size is the global batch
    _assert_close_runs(a, b, run, COMMON["seed"], TOLERANCE[name])
    if name == "pggan_fade":  # ended at full resolution, stage in the state dict
        assert a["generator"]["_extra_state"] == b["generator"]["_extra_state"]
    rows_one = [json.loads(r) for r in (tmp_path / "one" / "stats.jsonl").read_text().splitlines()]
    rows_two = [json.loads(r)
                for r in (runs["root"] / f"{name}-2" / "stats.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows_one] == [r["step"] for r in rows_two]
    for r1, r2 in zip(rows_one, rows_two, strict=True):  # losses are global-batch means
        for key in ("d_loss", "g_loss"):
            assert r2[key] == pytest.approx(r1[key], rel=LOSS_TOLERANCE, abs=1e-7), (key, r1, r2)


def test_sigterm_stops_every_process_and_resume_is_exact(runs):
    root = runs["root"]
    assert runs["returncode"] == EXIT_INTERRUPTED, runs["stderr"][-3000:]
    copy = load_checkpoint(root / "stopped-copy" / "checkpoint.pt")
    logged = [json.loads(r)["step"]
              for r in (root / "stopped-copy" / "stats.jsonl.partial").read_text().splitlines()]
    steps = STOPPED["schedule"]["steps"]
    assert 2 <= copy["step"] < steps and logged[-1] == copy["step"]  # stopped after its step
    assert len(copy["log_sums_per_rank"]) == 2
    assert not (root / "stopped-copy" / "run.json").exists()

    resumed, whole = (load_checkpoint(root / d / "checkpoint.pt") for d in ("stopped", "whole"))
    assert json.loads((root / "stopped" / "run.json").read_text())["resumed_from_step"] == (
        copy["step"])
    a, b = tensors_by_name({k: resumed[k] for k in ("generator", "discriminator", "generator_ema",
                                             "g_optimizer", "d_optimizer", "rng", "sampler")}), \
        tensors_by_name({k: whole[k] for k in ("generator", "discriminator", "generator_ema",
                                        "g_optimizer", "d_optimizer", "rng", "sampler")})
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, different[:5]
    rows = [json.loads(r) for r in (root / "stopped" / "stats.jsonl").read_text().splitlines()]
    rows_whole = [json.loads(r) for r in (root / "whole" / "stats.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, steps + 1))
    for r, w in zip(rows, rows_whole, strict=True):  # every process's log sums were kept
        assert r["d_loss"] == w["d_loss"] and r["g_loss"] == w["g_loss"]


def test_a_two_process_checkpoint_resumes_on_one_process(runs, tmp_path):
    out = tmp_path / "one"
    shutil.copytree(runs["root"] / "stopped-copy", out)
    run = train_gan(runs["data"], out, **{**COMMON, **STOPPED})
    assert run["resumed_from_step"] == load_checkpoint(
        runs["root"] / "stopped-copy" / "checkpoint.pt")["step"]
    _assert_close_runs(load_checkpoint(out / "checkpoint.pt"),
                       load_checkpoint(runs["root"] / "whole" / "checkpoint.pt"), STOPPED,
                       COMMON["seed"], TOLERANCE["stopped"])


def test_shards_keep_minibatch_stddev_groups():
    # a batch of 8 in groups of 2: image i is in group i % 4; two processes get 4 each
    r0, r1 = Ranks(0, 2, group_size=2), Ranks(1, 2, group_size=2)
    assert r0.rows(8).tolist() == [0, 1, 4, 5] and r1.rows(8).tolist() == [2, 3, 6, 7]
    for rows in (r0.rows(8), r1.rows(8)):  # local group j % 2 == global group % 4
        assert [int(i) % 4 for i in rows] == [0, 1, 0, 1] or [int(i) % 4 for i in rows] == [
            2, 3, 2, 3]
    assert Ranks(1, 2).rows(6).tolist() == [3, 4, 5]  # no groups: contiguous halves
    x = torch.arange(8.0)
    assert torch.equal(Ranks().take(x), x)
    with pytest.raises(ValueError, match="not divisible by the 2 processes"):
        r0.check_batch(7)
