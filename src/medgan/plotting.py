"""Figures shared by every study: image grids and loss curves (matplotlib, Agg backend)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medgan.atomic import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def display_range(
    images: np.ndarray, *, low: float = 0.5, high: float = 99.5
) -> tuple[float, float]:
    """A robust display window (percentiles) for a stack of images of one channel."""
    lo, hi = np.percentile(np.asarray(images, dtype=np.float64), [low, high])
    if not hi > lo:
        hi = lo + 1.0
    return float(lo), float(hi)


def channel_windows(
    images: np.ndarray, windows: Sequence[tuple[float, float]] | None = None
) -> list[tuple[float, float]]:
    """Display windows of (N, C, H, W) images, one per channel: ``windows`` checked against C,
    or :func:`display_range` of each channel when ``windows`` is None."""
    c = images.shape[1]
    if windows is None:
        return [display_range(images[:, i]) for i in range(c)]
    if len(windows) != c:
        raise ValueError(f"{c} channels but {len(windows)} display windows")
    return [(float(lo), float(hi)) for lo, hi in windows]


def save_image_grid(
    images: np.ndarray,
    path: str | os.PathLike,
    *,
    ncols: int = 8,
    channel_names: Sequence[str] | None = None,
    value_ranges: Sequence[tuple[float, float]] | None = None,
    title: str | None = None,
    row_labels: Sequence[str] | None = None,
    cell_inches: float = 1.2,
    dpi: int = 100,
) -> None:
    """Save ``images`` (N, C, H, W) as a grid, one block of columns per channel.

    Each channel is shown in grey with one display window for all images of that channel
    (``value_ranges[c]`` or robust percentiles), so intensities are comparable across the grid.
    With C channels the grid has ``ncols`` images per row per channel block; a channel block is
    titled with its name.
    """
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4:
        raise ValueError(f"expected (N, C, H, W) images, got shape {images.shape}")
    n, c = images.shape[:2]
    names = list(channel_names) if channel_names is not None else [f"ch{i}" for i in range(c)]
    if len(names) != c:
        raise ValueError(f"{c} channels but {len(names)} channel names")
    ranges = list(value_ranges) if value_ranges is not None else channel_windows(images)
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    plt = _pyplot()
    fig, axes = plt.subplots(
        nrows,
        ncols * c,
        squeeze=False,
        figsize=(cell_inches * ncols * c, cell_inches * nrows + (0.5 if title else 0.2)),
    )
    for ax in axes.ravel():
        ax.axis("off")
    for i in range(n):
        r, col = divmod(i, ncols)
        for ch in range(c):
            ax = axes[r, ch * ncols + col]
            ax.imshow(
                images[i, ch],
                cmap="gray",
                vmin=ranges[ch][0],
                vmax=ranges[ch][1],
                interpolation="nearest",
            )
            if r == 0 and col == 0 and c > 1:
                ax.set_title(names[ch], fontsize=8, loc="left")
            if col == 0 and ch == 0 and row_labels is not None and r < len(row_labels):
                ax.text(
                    -0.08,
                    0.5,
                    row_labels[r],
                    transform=ax.transAxes,
                    ha="right",
                    va="center",
                    fontsize=7,
                )
    fig.tight_layout(pad=0.2)
    if title:
        fig.suptitle(title, fontsize=10)
        fig.subplots_adjust(top=1 - 0.45 / fig.get_figheight())
    save_figure(fig, path, dpi=dpi)


def pick_images(
    data_dir: str | os.PathLike, channels: Sequence[str] | None, n_images: int, *, seed: int = 0
) -> np.ndarray:
    """``n_images`` images of a prepared dataset (``channels`` selected), drawn with ``seed``."""
    from medgan.data.prepared import load_prepared

    ds = load_prepared(data_dir, channels=None if channels is None else list(channels))
    n = ds.images.shape[0]
    idx = np.sort(np.random.default_rng(seed).choice(n, size=min(n, n_images), replace=False))
    return np.asarray(ds.images[idx])


def real_windows(
    data_dir: str | os.PathLike,
    channels: Sequence[str] | None,
    *,
    max_images: int = 2000,
    seed: int = 0,
) -> list[tuple[float, float]]:
    """Display window per channel from a seeded subsample of a prepared dataset's images."""
    return channel_windows(pick_images(data_dir, channels, max_images, seed=seed))


def plot_dataset_preview(
    data_dir: str | os.PathLike, path: str | os.PathLike, *, n_images: int = 8, seed: int = 0
) -> None:
    """A grid of random prepared images, one row per image and one column per channel."""
    import json

    info = json.loads((Path(data_dir) / "dataset.json").read_text())
    images = pick_images(data_dir, None, n_images, seed=seed)
    save_image_grid(
        images,
        path,
        ncols=1,
        channel_names=info["channels"],
        value_ranges=real_windows(data_dir, None, seed=seed),
        title=f"{Path(data_dir).name}: {info['n_images']} images, {info['resolution']} px",
    )


def save_figure(fig, path: str | os.PathLike, *, dpi: int = 100) -> None:
    """Save a matplotlib figure atomically and close it."""
    plt = _pyplot()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)


def read_stats(path: str | os.PathLike) -> list[dict]:
    """Read a ``stats.jsonl`` file (one JSON object per line)."""
    rows = []
    with open(path) as fh:
        for line in fh:
            line = line.strip()
            if line:
                rows.append(json.loads(line))
    return rows


def plot_loss_curves(
    stats_path: str | os.PathLike,
    path: str | os.PathLike,
    *,
    title: str | None = None,
    keys: Sequence[str] | None = None,
    smooth: int = 1,
) -> None:
    """Plot every ``*loss*`` column of ``stats.jsonl`` (or ``keys``) against ``step``."""
    rows = read_stats(stats_path)
    if not rows:
        raise ValueError(f"{stats_path}: no rows")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3))
    _loss_axes(ax, rows, keys=keys, smooth=smooth, title=title)
    fig.tight_layout()
    save_figure(fig, path)


def _loss_axes(ax, rows: list[dict], *, keys: Sequence[str] | None = None, smooth: int = 1,
               title: str | None = None) -> None:
    if keys is None:
        keys = sorted({k for r in rows for k in r if "loss" in k})
    for key in keys:
        pts = [(r["step"], r[key]) for r in rows if key in r and r[key] is not None]
        if not pts:
            continue
        steps, vals = map(np.asarray, zip(*pts, strict=True))
        if smooth > 1 and len(vals) >= smooth:
            vals = np.convolve(vals, np.ones(smooth) / smooth, mode="valid")
            steps = steps[smooth - 1 :]
        ax.plot(steps, vals, label=key, linewidth=1)
    ax.set_xlabel("generator step")
    ax.set_ylabel("loss")
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=9)


# snapshot panels of plot_training_curves: title, metrics (lower / higher is better)
SNAPSHOT_PANELS = [
    ("domain FID (lower is better)", ["domain_fid"]),
    ("domain KID (lower is better)", ["domain_kid_mean"]),
    ("precision / recall / coverage", ["domain_precision", "domain_recall", "domain_coverage"]),
    ("MS-SSIM of pairs (diversity; real pairs dashed)", ["msssim_mean"]),
    ("realism rho (Delplace)", ["rho"]),
]


def plot_training_curves(
    stats_path: str | os.PathLike,
    snapshots_path: str | os.PathLike | None,
    path: str | os.PathLike,
    *,
    title: str | None = None,
) -> None:
    """The loss curves of ``stats.jsonl`` and, beside them, the snapshot metrics of
    ``snapshots.jsonl`` (:mod:`medgan.training.snapshots`; the real-vs-real baseline row
    dashed, the last health verdict in the panel's title); only the losses without snapshots."""
    rows = read_stats(stats_path)
    if not rows:
        raise ValueError(f"{stats_path}: no rows")
    snaps = read_stats(snapshots_path) if snapshots_path and Path(snapshots_path).is_file() else []
    synthetic = [r for r in snaps if r.get("source") == "synthetic"]
    baseline = next((r for r in snaps if r.get("source") == "real_heldout"), {})
    panels = [(t, [k for k in keys if any(_finite(r.get(k)) for r in synthetic)])
              for t, keys in SNAPSHOT_PANELS]
    panels = [(t, keys) for t, keys in panels if keys]
    plt = _pyplot()
    fig, axes = plt.subplots(1, 1 + len(panels), figsize=(5 + 3.2 * len(panels), 3),
                             squeeze=False)
    _loss_axes(axes[0, 0], rows, title=title)
    for ax, (panel_title, keys) in zip(axes[0, 1:], panels, strict=True):
        for i, key in enumerate(keys):
            pts = [(r["step"], r[key]) for r in synthetic if _finite(r.get(key))]
            steps, vals = map(np.asarray, zip(*pts, strict=True))
            color = f"C{i}"
            ax.plot(steps, vals, marker="o", markersize=3, linewidth=1, color=color,
                    label=key.removeprefix("domain_"))
            if _finite(baseline.get(key)):
                ax.axhline(baseline[key], color=color, linestyle="--", linewidth=0.8)
        ax.set_title(panel_title, fontsize=8)
        ax.set_xlabel("generator step")
        if len(keys) > 1:
            ax.legend(fontsize=7)
    if synthetic and synthetic[-1].get("health"):
        fig.suptitle(f"last snapshot (step {synthetic[-1]['step']}): "
                     f"{synthetic[-1]['health']} - {synthetic[-1].get('health_reason', '')}",
                     fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)
