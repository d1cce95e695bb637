"""Use a trained generator: load it from a checkpoint, generate images, write them as files.

:func:`load_generator` reads the generator of a :func:`~medgan.training.loop.train_gan`
checkpoint (the EMA one when kept) and its run's config; :func:`generate_images` /
:func:`generate_from` give ``n`` images of a seed as an array; :func:`sample_images` runs a
generator in eval mode (the loop's sample grid).

Files a user takes away for augmentation: :func:`write_synthetic` draws ``n`` latents from a
generator seeded with ``seed`` (the same latents, hence the same images, as
:func:`generate_images` with that seed) and writes, into ``out_dir``:

* ``nifti/`` (format ``"nifti"``): float32 gzipped NIfTI-1 files, the generator's output values
  unchanged. Layout ``"per_channel"``: one file ``<index>_<channel>.nii.gz`` of shape (H, W, 1)
  per channel per image; layout ``"multichannel"``: one file ``<index>.nii.gz`` of shape
  (H, W, 1, C) per image. Voxel axis 0 is the image row, axis 1 the column. The affine is 1 mm
  isotropic with the axes in LPS order, like BraTS (``diag(-1, -1, 1, 1)``), unless the
  checkpoint's ``config["dataset"]`` records ``affine`` (a 4x4 list, used as is) or
  ``spacing_mm`` (one number or [row, column, slice] spacings, signs as in LPS).
  Files are gzipped with a zero timestamp, so a re-run gives byte-identical files.
* ``png/`` (format ``"png"``): one greyscale PNG ``<index>_<channel>.png`` per channel per image,
  ``uint8`` (default) or ``uint16`` (``png_dtype``). Values are mapped linearly from a display
  window to the full integer range and clipped. The window of each channel is, in order of
  preference: ``config["dataset"]["display_range"]`` (one [low, high] per channel) if the
  checkpoint records it; the real data's [min, max] from ``config["dataset"]["channel_stats"]``
  (recorded by :func:`medgan.training.loop.train_gan`); else the 0.5/99.5 percentiles of that
  channel in
  each generated batch (so then the PNGs depend on ``batch_size``). ``manifest.json`` records the
  windows used.
* ``latents.npy``: the (n, latent_dim) float32 latents; row ``i`` made image ``i``.
* ``manifest.tsv``: one row per image: ``index``, ``seed``, ``latent_index``, ``class`` (a
  class-conditional generator's class of the image, drawn as :func:`generation_labels` does),
  then one column per written file (``nifti_<channel>`` / ``nifti`` for the multichannel
  layout, ``png_<channel>``), paths relative to ``out_dir``.
* ``manifest.json``: checkpoint path and sha256, step, ``generator_weights`` (``ema`` when the
  checkpoint kept an EMA generator, which :func:`load_generator` then uses,
  else
  ``trained``), model config, medgan version, ``n``,
  ``seed``, channel names, formats, layout, affine, PNG windows and dtype.

The directory is written into a temporary sibling and renamed when complete (an existing
``out_dir`` is replaced only then): a failure leaves no partial output.
"""

from __future__ import annotations

import csv
import gzip
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medgan import __version__
from medgan.atomic import atomic_dir, write_json
from medgan.errors import InputError
from medgan.models import build_generator
from medgan.plotting import channel_windows
from medgan.training.checkpoint import file_sha256, load_checkpoint
from medgan.training.distributed import resolve_device
from medgan.training.schedule import draw_latents, latent_distribution, positive_int

FORMATS = ("nifti", "png")
NIFTI_LAYOUTS = ("per_channel", "multichannel")
PNG_DTYPES = {"uint8": np.uint8, "uint16": np.uint16}
LPS_1MM_AFFINE = np.diag([-1.0, -1.0, 1.0, 1.0])


@torch.no_grad()
def sample_images(G: torch.nn.Module, z: torch.Tensor,
                  labels: torch.Tensor | None = None) -> np.ndarray:
    """``G(z)`` (``G(z, labels)`` for a class-conditional G given labels) in eval mode as a
    float32 array; restores G's train/eval mode afterwards."""
    was_training = G.training
    G.eval()
    try:
        return (G(z) if labels is None else G(z, labels)).float().cpu().numpy()
    finally:
        G.train(was_training)


def load_generator(checkpoint_path: str | os.PathLike, *, device: str = "cpu",
                   ema: bool = True) -> tuple[torch.nn.Module, dict]:
    """The generator of a :func:`train_gan` checkpoint, in eval mode, and the run's config.

    With ``ema`` (default) the EMA generator is returned when the run kept one
    (``schedule.ema_decay``), else the trained generator. A class-conditional run's
    (``config["condition"]``) is a :class:`~medgan.models.conditional.ConditionalGenerator`.
    """
    ckpt = load_checkpoint(checkpoint_path)
    config = ckpt["config"]
    try:
        G = build_generator(config["architecture"], channels=len(config["channels"]),
                            resolution=config["resolution"], condition=config.get("condition"))
        weights = ckpt.get("generator_ema") if ema else None
        G.load_state_dict(weights if weights is not None else ckpt["generator"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise InputError(checkpoint_path, f"not a medgan GAN checkpoint ({err})") from err
    return G.to(resolve_device(device)).eval(), config


@torch.no_grad()
def generate_images(checkpoint_path: str | os.PathLike, n: int, *, seed: int = 0,
                    batch_size: int = 256, device: str = "cpu") -> np.ndarray:
    """``n`` images (n, C, H, W) float32 from a checkpoint's generator in eval mode.

    The latents are drawn at once from a generator seeded with ``seed``, from the run's
    ``schedule.latent_distribution`` (:func:`latent_distribution`), so the result depends on
    ``seed`` only, not on ``batch_size``. Eval mode uses BatchNorm's running statistics
    (momentum 0.1, updated on every G forward in training, i.e. ``n_critic + 1`` times per
    step); on synthetic data, eval-mode samples matched train-mode (batch-statistics) samples of
    the same latents closely from the first few hundred steps on.
    """
    G, config = load_generator(checkpoint_path, device=device)
    return generate_from(G, config, n, seed=seed, batch_size=batch_size)


def generation_labels(config: dict[str, Any], n: int, *, seed: int = 0,
                      labels: Any = None) -> torch.Tensor | None:
    """The class labels of ``n`` images of a class-conditional run (None for an unconditional
    one): ``labels`` (class indices) when given, else drawn with ``seed`` from the classes'
    frequencies among the training images (``condition.class_counts``)."""
    condition = config.get("condition")
    if not condition:
        if labels is not None:
            raise ValueError("labels given for a generator that is not class-conditional")
        return None
    n_classes = len(condition["classes"])
    if labels is not None:
        labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        if labels.shape != (n,) or (n and (labels.min() < 0 or labels.max() >= n_classes)):
            raise ValueError(f"labels must be {n} class indices in [0, {n_classes}), got shape "
                             f"{tuple(labels.shape)}")
        return labels
    counts = torch.as_tensor(condition.get("class_counts") or [1] * n_classes,
                             dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed + 1)  # not the latents' stream
    return torch.multinomial(counts, n, replacement=True, generator=gen) if n else \
        torch.zeros(0, dtype=torch.long)


@torch.no_grad()
def generate_from(G: torch.nn.Module, config: dict[str, Any], n: int, *, seed: int = 0,
                  batch_size: int = 256, labels: Any = None) -> np.ndarray:
    """:func:`generate_images` for a generator already loaded by :func:`load_generator`
    (``config``: the run's config it returned). A class-conditional generator makes images of
    ``labels`` (class indices, see :func:`generation_labels`); the latents are the same."""
    positive_int(n, "n", minimum=0)
    positive_int(batch_size, "batch_size")
    z = draw_latents(n, G.latent_dim, distribution=latent_distribution(config),
                     generator=torch.Generator().manual_seed(seed))
    y = generation_labels(config, n, seed=seed, labels=labels)
    res = getattr(G, "current_resolution", config["resolution"])  # pggan: its saved stage
    out = np.empty((n, len(config["channels"]), res, res), dtype=np.float32)
    dev = next(G.parameters()).device
    for i in range(0, n, batch_size):
        zb = z[i:i + batch_size].to(dev)
        images = G(zb) if y is None else G(zb, y[i:i + batch_size].to(dev))
        out[i:i + batch_size] = images.float().cpu().numpy()
    return out


def _safe_name(channel: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(channel)) or "channel"


def nifti_affine(dataset: dict[str, Any]) -> np.ndarray:
    """The 4x4 affine for synthetic images of a dataset summary (see the module docstring)."""
    if dataset.get("affine") is not None:
        affine = np.asarray(dataset["affine"], dtype=np.float64)
        if affine.shape != (4, 4):
            raise ValueError(f"dataset affine must be 4x4, got shape {affine.shape}")
        return affine
    spacing = dataset.get("spacing_mm")
    if spacing is None:
        return LPS_1MM_AFFINE.copy()
    spacing = np.broadcast_to(np.asarray(spacing, dtype=np.float64), (3,))
    return np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])


def png_windows(dataset: dict[str, Any],
                channels: Sequence[str]) -> list[tuple[float, float]] | None:
    """Per-channel display windows recorded in a checkpoint's dataset summary, or ``None``."""
    recorded = dataset.get("display_range")
    if recorded is not None and len(recorded) == len(channels):
        return [(float(lo), float(hi)) for lo, hi in recorded]
    stats = dataset.get("channel_stats") or {}
    if all(c in stats and "min" in stats[c] and "max" in stats[c] for c in channels):
        windows = []
        for c in channels:
            lo, hi = float(stats[c]["min"]), float(stats[c]["max"])
            windows.append((lo, hi if hi > lo else lo + 1.0))
        return windows
    return None


def to_png_array(image: np.ndarray, window: tuple[float, float], dtype: type) -> np.ndarray:
    """``image`` mapped linearly from ``window`` to the full range of ``dtype``, clipped."""
    lo, hi = window
    top = np.iinfo(dtype).max
    scaled = (np.asarray(image, dtype=np.float64) - lo) / (hi - lo)
    return np.round(np.clip(scaled, 0.0, 1.0) * top).astype(dtype)


def _write_nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> None:
    import nibabel as nib

    img = nib.Nifti1Image(np.ascontiguousarray(data, dtype=np.float32), affine)
    img.header.set_xyzt_units("mm")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    path.write_bytes(gzip.compress(img.to_bytes(), compresslevel=6, mtime=0))


def _write_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(array).save(path, format="PNG")


def _check_synthetic_args(*, n: int, seed: int, batch_size: int, formats: Sequence[str],
                          nifti_layout: str, png_dtype: str) -> list[str]:
    """``ValueError`` for a bad argument of :func:`write_synthetic`; the formats, once each."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    formats = list(dict.fromkeys(formats))
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ValueError(f"formats must be a non-empty subset of {list(FORMATS)}, got {formats}")
    if nifti_layout not in NIFTI_LAYOUTS:
        raise ValueError(f"nifti_layout must be one of {list(NIFTI_LAYOUTS)}, "
                         f"got {nifti_layout!r}")
    if png_dtype not in PNG_DTYPES:
        raise ValueError(f"png_dtype must be one of {list(PNG_DTYPES)}, got {png_dtype!r}")
    return formats


def _write_nifti_files(tmp: Path, stem: str, image: np.ndarray, affine: np.ndarray, *,
                       layout: str, channels: list[str], names: list[str]) -> dict[str, str]:
    """The NIfTI file(s) of one image (C, H, W); their manifest columns."""
    if layout == "multichannel":
        rel = f"nifti/{stem}.nii.gz"
        _write_nifti(tmp / rel, np.transpose(image, (1, 2, 0))[:, :, None, :], affine)  # HW1C
        return {"nifti": rel}
    row = {}
    for c, name in enumerate(names):
        rel = f"nifti/{stem}_{name}.nii.gz"
        _write_nifti(tmp / rel, image[c][:, :, None], affine)
        row[f"nifti_{channels[c]}"] = rel
    return row


def _write_png_files(tmp: Path, stem: str, image: np.ndarray,
                     windows: Sequence[tuple[float, float]], dtype: type, *,
                     channels: list[str], names: list[str]) -> dict[str, str]:
    """One PNG per channel of one image (C, H, W); their manifest columns."""
    row = {}
    for c, name in enumerate(names):
        rel = f"png/{stem}_{name}.png"
        _write_png(tmp / rel, to_png_array(image[c], windows[c], dtype))
        row[f"png_{channels[c]}"] = rel
    return row


def write_synthetic(checkpoint: str | os.PathLike, out_dir: str | os.PathLike, *, n: int,
                    seed: int = 0, formats: Sequence[str] = FORMATS,
                    nifti_layout: str = "per_channel", png_dtype: str = "uint8",
                    batch_size: int = 256, device: str = "cpu") -> dict[str, Any]:
    """Write ``n`` synthetic images of the generator in ``checkpoint`` to ``out_dir``.

    See the module docstring for the files. Returns the ``manifest.json`` content. A missing or
    unreadable checkpoint raises :class:`InputError` before anything is written.
    """
    formats = _check_synthetic_args(n=n, seed=seed, batch_size=batch_size, formats=formats,
                                    nifti_layout=nifti_layout, png_dtype=png_dtype)

    checkpoint = Path(checkpoint)
    G, config = load_generator(checkpoint, device=device)  # InputError before any output
    ckpt = load_checkpoint(checkpoint)
    weights = "ema" if ckpt.get("generator_ema") is not None else "trained"
    step = int(ckpt["step"])
    del ckpt
    channels = [str(c) for c in config["channels"]]
    names = [_safe_name(c) for c in channels]
    if len(set(names)) != len(names):
        names = [f"c{i}_{name}" for i, name in enumerate(names)]
    dataset = config.get("dataset") or {}
    affine = nifti_affine(dataset)
    windows = png_windows(dataset, channels)
    dtype = PNG_DTYPES[png_dtype]
    dev = next(G.parameters()).device
    z = draw_latents(n, G.latent_dim, distribution=latent_distribution(config),
                     generator=torch.Generator().manual_seed(seed))
    y = generation_labels(config, n, seed=seed)  # class-conditional: the class of each image
    width = max(6, len(str(n - 1)))

    rows: list[dict[str, Any]] = []
    used_windows: list[list[list[float]]] = []
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        for fmt in formats:
            (tmp / fmt).mkdir()
        np.save(tmp / "latents.npy", z.numpy().astype(np.float32))
        for start in range(0, n, batch_size):
            with torch.no_grad():
                zb = z[start:start + batch_size].to(dev)
                batch = (G(zb) if y is None else G(zb, y[start:start + batch_size].to(dev))
                         ).float().cpu().numpy()
            if "png" in formats:
                batch_windows = windows or channel_windows(batch)
                used_windows.append([list(w) for w in batch_windows])
            for j, image in enumerate(batch):
                index = start + j
                row: dict[str, Any] = {"index": index, "seed": seed, "latent_index": index}
                if y is not None:
                    row["class"] = config["condition"]["classes"][int(y[index])]
                if "nifti" in formats:
                    row |= _write_nifti_files(tmp, f"{index:0{width}d}", image, affine,
                                              layout=nifti_layout, channels=channels,
                                              names=names)
                if "png" in formats:
                    row |= _write_png_files(tmp, f"{index:0{width}d}", image, batch_windows,
                                            dtype, channels=channels, names=names)
                rows.append(row)

        _write_manifest_tsv(tmp / "manifest.tsv", rows)
        manifest = {
            "checkpoint": str(checkpoint.resolve()),
            "checkpoint_sha256": file_sha256(checkpoint),
            "step": step, "generator_weights": weights,
            "medgan_version": __version__,
            "n": n, "seed": seed, "channels": channels,
            "latent_dim": int(G.latent_dim), "resolution": config.get("resolution"),
            "formats": formats,
            **_format_fields(formats, nifti_layout=nifti_layout, affine=affine,
                             png_dtype=png_dtype, windows=windows, used_windows=used_windows),
            "latents": "latents.npy",
            "model_config": config,
            "files": ["manifest.tsv", "manifest.json", "latents.npy", *formats],
        }
        write_json(tmp / "manifest.json", manifest)
    return manifest


def _write_manifest_tsv(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter="\t",
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def _format_fields(formats: Sequence[str], *, nifti_layout: str, affine: np.ndarray,
                   png_dtype: str, windows, used_windows: list) -> dict[str, Any]:
    """The manifest's NIfTI and PNG fields (None for a format not written): the PNG windows
    are the checkpoint's where it has them, else each batch's percentiles as used."""
    nifti, png = "nifti" in formats, "png" in formats
    return {
        "nifti_layout": nifti_layout if nifti else None,
        "nifti_affine": affine.tolist() if nifti else None,
        "nifti_dtype": "float32" if nifti else None,
        "png_dtype": png_dtype if png else None,
        "png_window_source": (None if not png else
                              "checkpoint" if windows else "batch_percentiles"),
        "png_windows": (None if not png else
                        [list(w) for w in windows] if windows else used_windows),
    }


def read_manifest_rows(out_dir: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of ``<out_dir>/manifest.tsv`` as dicts of strings."""
    path = Path(out_dir) / "manifest.tsv"
    if not path.is_file():
        raise InputError(path, "manifest not found")
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))
