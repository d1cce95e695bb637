"""Reading a memory-mapped dataset one batch ahead: the same batches, order and resume."""

import threading

import numpy as np
import pytest
import test_resume
import torch
from test_resume import SCHEDULE, Killed, _assert_same_state, _tensors, _train

import medgan.training.data as training_data
from medgan.training.checkpoint import load_checkpoint
from medgan.training.data import EpochSampler, RealBatches
from medgan.training.distributed import Ranks
from medgan.training.readahead import MemmapBatches, ReadAhead

data, uninterrupted = test_resume.data, test_resume.uninterrupted  # the resume tests' fixtures

# batch sizes that change twice (a progressive stage change) and cross several epochs of 10
SIZES = [4, 4, 4, 4, 3, 3, 3, 3, 3, 4, 4, 10, 10]


@pytest.fixture
def memmap(tmp_path):
    images = np.lib.format.open_memmap(tmp_path / "images.npy", mode="w+", dtype=np.float32,
                                       shape=(13, 2, 4, 4))
    images[:] = np.arange(images.size, dtype=np.float32).reshape(images.shape)
    images.flush()
    return np.load(tmp_path / "images.npy", mmap_mode="r")


def _batches(images, read_ahead, ranks=None, rows=None, labels=None):
    n = len(rows) if rows is not None else len(images)
    sampler = EpochSampler(n, 4, torch.Generator().manual_seed(5))
    return RealBatches(images, rows, sampler, torch.device("cpu"), {}, ranks=ranks,
                       labels=labels, read_ahead=read_ahead)


@pytest.mark.parametrize("ranks", [None, Ranks(rank=1, world_size=2)])
def test_read_ahead_gives_the_synchronous_batches(memmap, monkeypatch, ranks):
    monkeypatch.setattr(training_data, "PRELOAD_BYTES", 0)  # read batches from the memmap
    rows = np.array([12, 0, 3, 5, 7, 1, 2, 9, 11, 10])  # a training split of 10 of the 13 rows
    labels = np.arange(10) % 3
    sizes = SIZES if ranks is None else [s for s in SIZES if s % 2 == 0]
    with _batches(memmap, False, ranks, rows, labels) as sync, \
            _batches(memmap, True, ranks, rows, labels) as ahead:
        assert isinstance(ahead.read, MemmapBatches) and ahead.read.worker is not None
        for size in sizes:
            a, b = sync.next(size), ahead.next(size)
            assert torch.equal(a, b) and torch.equal(sync.labels, ahead.labels)
            assert a.shape[0] == (size if ranks is None else size // 2)
            # the read ahead never moved the sampler: its checkpointed state is the same
            sa, sb = sync.sampler.state_dict(), ahead.sampler.state_dict()
            assert sa["pos"] == sb["pos"] and torch.equal(sa["perm"], sb["perm"])
            assert torch.equal(sync.sampler.generator.get_state(),
                               ahead.sampler.generator.get_state())
        changes = sum(1 for x, y in zip(sizes, sizes[1:], strict=False) if x != y)
        worker = ahead.read.worker
        # every batch but the first and those after a size change was read ahead, also across
        # the epoch boundaries (the next epoch's permutation drawn from a copy of the generator)
        assert (worker.misses, worker.hits) == (1 + changes, len(sizes) - 1 - changes)
        thread = worker._thread
        assert thread.daemon and thread.is_alive()
    assert not thread.is_alive()  # leaving the block stopped it
    assert ahead.next(4).shape[0] > 0  # a closed reader still reads, synchronously


def test_samplers_peek_without_moving():
    from medgan.training.dp import PoissonSampler

    for sampler in (EpochSampler(10, 4, torch.Generator().manual_seed(1)),
                    PoissonSampler(30, 0.1, torch.Generator().manual_seed(1))):
        for _ in range(7):  # across epochs of the epoch sampler
            state = sampler.generator.get_state()
            peeked = sampler.peek(4)
            assert torch.equal(sampler.generator.get_state(), state)
            assert torch.equal(peeked, sampler.next(4))


def test_preloaded_data_reads_nothing_ahead(memmap):
    batches = _batches(np.asarray(memmap), True)  # 13 small images: copied to the device
    assert batches.peek is None and not isinstance(batches.read, MemmapBatches)
    assert batches.next(4).shape == (4, 2, 4, 4)


def test_read_ahead_rows_are_the_memmap_rows(memmap):
    reader = MemmapBatches(memmap, None, torch.device("cpu"))
    idx = torch.tensor([7, 0, 7, 12])
    reader.ahead(idx)
    batch = reader(idx)
    assert reader.worker.hits == 1 and not batch.is_pinned()  # no pinning on a CPU device
    assert np.array_equal(batch.numpy(), memmap[[7, 0, 7, 12]])
    wrong = torch.tensor([1, 2, 3, 4])
    reader.ahead(wrong)
    assert np.array_equal(reader(idx).numpy(), memmap[[7, 0, 7, 12]])  # a wrong guess dropped
    assert reader.worker.misses == 1
    with pytest.raises(IndexError, match="out of bounds"):
        reader(torch.tensor([0, 13]))
    reader.close()
    reader.close()  # idempotent


def test_a_read_error_reaches_the_trainer():
    def read(idx):
        if threading.current_thread() is threading.main_thread():
            return idx.float()
        raise OSError("disk gone")

    worker = ReadAhead(read)
    worker.prefetch(torch.tensor([1, 2]))
    with pytest.raises(OSError, match="disk gone"):
        worker.get(torch.tensor([1, 2]))  # the background read failed: its error, not a hang
    worker.prefetch(torch.tensor([1, 2]))
    assert torch.equal(worker.get(torch.tensor([3])), torch.tensor([3.0]))  # dropped, read now
    worker.close()
    assert not worker._thread.is_alive()


def _record_readers(monkeypatch):
    """Train from the memory map (read ahead); returns the list of the readers made."""
    monkeypatch.setattr(training_data, "PRELOAD_BYTES", 0)
    readers = []

    class Recorded(MemmapBatches):
        def __init__(self, *args, **kw):
            super().__init__(*args, **kw)
            readers.append(self)

    monkeypatch.setattr(training_data, "MemmapBatches", Recorded)
    return readers


def test_memmap_training_equals_preloaded_training(data, uninterrupted, tmp_path, monkeypatch):
    readers = _record_readers(monkeypatch)
    out = tmp_path / "memmap"
    _train(data, out)
    # 7 steps of 1 D step: 7 batches, all but the first read ahead
    assert len(readers) == 1 and (readers[0].worker.misses, readers[0].worker.hits) == (1, 6)
    _assert_same_state(uninterrupted, out)
    a, b = load_checkpoint(uninterrupted / "checkpoint.pt"), load_checkpoint(out / "checkpoint.pt")
    assert a["sampler"]["pos"] == b["sampler"]["pos"]
    assert torch.equal(a["sampler"]["perm"], b["sampler"]["perm"])
    for name in ("data", "noise"):  # the read ahead drew no random number
        assert torch.equal(a["rng"]["generators"][name], b["rng"]["generators"][name])
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])


def test_memmap_resume_after_a_kill_is_exact(data, uninterrupted, tmp_path, monkeypatch):
    import medgan.training.loop

    monkeypatch.setattr(training_data, "PRELOAD_BYTES", 0)
    out, schedule = tmp_path / "killed", {**SCHEDULE, "checkpoint_every": 3}
    real_step, calls = medgan.training.loop.train_step, []

    def dying_step(*args, **kw):
        calls.append(1)
        if len(calls) == 5:  # after the checkpoint of step 3, with a batch read ahead
            raise Killed
        return real_step(*args, **kw)

    monkeypatch.setattr(medgan.training.loop, "train_step", dying_step)
    with pytest.raises(Killed):
        _train(data, out, schedule=schedule)
    monkeypatch.setattr(medgan.training.loop, "train_step", real_step)
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 3
    assert _train(data, out, schedule=schedule)["resumed_from_step"] == 3
    _assert_same_state(uninterrupted, out)  # the preloaded, uninterrupted run's weights
    assert not [t for t in threading.enumerate() if t.name == "medgan-read-ahead"]


def test_progressive_memmap_training_equals_preloaded(tmp_path, monkeypatch):
    """A progressive run changes its batch size (4, then 2 at 16 px): the read-ahead batch of
    the old size is dropped, and the run equals the preloaded one."""
    from test_progressive import SCHEDULE as PG_SCHEDULE
    from test_progressive import _dataset
    from test_progressive import _train as pg_train

    data = _dataset(tmp_path / "prepared", 1)
    schedule = {**PG_SCHEDULE, "steps_per_phase": 1}
    pg_train(data, tmp_path / "preloaded", schedule=schedule)
    readers = _record_readers(monkeypatch)
    pg_train(data, tmp_path / "memmap", schedule=schedule)
    # steps 1-3: 2 D batches of 4 each, steps 4-5: of 2; the first of each size read at once
    assert (readers[0].worker.misses, readers[0].worker.hits) == (2, 8)
    a = load_checkpoint(tmp_path / "preloaded" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "memmap" / "checkpoint.pt")
    assert a["step"] == b["step"] == 5 and a["sampler"]["pos"] == b["sampler"]["pos"]
    for key in ("generator", "discriminator", "generator_ema", "d_optimizer"):
        ta, tb = _tensors(a[key]), _tensors(b[key])
        assert ta.keys() == tb.keys() and ta
        assert not [k for k in ta if not torch.equal(ta[k], tb[k])]
