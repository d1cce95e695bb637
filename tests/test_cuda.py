"""Training on CUDA: the fast mode, compilation, and DDP over NCCL (skipped without a GPU).

Run by ``benchmarks/gpu_check.sh`` (``pytest -m cuda``). The NCCL test needs two GPUs.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medgan.data.prepared import PreparedDatasetWriter
from medgan.training import load_generator, train_gan
from medgan.training.checkpoint import load_checkpoint

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

ARGS = {"channels": None, "resolution": 16, "seed": 2, "device": "cuda", "progress": False,
        "architecture": {"name": "dcgan", "latent_dim": 8, "width": 8, "max_width": 16},
        "loss": {"name": "wgan_gp", "n_critic": 2}, "optimizer": {"name": "adam"},
        "schedule": {"steps": 6, "batch_size": 8, "log_every": 2, "sample_every": 0,
                     "ema_decay": 0.9}}
EXACT = {"bf16_autocast": False, "channels_last": False, "tf32": False,
         "cudnn_benchmark": False, "compile": False}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("cuda") / "data"
    rng = np.random.default_rng(0)
    with PreparedDatasetWriter(path, channels=["T1"], resolution=16) as w:
        w.append(np.tanh(rng.normal(size=(16, 1, 16, 16))).astype(np.float32),
                 [{"subject": f"s{i}", "slice": i} for i in range(16)])
    return path


@pytest.mark.parametrize("performance", [None, {"compile": True}],
                         ids=["fast", "fast+compile"])
def test_trains_on_cuda_in_fast_mode(data, tmp_path, performance):
    run = train_gan(data, tmp_path / "run", performance=performance, **ARGS)
    assert run["device"].startswith("cuda")
    rows = [json.loads(r) for r in (tmp_path / "run" / "stats.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 6 and all(np.isfinite(r["d_loss"]) for r in rows)
    G, _ = load_generator(tmp_path / "run" / "checkpoint.pt", device="cpu")  # CPU reads it
    assert next(G.parameters()).device.type == "cpu"


def test_nccl_two_processes_train_as_one(data, tmp_path):
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two GPUs")
    one = train_gan(data, tmp_path / "one", performance=EXACT, **ARGS)
    two = train_gan(data, tmp_path / "two", performance=EXACT, processes=2, **ARGS)
    assert two["config"] == one["config"]
    a, b = (load_checkpoint(tmp_path / d / "checkpoint.pt") for d in ("one", "two"))
    for model in ("generator", "discriminator"):
        wa = torch.cat([v.double().flatten() for v in a[model].values() if v.is_floating_point()])
        wb = torch.cat([v.double().flatten() for v in b[model].values() if v.is_floating_point()])
        # summation order only (see tests/test_distributed.py); cuDNN adds its own
        assert (wa - wb).norm() <= 5e-3 * wa.norm(), model


def test_memmap_batches_are_pinned_and_read_ahead(tmp_path, monkeypatch):
    import medgan.training.data as training_data
    from medgan.training.data import EpochSampler, RealBatches

    monkeypatch.setattr(training_data, "PRELOAD_BYTES", 0)  # the memory-map path
    images = np.lib.format.open_memmap(tmp_path / "images.npy", mode="w+", dtype=np.float32,
                                       shape=(10, 1, 8, 8))
    images[:] = np.arange(images.size, dtype=np.float32).reshape(images.shape)
    images.flush()
    images = np.load(tmp_path / "images.npy", mmap_mode="r")
    readers = [RealBatches(images, None, EpochSampler(10, 4, torch.Generator().manual_seed(0)),
                           torch.device("cuda"), {}, read_ahead=ahead) for ahead in (False, True)]
    assert readers[1].read.pin and readers[1].read.host(torch.tensor([1, 2])).is_pinned()
    for size in (4, 4, 4, 3, 3):
        a, b = (r.next(size) for r in readers)
        assert b.is_cuda and torch.equal(a, b)
    assert (readers[1].read.worker.misses, readers[1].read.worker.hits) == (2, 3)
    for r in readers:
        r.close()
