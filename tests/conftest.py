"""Shared fixtures: the repository root and the real sample data of ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_root() -> Path:
    """``../shared/data`` beside the checkout, or ``$MEDGAN_SHARED_DATA``."""
    env = os.environ.get("MEDGAN_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


def require_real_data(*parts: str) -> Path:
    """Path to a real sample; skip when absent, fail when MEDGAN_REQUIRE_REAL_DATA=1."""
    path = shared_data_root().joinpath(*parts)
    if not path.exists():
        msg = f"real sample data not found: {path}"
        if os.environ.get("MEDGAN_REQUIRE_REAL_DATA") == "1":
            pytest.fail(msg + " (MEDGAN_REQUIRE_REAL_DATA=1)")
        pytest.skip(msg)
    return path


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module of tiny models: they gain nothing from more, and on a
    shared machine extra threads only wait for each other. Restored after the module."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
