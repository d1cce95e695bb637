"""The SLURM preflight (medgan.cluster.slurm_check) on recorded command output; test_slurm.py
runs it against the real cluster."""

from pathlib import Path

import pytest
import yte

from medgan.cluster.slurm_check import (
    Request,
    check_requests,
    check_status_command,
    parse_dry_run,
    parse_gpus,
    parse_minutes,
    parse_sinfo,
    profile_status_command,
)

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "workflow" / "profiles" / "slurm"

DRY_RUN = """\
Job stats:
job          count
---------  -------
train_gan        1

[Mon Nov 30 07:35:44 2026]
rule prepare_dataset:
    input: resources/phantoms/brats
    jobid: 1
    resources: tmpdir=/tmp, disk_mb=1000, disk=1 GB, mem_mb=4000, mem=4 GB, runtime=120
Shell command: None

[Mon Nov 30 07:35:44 2026]
rule train_gan:
    jobid: 0
    wildcards: model=tl_timeout
    threads: 8
    resources: tmpdir=/tmp, mem_mb=32000, mem_mib=30518, runtime=720, gpu=1, slurm_partition=gpu

[Mon Nov 30 07:35:44 2026]
localrule all:
    jobid: 7
    resources: tmpdir=/tmp
"""

SINFO = """\
cpu*|n1|2|22000|(null)|infinite
gpu|g1|8|64000|gpu:a100:2(S:0-1)|2-00:00:00
gpu|g2|16|128000|gpu:4|2-00:00:00
"""


def test_parse_dry_run():
    assert parse_dry_run(DRY_RUN) == [
        Request("prepare_dataset", 1, 4000, 120, None, 0),
        Request("train_gan", 8, 32000, 720, "gpu", 1),
    ]


@pytest.mark.parametrize(
    ("text", "minutes"),
    [
        ("infinite", None),
        ("UNLIMITED", None),
        ("1-00:00:00", 1440),
        ("2:30:00", 150),
        ("45:00", 45),
        ("45:01", 46),
        ("90", 90),
    ],
)
def test_parse_minutes(text, minutes):
    assert parse_minutes(text) == minutes


@pytest.mark.parametrize(
    ("gres", "n"),
    [
        ("(null)", 0),
        ("gpu:4", 4),
        ("gpu:a100:2(S:0-1)", 2),
        ("gpu:a100:2,gpu:v100:1", 3),
        ("nic:1,gpu:1(S:0)", 1),
    ],
)
def test_parse_gpus(gres, n):
    assert parse_gpus(gres) == n


def test_requests_against_partitions():
    parts = parse_sinfo(SINFO)
    assert parts["cpu"].default and parts["gpu"].max_time == 2880
    assert [n.gpus for n in parts["gpu"].nodes] == [2, 4]
    fits = [Request("train_gan", 8, 32000, 720, "gpu", 1), Request("prepare_dataset", 1, 4000)]
    assert check_requests(fits, parts) == []
    problems = check_requests(
        [
            Request("train_gan", 8, 32000, 720, None, 1),  # the default partition has no GPU
            Request("train_gan", 8, 32000, 720, None, 1),  # reported once
            Request("train_encoder", 32, 16000, 60, "gpu", 1),
            Request("model_metrics", 1, 4000, 4000, "gpu", 0),
            Request("tsne", 1, 4000, 60, "debug", 0),
        ],
        parts,
    )
    assert problems == [
        "train_gan asks 8 CPUs / 32000 MB / 1 GPU on partition cpu; its largest node has "
        "2 CPUs / 22000 MB / 0 GPUs",
        "train_encoder asks 32 CPUs / 16000 MB / 1 GPU on partition gpu; its largest node has "
        "16 CPUs / 128000 MB / 4 GPUs",
        "model_metrics asks 4000 min on partition gpu; its time limit is 2880 min",
        "tsne asks for partition debug, which this cluster does not have (partitions: cpu*, gpu)",
    ]


def test_status_command_and_accounting():
    none = {"AccountingStorageType": "accounting_storage/none", "MinJobAge": "300 sec"}
    (line,) = check_status_command(none, "sacct")
    assert "no accounting" in line and "--slurm-status-command squeue" in line
    assert check_status_command(none, None) == [line]
    assert check_status_command(none, "squeue") == []
    dbd = {"AccountingStorageType": "accounting_storage/slurmdbd", "MinJobAge": "30 sec"}
    assert check_status_command(dbd, "sacct") == []
    (short,) = check_status_command({**none, "MinJobAge": "60 sec"}, "squeue")
    assert "MinJobAge=60" in short and ">= 120" in short


def test_shipped_profile_uses_squeue_and_rule_resources(monkeypatch):
    assert profile_status_command(PROFILE, []) == "squeue"
    assert profile_status_command(PROFILE, ["--slurm-status-command", "sacct"]) == "sacct"
    with open(PROFILE / "config.yaml") as fh:
        profile = yte.process_yaml(fh, require_use_yte=True)
    # nothing beyond what a small cluster has: threads and memory are the rules' own
    assert "set-threads" not in profile
    assert all("mem_mb" not in r for r in profile["set-resources"].values())
    assert profile["set-resources"]["train_gan"]["slurm_partition"] == "gpu"
    # a site's partitions, account and GPU type come from the environment
    for key, value in {
        "MEDGAN_SLURM_PARTITION": "short",
        "MEDGAN_SLURM_GPU_PARTITION": "a100q",
        "MEDGAN_SLURM_GPU_MODEL": "a100",
        "MEDGAN_SLURM_ACCOUNT": "lab",
    }.items():
        monkeypatch.setenv(key, value)
    with open(PROFILE / "config.yaml") as fh:
        site = yte.process_yaml(fh, require_use_yte=True)
    assert site["default-resources"]["slurm_partition"] == "short"
    assert site["default-resources"]["slurm_account"] == "lab"
    assert site["set-resources"]["train_gan"] == {
        "runtime": 720,
        "slurm_partition": "a100q",
        "gpu": 1,
        "gpu_model": "a100",
    }
    monkeypatch.setenv("MEDGAN_SLURM_GPUS", "0")
    with open(PROFILE / "config.yaml") as fh:
        cpu_only = yte.process_yaml(fh, require_use_yte=True)
    assert cpu_only["set-resources"]["train_gan"] == {"runtime": 720}
