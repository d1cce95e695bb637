"""Where training runs: the device, and the processes of a data-parallel run.

One process trains on one device unless the process was started by ``torchrun`` (which sets
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous variables): then
:func:`start_processes` joins the process group (NCCL on CUDA, gloo on CPU; once per process)
and every process (rank) trains its shard of each batch with
:class:`~torch.nn.parallel.DistributedDataParallel` (see :mod:`medgan.training.ddp`).

:class:`Ranks` is what the training code knows of the processes: this rank, the world size, which
rows of a global batch are this rank's (:meth:`Ranks.rows`), and the few collective decisions
(stop now, log means). With one process every method is the identity, so single-process runs
draw, compute and write exactly as before.

Sharding: the config's batch size ``B`` is the global batch; every rank draws the same global
batch of indices, latents and per-image random numbers (same seeds, same streams) and keeps its
``B / world_size`` rows. The rows are chosen so that the discriminator's minibatch-stddev groups
(image ``i`` of a batch of ``n`` is in group ``i % (n // g)``) are the same groups as in one
process: the global batch, seen as ``g`` blocks of ``B / g``, gives each rank the same slice of
every block.
"""

from __future__ import annotations

import atexit
import datetime
import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from medgan.models.layers import group_size_for

log = logging.getLogger(__name__)

TIMEOUT = datetime.timedelta(minutes=30)  # a collective waiting longer than this fails


def resolve_device(device: str, local_rank: int | None = None) -> torch.device:
    """``"auto"`` -> cuda if available, else cpu; a CUDA device of a torchrun process is
    ``cuda:LOCAL_RANK`` (one GPU per process)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None and local_rank is not None:
        dev = torch.device("cuda", local_rank)
    return dev


def launched_by_torchrun() -> bool:
    """Whether this process is one of several started by torchrun (``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@dataclass(frozen=True)
class Ranks:
    """The processes of a training run: this one is ``rank`` of ``world_size``.

    ``group_size``: the discriminator's minibatch-stddev group size (1: none), which the batch
    shards keep whole.
    """

    rank: int = 0
    world_size: int = 1
    group_size: int = 1

    @property
    def is_main(self) -> bool:
        """Whether this process writes the run's files (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def local_batch(self, n: int) -> int:
        """This rank's share of a global batch of ``n``."""
        return n // self.world_size

    def check_batch(self, n: int, what: str = "batch size") -> None:
        """``ValueError`` unless a global batch of ``n`` splits evenly over the processes."""
        if n % self.world_size:
            raise ValueError(f"{what} {n} is not divisible by the {self.world_size} processes "
                             "(the config's batch size is the global batch)")
        if self.distributed and self._groups(n) == 1 < group_size_for(n, self.group_size):
            log.warning("%s %d: its minibatch-stddev groups of %d cannot be kept whole on %d "
                        "processes; each process groups its own rows", what, n,
                        group_size_for(n, self.group_size), self.world_size)

    def _groups(self, n: int) -> int:
        """The minibatch-stddev group size that the shards of a batch of ``n`` keep (1: the
        shards are contiguous)."""
        g = group_size_for(n, self.group_size)
        return g if (n // g) % self.world_size == 0 else 1

    def rows(self, n: int) -> torch.Tensor:
        """The rows of a global batch of ``n`` that this rank trains on."""
        g = self._groups(n)
        per = n // g // self.world_size
        blocks = torch.arange(n).reshape(g, n // g)
        return blocks[:, self.rank * per:(self.rank + 1) * per].reshape(-1)

    def take(self, x: torch.Tensor) -> torch.Tensor:
        """This rank's rows of ``x``, a tensor whose first dimension is the global batch."""
        if not self.distributed:
            return x
        return x[self.rows(x.shape[0]).to(x.device)]

    def rand(self, *shape: int, device: torch.device | str | None = None,
             dtype: torch.dtype | None = None) -> torch.Tensor:
        """``torch.rand(shape)`` for this rank's rows of a global draw: ``shape[0]`` is the local
        batch; the numbers are those one process would draw for the global batch."""
        if not self.distributed:
            return torch.rand(*shape, device=device, dtype=dtype)
        full = torch.rand(shape[0] * self.world_size, *shape[1:], device=device, dtype=dtype)
        return self.take(full)

    def std(self, x: torch.Tensor) -> torch.Tensor:
        """``x.std()`` over the global batch (``x``: this rank's rows); not differentiable."""
        if not self.distributed:
            return x.std()
        with torch.no_grad():
            n = torch.tensor(float(x.numel()), device=x.device, dtype=torch.float64)
            total = x.double().sum()
            both = torch.stack([n, total])
            dist.all_reduce(both)
            mean = both[1] / both[0]
            sq = ((x.double() - mean) ** 2).sum()
            dist.all_reduce(sq)
            return torch.sqrt(sq / (both[0] - 1)).to(x.dtype)

    def average(self, x: torch.Tensor) -> torch.Tensor:
        """The mean of tensor ``x`` over processes (not differentiable; a collective)."""
        if not self.distributed:
            return x
        with torch.no_grad():
            out = x.detach().clone()
            dist.all_reduce(out)
            return out / self.world_size

    def any(self, flag: bool) -> bool:
        """True on every process when ``flag`` is true on any of them (a collective: every
        rank calls it at the same point)."""
        if not self.distributed:
            return flag
        t = torch.tensor([int(flag)], device=_collective_device())
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """The mean over processes of each value (same keys on every rank)."""
        if not self.distributed or not values:
            return values
        keys = sorted(values)
        t = torch.tensor([values[k] for k in keys], dtype=torch.float64,
                         device=_collective_device())
        dist.all_reduce(t)
        means = (t / self.world_size).tolist()
        return {k: means[keys.index(k)] for k in values}

    def gather_sums(self, sums: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """Every process's ``sums`` (scalar tensors, the same keys everywhere), by rank."""
        if not self.distributed:
            return [sums]
        keys = sorted(sums)
        local = torch.tensor([float(sums[k]) for k in keys], dtype=torch.float64,
                             device=_collective_device())
        gathered = [torch.empty_like(local) for _ in range(self.world_size)]
        dist.all_gather(gathered, local)
        return [{k: torch.tensor(float(t[i]), dtype=sums[k].dtype)
                 for i, k in enumerate(keys)} for t in gathered]

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def _collective_device() -> torch.device:
    """Where small collective tensors live: the current CUDA device under NCCL, else CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def start_processes(device: str) -> tuple[Ranks, torch.device]:
    """Join torchrun's process group if this process was launched by it (once per process:
    later calls reuse the group, which is left at exit); returns the ranks and this process's
    device."""
    if not launched_by_torchrun():
        return Ranks(), resolve_device(device)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", timeout=TIMEOUT)
        atexit.register(_leave)
    ranks = Ranks(dist.get_rank(), dist.get_world_size())
    log.info("process %d of %d on %s", ranks.rank, ranks.world_size, dev)
    return ranks, dev


def _leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
