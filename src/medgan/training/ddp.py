"""G and D for data-parallel training: synchronised BatchNorm and the DDP wrappers.

BatchNorm over the global batch: torch's :class:`~torch.nn.SyncBatchNorm` runs on CUDA only and
its backward cannot be differentiated again (WGAN-GP and DRAGAN differentiate D's input gradient),
so :func:`sync_batchnorm` replaces every ``BatchNorm2d`` by :class:`GlobalBatchNorm2d`: the
batch mean and variance are sums over all processes taken with :func:`all_reduce_sum`, an
all-reduce whose backward is again an all-reduce, to any order (two passes: the mean, then the
squared deviations), so gradients, gradient penalties and the running statistics are those of the
global batch, as in one process, up to the order of summation. State dict keys are unchanged:
checkpoints load into the ordinary models.

:func:`wrap` puts a model in :class:`~torch.nn.parallel.DistributedDataParallel`
(``find_unused_parameters`` for the progressive models, whose inactive levels get no gradient;
buffers are not re-broadcast before each forward: the synchronised running statistics are
equal on every rank). Layers that draw random numbers in training (Kitchen's noise and
dropout) draw for the global batch and keep this process's rows (:func:`for_processes`), so the
processes do not repeat each other's numbers.
The training step calls the wrapper only for the model it trains: D's step calls the plain G
(under ``no_grad``), G's step the plain D (frozen), so each DDP reducer sees exactly one backward
per forward of its own model.
"""

from __future__ import annotations

import inspect

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from medgan.models.kitchen import GaussianNoise
from medgan.training.distributed import Ranks


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes; the gradient of a sum over processes is the sum of the gradients."""

    @staticmethod
    def forward(ctx: object, x: torch.Tensor) -> torch.Tensor:
        out = x.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> torch.Tensor:
        return _AllReduceSum.apply(grad)  # differentiable again (gradient penalties)


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """``x`` summed over all processes, differentiable to any order."""
    return _AllReduceSum.apply(x)


_DDP_PARAMETERS = inspect.signature(DistributedDataParallel.__init__).parameters


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """``BatchNorm2d`` whose training-mode statistics are those of the batch of all processes
    (equal shards); in eval mode, or in one process, exactly ``BatchNorm2d``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        n = x.numel() // x.shape[1] * dist.get_world_size()
        dims = (0, 2, 3)
        mean = all_reduce_sum(x.sum(dims)) / n
        centred = x - mean[None, :, None, None]
        var = all_reduce_sum(centred.square().sum(dims)) / n
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach(), n)
        y = centred * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, var: torch.Tensor, n: int) -> None:
        self.num_batches_tracked.add_(1)
        momentum = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                    else self.momentum)
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), momentum)
        unbiased = var * (n / max(n - 1, 1))
        self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)


class ShardedGaussianNoise(nn.Module):
    """Kitchen's :class:`~medgan.models.kitchen.GaussianNoise` drawing this process's rows of
    the noise one process would draw for the global batch (not the same numbers on every
    process)."""

    def __init__(self, std: float, ranks: Ranks):
        super().__init__()
        self.std, self.ranks = std, ranks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.std > 0:
            noise = torch.randn(x.shape[0] * self.ranks.world_size, *x.shape[1:],
                                device=x.device, dtype=x.dtype)
            return x + self.ranks.take(noise) * self.std
        return x


class ShardedDropout(nn.Module):
    """Dropout whose mask is this process's rows of a mask drawn for the global batch."""

    def __init__(self, p: float, ranks: Ranks):
        super().__init__()
        self.p, self.ranks = p, ranks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = self.ranks.rand(*x.shape, device=x.device, dtype=x.dtype) >= self.p
        return x * keep / (1.0 - self.p)


def for_processes(module: nn.Module, ranks: Ranks) -> nn.Module:
    """``module`` (in place) as every process of a data-parallel run trains it: BatchNorm
    synchronised (:func:`sync_batchnorm`), noise and dropout layers drawing per global batch."""
    sync_batchnorm(module)
    for parent in list(module.modules()):
        for name, child in parent.named_children():
            if isinstance(child, GaussianNoise):
                setattr(parent, name, ShardedGaussianNoise(child.std, ranks))
            elif type(child) is nn.Dropout:
                setattr(parent, name, ShardedDropout(child.p, ranks))
    return module


def sync_batchnorm(module: nn.Module) -> nn.Module:
    """``module`` with every ``BatchNorm2d`` replaced (in place, sharing its parameters and
    buffers) by :class:`GlobalBatchNorm2d`; returns ``module``."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            new = GlobalBatchNorm2d(child.num_features, eps=child.eps, momentum=child.momentum,
                                    affine=child.affine,
                                    track_running_stats=child.track_running_stats)
            new.weight, new.bias = child.weight, child.bias
            new.running_mean, new.running_var = child.running_mean, child.running_var
            new.num_batches_tracked = child.num_batches_tracked
            new.train(child.training)
            setattr(module, name, new)
        else:
            sync_batchnorm(child)
    return module


def wrap(module: nn.Module, device: torch.device, *, find_unused_parameters: bool
         ) -> DistributedDataParallel:
    """``module`` in DistributedDataParallel on ``device`` (one device per process)."""
    # buffers are not re-broadcast before every forward (torch >= 2.13 renames the switch)
    no_sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in _DDP_PARAMETERS
               else {"broadcast_buffers": False})
    return DistributedDataParallel(
        module, device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=find_unused_parameters, **no_sync)
