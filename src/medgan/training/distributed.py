"""Where training runs: the device, and (for data-parallel runs) the processes.

:func:`resolve_device` maps ``"auto"`` to CUDA when available. :class:`Ranks` describes the
processes of a run (one, unless launched by ``torchrun``): rank, world size, whether this
process writes files, and the stop decision all processes share.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> cuda if available, else cpu."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass(frozen=True)
class Ranks:
    """The processes of a training run: this one is ``rank`` of ``world_size``."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Whether this process writes the run's files."""
        return self.rank == 0

    def any(self, flag: bool) -> bool:
        """True on every process when ``flag`` is true on any of them."""
        return flag
