"""Resumable training: exact resume after a kill, SIGTERM checkpoints, config checks."""

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from medgan.data.prepared import PreparedDatasetWriter
from medgan.errors import InputError
from medgan.training import train_gan
from medgan.training.checkpoint import EXIT_INTERRUPTED, load_checkpoint

ARGS = {"channels": None, "resolution": 16, "seed": 3, "device": "cpu", "threads": 1,
        "progress": False,
        "architecture": {"name": "dcgan", "latent_dim": 8, "width": 4, "max_width": 8},
        # DRAGAN draws from torch's global RNG, g_steps > 1 and the EMA: all must resume exactly
        "loss": {"name": "dragan", "g_steps": 2},
        "optimizer": {"name": "adam", "lr": 1e-3, "lr_d": 4e-4, "betas": [0.0, 0.99]}}
SCHEDULE = {"steps": 7, "batch_size": 4, "log_every": 2, "sample_every": 0,
            "ema_decay": 0.9}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "prepared"
    rng = np.random.default_rng(0)
    # 10 images, batch 4: epochs of 2 batches, so the sampler's position matters on resume
    images = rng.normal(size=(10, 1, 16, 16)).astype(np.float32)
    with PreparedDatasetWriter(path, channels=["T1"], resolution=16) as w:
        w.append(images, [{"subject": f"s{i}", "slice": i} for i in range(10)])
    return path


def _train(data, out, **kw):
    return train_gan(data, out, **{**ARGS, "schedule": SCHEDULE, **kw})


def _tensors(obj, prefix=""):
    """Every tensor of a nested checkpoint dict, by dotted key."""
    if isinstance(obj, torch.Tensor):
        return {prefix: obj}
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, list | tuple):
        items = enumerate(obj)
    else:
        return {}
    out = {}
    for k, v in items:
        out.update(_tensors(v, f"{prefix}.{k}"))
    return out


def _assert_same_state(a_dir, b_dir):
    a, b = load_checkpoint(a_dir / "checkpoint.pt"), load_checkpoint(b_dir / "checkpoint.pt")
    assert a["step"] == b["step"]
    keys = ("generator", "discriminator", "generator_ema", "g_optimizer", "d_optimizer")
    ta, tb = _tensors({k: a[k] for k in keys}), _tensors({k: b[k] for k in keys})
    assert ta.keys() == tb.keys() and len(ta) > 20
    differ = [k for k in ta if not torch.equal(ta[k], tb[k])]
    assert not differ, f"tensors differ after resume: {differ[:5]}"


@pytest.fixture(scope="module")
def uninterrupted(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "whole"
    _train(data, out)
    return out


class Killed(BaseException):
    """Stands in for SIGKILL: nothing after it runs."""


def test_resume_after_a_kill_is_exact(data, uninterrupted, tmp_path, monkeypatch):
    import medgan.training.loop

    out = tmp_path / "killed"
    real_step, calls = medgan.training.loop.train_step, []

    def dying_step(*args, **kw):
        calls.append(1)
        if len(calls) == 6:  # checkpoints at steps 3 and 6 (not reached): killed in step 6
            raise Killed
        return real_step(*args, **kw)

    monkeypatch.setattr(medgan.training.loop, "train_step", dying_step)
    with pytest.raises(Killed):
        _train(data, out, schedule={**SCHEDULE, "checkpoint_every": 3})
    monkeypatch.setattr(medgan.training.loop, "train_step", real_step)
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 3
    assert not (out / "stats.jsonl").exists() and not (out / "run.json").exists()
    logged = [json.loads(r)["step"] for r in (out / "stats.jsonl.partial").read_text().splitlines()]
    assert logged == [2, 4]  # step 4 was logged after the checkpoint of step 3

    run = _train(data, out, schedule={**SCHEDULE, "checkpoint_every": 3})
    assert run["resumed_from_step"] == 3
    _assert_same_state(uninterrupted, out)
    rows = [json.loads(r) for r in (out / "stats.jsonl").read_text().splitlines()]
    whole = [json.loads(r) for r in (uninterrupted / "stats.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4, 6, 7]
    for r, w in zip(rows, whole, strict=True):  # the log's sums were checkpointed too
        assert r["d_loss"] == w["d_loss"] and r["g_loss"] == w["g_loss"]
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint.pt", "losses.png", "run.json", "samples.png", "snapshots.jsonl",
        "stats.jsonl"]


def _scorer(data):
    from medgan.analysis.snapshot_scorer import SnapshotScorer
    from medgan.data.prepared import load_prepared

    images = np.asarray(load_prepared(data).images)
    return SnapshotScorer(images, images[:4], channel_names=["T1"],
                          settings={"n_images": 8, "min_images": 8, "msssim_pairs": 10})


def test_resume_with_snapshots_is_exact(data, uninterrupted, tmp_path, monkeypatch):
    import medgan.training.loop

    schedule = {**SCHEDULE, "checkpoint_every": 3, "snapshot_every": 2, "keep_best": "rho"}
    whole = tmp_path / "whole"
    _train(data, whole, schedule=schedule, snapshot_scorer=_scorer(data))
    out = tmp_path / "killed"
    real_step, calls = medgan.training.loop.train_step, []

    def dying_step(*args, **kw):
        calls.append(1)
        if len(calls) == 6:
            raise Killed
        return real_step(*args, **kw)

    monkeypatch.setattr(medgan.training.loop, "train_step", dying_step)
    with pytest.raises(Killed):
        _train(data, out, schedule=schedule, snapshot_scorer=_scorer(data))
    monkeypatch.setattr(medgan.training.loop, "train_step", real_step)
    partial = [json.loads(r)["step"] for r in
               (out / "snapshots.jsonl.partial").read_text().splitlines()]
    assert partial == [0, 2, 4]  # step 4's snapshot came after the checkpoint of step 3
    run = _train(data, out, schedule=schedule, snapshot_scorer=_scorer(data))
    assert run["resumed_from_step"] == 3
    _assert_same_state(uninterrupted, out)  # snapshots change no weight, resumed or not

    def rows(path):
        return [{k: v for k, v in json.loads(r).items() if k != "snapshot_s"}
                for r in (path / "snapshots.jsonl").read_text().splitlines()]

    assert [r["step"] for r in rows(out)] == [0, 2, 4, 6, 7]
    assert rows(out) == rows(whole)
    best = load_checkpoint(out / "checkpoint_best.pt")
    assert best["step"] == max(rows(out)[1:], key=lambda r: r["rho"])["step"]


def test_resume_dir_survives_the_outputs_being_deleted(data, uninterrupted, tmp_path,
                                                      monkeypatch):
    import shutil

    import medgan.training.loop

    out, state = tmp_path / "out", tmp_path / "out.resume"
    real_step, calls = medgan.training.loop.train_step, []

    def dying_step(*args, **kw):
        calls.append(1)
        if len(calls) == 5:
            raise Killed
        return real_step(*args, **kw)

    schedule = {**SCHEDULE, "checkpoint_every": 2}
    monkeypatch.setattr(medgan.training.loop, "train_step", dying_step)
    with pytest.raises(Killed):
        _train(data, out, schedule=schedule, resume_dir=state)
    monkeypatch.setattr(medgan.training.loop, "train_step", real_step)
    assert load_checkpoint(state / "checkpoint.pt")["step"] == 4
    shutil.rmtree(out)  # what Snakemake does to a failed job's outputs
    run = _train(data, out, schedule=schedule, resume_dir=state)
    assert run["resumed_from_step"] == 4
    _assert_same_state(uninterrupted, out)
    assert [json.loads(r)["step"] for r in (out / "stats.jsonl").read_text().splitlines()] == [
        2, 4, 6, 7]
    # the final state stays (hard links, no extra disk) until the outputs are accepted ...
    assert sorted(p.relative_to(state).as_posix() for p in state.rglob("*")) == [
        "finished", "finished/checkpoint.pt", "finished/stats.jsonl"]
    assert (state / "finished" / "checkpoint.pt").samefile(out / "checkpoint.pt")
    # ... so a run whose outputs were deleted after it finished does not train again
    shutil.rmtree(out)
    again = _train(data, out, schedule=schedule, resume_dir=state)
    assert again["resumed_from_step"] == SCHEDULE["steps"]
    _assert_same_state(uninterrupted, out)
    assert (out / "stats.jsonl").read_text() == (state / "finished" / "stats.jsonl").read_text()
    # a different config starts afresh instead of taking up that state
    shutil.rmtree(out)
    other = _train(data, out, schedule=schedule, resume_dir=state, seed=4)
    assert other["resumed_from_step"] == 0


def test_more_steps_continue_a_finished_run(data, uninterrupted, tmp_path):
    out = tmp_path / "short"
    _train(data, out, schedule={**SCHEDULE, "steps": 4})
    run = _train(data, out)
    assert run["resumed_from_step"] == 4
    _assert_same_state(uninterrupted, out)


def test_a_different_config_is_refused(data, uninterrupted, tmp_path):
    import shutil

    out = tmp_path / "other"
    shutil.copytree(uninterrupted, out)
    with pytest.raises(InputError, match=r"checkpoint\.pt: .*loss\.gp_lambda") as err:
        _train(data, out, loss={**ARGS["loss"], "gp_lambda": 5.0})
    assert str(out / "checkpoint.pt") in str(err.value)
    with pytest.raises(InputError, match=r"optimizer\.lr_g"):
        _train(data, out, optimizer={**ARGS["optimizer"], "lr_g": 1e-4})
    with pytest.raises(InputError, match="beyond schedule steps"):
        _train(data, out, schedule={**SCHEDULE, "steps": 5})
    run = _train(data, out, loss={**ARGS["loss"], "gp_lambda": 5.0},
                 schedule={**SCHEDULE, "steps": 2}, resume=False)
    assert run["resumed_from_step"] == 0
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 2


SCRIPT = textwrap.dedent("""
    import json, sys, time
    import medgan.training.loop
    step = medgan.training.loop.train_step

    def slow_step(*a, **kw):  # slow enough to be caught mid-run; the numbers are unchanged
        step(*a, **kw)
        time.sleep(0.05)

    medgan.training.loop.train_step = slow_step
    args = json.loads(sys.argv[1])
    medgan.training.loop.train_gan(args.pop("data"), args.pop("out"), **args)
""")


def test_sigterm_writes_a_checkpoint_and_resume_completes(data, tmp_path):
    steps = 60
    schedule = {**SCHEDULE, "steps": steps, "log_every": 1}
    out = tmp_path / "slurm"
    args = {**ARGS, "schedule": schedule, "data": str(data), "out": str(out)}
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, json.dumps(args)],
                            stderr=subprocess.PIPE, text=True)
    partial = out / "stats.jsonl.partial"
    deadline = time.monotonic() + 60
    while not (partial.exists() and partial.read_text().count("\n") >= 2):
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_INTERRUPTED, stderr
    assert "Traceback" not in stderr
    step = load_checkpoint(out / "checkpoint.pt")["step"]
    logged = [json.loads(r)["step"] for r in partial.read_text().splitlines()]
    assert 2 <= step < steps and logged[-1] == step  # stopped right after the step it was in
    assert not (out / "run.json").exists() and not (out / "stats.jsonl").exists()

    run = _train(data, out, schedule=schedule)
    assert run["resumed_from_step"] == step
    rows = [json.loads(r)["step"] for r in (out / "stats.jsonl").read_text().splitlines()]
    assert rows == list(range(1, steps + 1))
    whole = tmp_path / "whole"
    _train(data, whole, schedule=schedule)
    _assert_same_state(whole, out)


# Kill steps drawn at random (seeded, so a failure reproduces) among those after a checkpoint.
RANDOM_KILL_STEPS = sorted(np.random.default_rng(2026).choice(np.arange(4, 8), 2, replace=False))


@pytest.mark.parametrize("kill_step", [int(k) for k in RANDOM_KILL_STEPS])
def test_resume_after_a_kill_at_a_random_step_is_exact(data, uninterrupted, tmp_path,
                                                        monkeypatch, kill_step):
    import medgan.training.loop

    out = tmp_path / "killed"
    real_step, calls = medgan.training.loop.train_step, []

    def dying_step(*args, **kw):
        calls.append(1)
        if len(calls) == kill_step:
            raise Killed
        return real_step(*args, **kw)

    monkeypatch.setattr(medgan.training.loop, "train_step", dying_step)
    with pytest.raises(Killed):
        _train(data, out, schedule={**SCHEDULE, "checkpoint_every": 3})
    monkeypatch.setattr(medgan.training.loop, "train_step", real_step)
    last_checkpoint = 3 * ((kill_step - 1) // 3)
    assert load_checkpoint(out / "checkpoint.pt")["step"] == last_checkpoint
    run = _train(data, out, schedule={**SCHEDULE, "checkpoint_every": 3})
    assert run["resumed_from_step"] == last_checkpoint
    _assert_same_state(uninterrupted, out)
    assert len((out / "stats.jsonl").read_text().splitlines()) == 4


# --- faults: a full disk, a truncated checkpoint (issue 18) --------------------------------------


def _dying_at(monkeypatch, call, before=None):
    """Make the ``call``-th training step raise :class:`Killed` (``before()`` runs first, in
    place of dying, if given: the step then runs)."""
    import medgan.training.loop

    real_step, calls = medgan.training.loop.train_step, []

    def step(*args, **kw):
        calls.append(1)
        if len(calls) == call:
            if before is None:
                raise Killed
            before()
        return real_step(*args, **kw)

    monkeypatch.setattr(medgan.training.loop, "train_step", step)
    return lambda: monkeypatch.setattr(medgan.training.loop, "train_step", real_step)


def test_a_full_disk_while_writing_a_checkpoint_keeps_the_last_one(data, uninterrupted,
                                                                   tmp_path, monkeypatch,
                                                                   full_disk):
    from medgan.errors import DiskFullError

    out = tmp_path / "full"
    schedule = {**SCHEDULE, "checkpoint_every": 3}
    kept = {}

    def fill_the_disk():  # in step 6: the log row of step 6 fits, its checkpoint does not
        kept["bytes"] = (out / "checkpoint.pt").read_bytes()
        full_disk.free = 4096

    restore = _dying_at(monkeypatch, 6, before=fill_the_disk)
    with pytest.raises(DiskFullError) as err:
        _train(data, out, schedule=schedule)
    restore()
    assert full_disk.failed and err.value.errno == errno.ENOSPC
    assert str(err.value).startswith(f"{out / 'checkpoint.pt'}: disk full (No space left on "
                                     "device) while writing it; nothing was replaced: the "
                                     "previous checkpoint.pt (if any) is as it was")
    assert (out / "checkpoint.pt").read_bytes() == kept["bytes"]  # step 3's, byte for byte
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 3
    assert sorted(p.name for p in out.iterdir()) == [  # no temporary file left
        "checkpoint.pt", "stats.jsonl.partial"]

    full_disk.free = None  # space freed: the run resumes from step 3 as after a kill
    run = _train(data, out, schedule=schedule)
    assert run["resumed_from_step"] == 3
    _assert_same_state(uninterrupted, out)


def test_a_full_disk_while_logging_keeps_the_last_checkpoint(data, uninterrupted, tmp_path,
                                                             monkeypatch, full_disk):
    from medgan.errors import DiskFullError

    out = tmp_path / "full"
    schedule = {**SCHEDULE, "checkpoint_every": 3}
    restore = _dying_at(monkeypatch, 4, before=lambda: setattr(full_disk, "free", 0))
    with pytest.raises(DiskFullError, match=r"stats\.jsonl\.partial: disk full .* a new run "
                                            "resumes from that checkpoint"):
        _train(data, out, schedule=schedule)
    restore()
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 3
    full_disk.free = None
    assert _train(data, out, schedule=schedule)["resumed_from_step"] == 3
    _assert_same_state(uninterrupted, out)


def _truncate(path, keep):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.mark.parametrize("keep", [0.5, 0.0])  # cut short; empty (a crash lost its content)
def test_a_truncated_checkpoint_is_refused_and_training_resumes_from_the_last_good_one(
        data, uninterrupted, tmp_path, monkeypatch, caplog, keep):
    out, schedule = tmp_path / "cut", {**SCHEDULE, "checkpoint_every": 3}
    restore = _dying_at(monkeypatch, 7)  # checkpoints after steps 3 and 6; killed in step 7
    with pytest.raises(Killed):
        _train(data, out, schedule=schedule)
    restore()
    checkpoint, previous = out / "checkpoint.pt", out / "checkpoint.prev.pt"
    assert load_checkpoint(checkpoint)["step"] == 6 and load_checkpoint(previous)["step"] == 3
    _truncate(checkpoint, keep)
    with pytest.raises(InputError, match="not a readable torch checkpoint") as err:
        load_checkpoint(checkpoint)
    assert err.value.path == str(checkpoint)

    # resumed from step 3, then killed in step 7 again: the truncated file was replaced by the
    # checkpoint of step 6, and the good one of step 3 kept (not the truncated one)
    restore = _dying_at(monkeypatch, 4)
    with caplog.at_level("WARNING", logger="medgan.training.loop"), pytest.raises(Killed):
        _train(data, out, schedule=schedule)
    restore()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and warnings[0].startswith(
        f"{checkpoint}: not a readable torch checkpoint")
    assert warnings[0].endswith(f"resuming from the last good checkpoint instead: {previous} "
                                "(step 3)")
    assert load_checkpoint(checkpoint)["step"] == 6 and load_checkpoint(previous)["step"] == 3

    run = _train(data, out, schedule=schedule)
    assert run["resumed_from_step"] == 6
    _assert_same_state(uninterrupted, out)  # as if nothing had happened
    rows = [json.loads(r) for r in (out / "stats.jsonl").read_text().splitlines()]
    whole = [json.loads(r) for r in (uninterrupted / "stats.jsonl").read_text().splitlines()]
    assert [(r["step"], r["d_loss"], r["g_loss"]) for r in rows] == [
        (w["step"], w["d_loss"], w["g_loss"]) for w in whole]
    assert sorted(p.name for p in out.iterdir()) == [  # the previous one is gone at the end
        "checkpoint.pt", "losses.png", "run.json", "samples.png", "snapshots.jsonl",
        "stats.jsonl"]


def test_a_truncated_checkpoint_resumes_from_the_last_good_one_in_a_resume_dir(
        data, uninterrupted, tmp_path, monkeypatch):
    out, state = tmp_path / "out", tmp_path / "resume"
    schedule = {**SCHEDULE, "checkpoint_every": 2}
    restore = _dying_at(monkeypatch, 5)  # checkpoints after steps 2 and 4
    with pytest.raises(Killed):
        _train(data, out, schedule=schedule, resume_dir=state)
    restore()
    _truncate(state / "checkpoint.pt", 0.3)
    run = _train(data, out, schedule=schedule, resume_dir=state)
    assert run["resumed_from_step"] == 2
    _assert_same_state(uninterrupted, out)
    assert sorted(p.relative_to(state).as_posix() for p in state.rglob("*")) == [
        "finished", "finished/checkpoint.pt", "finished/stats.jsonl"]


def test_a_truncated_checkpoint_without_an_earlier_one_is_refused_naming_it(data, tmp_path,
                                                                           monkeypatch):
    out = tmp_path / "cut"
    restore = _dying_at(monkeypatch, 5)  # one checkpoint, after step 3
    with pytest.raises(Killed):
        _train(data, out, schedule={**SCHEDULE, "checkpoint_every": 3})
    restore()
    assert not (out / "checkpoint.prev.pt").exists()
    _truncate(out / "checkpoint.pt", 0.5)
    with pytest.raises(InputError) as err:
        _train(data, out, schedule={**SCHEDULE, "checkpoint_every": 3})
    assert str(err.value).startswith(f"{out / 'checkpoint.pt'}: not a readable torch "
                                     "checkpoint: truncated or corrupt (")
    assert str(err.value).endswith("delete it or pass resume=False to start afresh")
