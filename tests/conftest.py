"""Shared fixtures: the repository root and the real sample data of ../shared/data."""

from __future__ import annotations

import builtins
import errno
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def load_benchmark(name):
    """The module of ``benchmarks/<name>.py`` (the benchmarks are scripts, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(args, cwd=REPO, check=True):
    """Run a command of this environment (snakemake, snakefmt, ...); fail with its output."""
    exe = BIN / args[0]
    cmd = [str(exe) if exe.exists() else args[0], *args[1:]]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} failed ({proc.returncode}):\n"
            f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return proc


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The whole DAG of the tiny config (.test/config, the four papers and every analysis) run
    once in a fresh copy of the workflow; shared by the workflow and paper tests."""
    work = workflow_copy(tmp_path_factory.mktemp("workflow"))
    proc = run(["snakemake", "--cores", "2", "all"], cwd=work)
    return work, proc


def workflow_copy(work: Path, config: Path = REPO / ".test" / "config" / "config.yaml") -> Path:
    """The workflow (Snakefile, workflow/, envs/) in ``work`` with ``config`` as its config."""
    work.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "Snakefile", work / "Snakefile")
    shutil.copytree(REPO / "workflow", work / "workflow")
    shutil.copytree(REPO / "envs", work / "envs")
    (work / "config").mkdir()
    shutil.copy(config, work / "config" / "config.yaml")
    return work


def add_truncated_brats(work: Path, name: str = "brats_user") -> str:
    """Two BraTS phantom cases in ``work/resources/<name>`` with the first case's T1 cut in half,
    and a dataset ``name`` of them (brats_tiny's settings) in the workflow's config.
    Returns the truncated file, relative to ``work`` as the job names it."""
    import yaml

    from medgan.data.phantoms import make_phantoms

    source = f"resources/{name}"
    make_phantoms("brats", work / source, n_subjects=2, shape=[32, 32, 24], seed=0)
    bad = sorted((work / source).rglob("*_t1.nii.gz"))[0]
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    config_file = work / "config" / "config.yaml"
    config = yaml.safe_load(config_file.read_text())
    config["datasets"][name] = {**config["datasets"]["brats_tiny"], "path": source,
                                "phantom": False}
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    return bad.relative_to(work).as_posix()


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


def tensors_by_name(obj, prefix=""):
    """Every tensor in a checkpoint-like nest of dicts and lists, by its dotted path."""
    import torch

    if isinstance(obj, torch.Tensor):
        return {prefix: obj}
    items = obj.items() if isinstance(obj, dict) else (
        enumerate(obj) if isinstance(obj, list | tuple) else [])
    out = {}
    for k, v in items:
        out.update(tensors_by_name(v, f"{prefix}.{k}"))
    return out


def noise_dataset(path):
    """A prepared dataset of 8 seeded noise images (1 channel T1, 16 px, one subject each)."""
    import numpy as np

    from medgan.data.prepared import PreparedDatasetWriter

    images = np.random.default_rng(0).normal(size=(8, 1, 16, 16)).astype(np.float32)
    with PreparedDatasetWriter(path, channels=["T1"], resolution=16) as w:
        w.append(images, [{"subject": f"s{i}", "slice": i} for i in range(8)])
    return path


class FullDisk:
    """A disk below ``root`` that holds only ``free`` more bytes (None: no limit yet).

    Every file opened for writing below ``root`` (``open``, ``io.open``, so ``Path.write_text``,
    ``np.save``, ``torch.save`` to a file object, PIL...) writes through a raw file that takes
    bytes from ``free``; the write that finds it empty fails as a full disk does, with
    ``OSError(ENOSPC)``, after writing what fitted (buffered writers see it when they flush,
    as on a real disk). Deleting files gives nothing back. ``failed`` lists the paths whose
    writes failed.
    """

    def __init__(self, root):
        self.root, self.free, self.failed = Path(root).resolve(), None, []

    def take(self, path, n: int) -> int:
        if self.free is None:
            return n
        if self.free == 0 and n > 0:
            self.failed.append(Path(path))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        n = min(n, self.free)
        self.free -= n
        return n

    def below(self, file) -> bool:
        try:
            return Path(os.fspath(file)).resolve().is_relative_to(self.root)
        except TypeError:  # a file descriptor
            return False


class _FullDiskRaw(io.RawIOBase):
    def __init__(self, raw, disk: FullDisk):
        super().__init__()
        self.raw, self.disk = raw, disk

    name = property(lambda self: self.raw.name)
    mode = property(lambda self: self.raw.mode)

    def write(self, b) -> int:
        n = self.disk.take(self.raw.name, len(memoryview(b).cast("B")))
        return self.raw.write(memoryview(b).cast("B")[:n])

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.raw.close()

    def readable(self): return self.raw.readable()  # noqa: E704
    def writable(self): return self.raw.writable()  # noqa: E704
    def seekable(self): return self.raw.seekable()  # noqa: E704
    def fileno(self): return self.raw.fileno()  # noqa: E704
    def readinto(self, b): return self.raw.readinto(b)  # noqa: E704
    def seek(self, pos, whence=0): return self.raw.seek(pos, whence)  # noqa: E704
    def tell(self): return self.raw.tell()  # noqa: E704
    def truncate(self, size=None): return self.raw.truncate(size)  # noqa: E704


@pytest.fixture
def full_disk(tmp_path, monkeypatch):
    """A :class:`FullDisk` below ``tmp_path``; set its ``free`` to fill it."""
    disk, real_open = FullDisk(tmp_path), io.open

    def fake_open(file, mode="r", buffering=-1, encoding=None, errors=None, newline=None,
                  closefd=True, opener=None):
        if not any(c in mode for c in "wax+") or not disk.below(file):
            return real_open(file, mode, buffering, encoding, errors, newline, closefd, opener)
        raw = _FullDiskRaw(real_open(file, mode.replace("t", "").replace("b", "") + "b",
                                     buffering=0, closefd=closefd, opener=opener), disk)
        if buffering == 0:
            return raw
        size = buffering if buffering > 1 else io.DEFAULT_BUFFER_SIZE
        buffered = (io.BufferedRandom if "+" in mode else io.BufferedWriter)(raw, size)
        if "b" in mode:
            return buffered
        return io.TextIOWrapper(buffered, encoding, errors, newline,
                                line_buffering=buffering == 1)

    monkeypatch.setattr(io, "open", fake_open)
    monkeypatch.setattr(builtins, "open", fake_open)
    return disk
