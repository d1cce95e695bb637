"""The trainer's SLURM time-limit logic without a cluster (medgan.training.deadline); the real
cluster runs are in test_slurm.py."""

import pytest
from conftest import noise_dataset

from medgan.training import deadline as dl
from medgan.training import train_gan
from medgan.training.checkpoint import EXIT_INTERRUPTED, TrainingInterrupted, load_checkpoint


class Clock:
    def __init__(self, t=1000.0):
        self.t = t

    def __call__(self):
        return self.t


def test_due_a_margin_before_the_end_and_rereads_a_changed_limit():
    clock, reads, times = Clock(), [], [(0.0, 2000.0)]

    def read():
        reads.append(clock.t)
        return times[-1]

    d = dl.JobDeadline(read, poll_s=60, clock=clock)
    assert not d.due() and d.margin == 100.0  # 5% of a 2000 s limit
    clock.t = 1899.0
    assert not d.due()
    clock.t = 1901.0
    assert d.due()
    times.append((0.0, 1500.0))  # scontrol update ... TimeLimit: seen at the next read
    clock.t = 1000.0
    d.last_read = -1e9
    assert d.due() is False and d.end == 1500.0 and d.margin == 75.0
    clock.t = 1430.0
    assert d.due()


@pytest.mark.parametrize(("limit", "margin"), [(60, 10.0), (3600, 180.0), (86400, 300.0)])
def test_default_margin_is_bounded(limit, margin):
    d = dl.JobDeadline(lambda: (0.0, float(limit)), clock=Clock(0.0))
    d.due()
    assert d.margin == margin


def test_unknown_end_time_is_never_due():
    d = dl.JobDeadline(lambda: None, poll_s=0, clock=Clock(1e12))
    assert not d.due() and not d.due()


def test_from_environment(monkeypatch):
    assert dl.JobDeadline.from_environment({}) is None
    monkeypatch.setattr(dl, "query_job_times", lambda job_id, env: None)  # squeue fails
    env = {
        "SLURM_JOB_ID": "7",
        "SLURM_JOB_END_TIME": "5000",
        "SLURM_JOB_START_TIME": "1000",
        "MEDGAN_STOP_MARGIN_S": "30",
    }
    d = dl.JobDeadline.from_environment(env)
    d.clock = Clock(4969.0)
    assert not d.due() and d.end == 5000.0 and d.margin == 30.0
    d.clock = Clock(4971.0)
    assert d.due()
    with pytest.raises(ValueError, match="MEDGAN_STOP_MARGIN_S"):
        dl.JobDeadline.from_environment({**env, "MEDGAN_STOP_MARGIN_S": "soon"})


def test_squeue_of_an_unknown_job_gives_none(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert dl.query_job_times("123") is None


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return noise_dataset(tmp_path_factory.mktemp("data") / "prepared")


ARGS = {
    "channels": None,
    "resolution": 16,
    "seed": 0,
    "device": "cpu",
    "threads": 1,
    "progress": False,
    "architecture": {"name": "dcgan", "latent_dim": 8, "width": 4, "max_width": 8},
    "loss": {"name": "gan"},
    "optimizer": {"name": "adam"},
    "schedule": {"steps": 6, "batch_size": 4, "log_every": 1, "sample_every": 0},
}


def test_training_stops_at_the_deadline_and_resumes(data, tmp_path, monkeypatch, one_torch_thread):
    whole = tmp_path / "whole"
    train_gan(data, whole, **ARGS)
    out, state = tmp_path / "out", tmp_path / "resume"
    steps = []

    class Due:
        def due(self):
            steps.append(1)
            return len(steps) >= 2  # due after step 2

    monkeypatch.setattr(dl.JobDeadline, "from_environment", classmethod(lambda cls: Due()))
    with pytest.raises(TrainingInterrupted) as err:
        train_gan(data, out, resume_dir=state, **ARGS)
    assert err.value.code == EXIT_INTERRUPTED
    assert load_checkpoint(state / "checkpoint.pt")["step"] == 2
    monkeypatch.setattr(dl.JobDeadline, "from_environment", classmethod(lambda cls: None))
    run = train_gan(data, out, resume_dir=state, **ARGS)
    assert run["resumed_from_step"] == 2
    a, b = load_checkpoint(whole / "checkpoint.pt"), load_checkpoint(out / "checkpoint.pt")
    for key in ("generator", "discriminator"):
        assert all(a[key][k].equal(b[key][k]) for k in a[key])
