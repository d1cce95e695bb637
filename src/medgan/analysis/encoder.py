"""An encoder that inverts a trained generator (Beers et al. 2018, section 4.3, Fig. 4).

Beers: "a neural network ... with the same network architecture as the discriminator, with the
exception of terminating in a 128-vector output with a mean-squared error cost function ... fed
synthetic images generated from the already-trained PGGAN, and trained to predict the latent
vector which generated that synthetic image ... non-progressive ... 20,000 iterations under the
same training conditions".

:func:`build_encoder` is the architecture's discriminator with its final one-output layer replaced
by a ``latent_dim``-output layer of the same kind (``Conv2d(c, 1)`` -> ``Conv2d(c, latent_dim)``,
``Linear(n, 1)`` -> ``Linear(n, latent_dim)``, equalized-LR layers for ``pggan``), initialised as
that discriminator initialises its layers. The PGGAN encoder works at the full resolution (alpha
1). One deliberate change: a minibatch-stddev layer (``dcgan_delplace``, ``pggan``, optionally
``srresnet``) is replaced by a map of zeros of the same shape, so an image's code does not depend
on the other images of its batch (``minibatch_stddev=True`` keeps the layer as in D).

:func:`train_encoder` trains it on ``(G(z), z)`` pairs: G frozen in eval mode, ``z`` drawn from the
run's latent distribution, loss ``mean((E(G(z)) - z)**2)``. The defaults are the GAN's own training
conditions: its batch size (PGGAN: the batch size at the full resolution) and its discriminator's
optimizer (``lr_d`` where given). :func:`encode`, :func:`reconstruct`,
:func:`reconstruction_table` and :func:`plot_reconstructions` (Beers Fig. 4) use a trained one.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from medgan import __version__
from medgan.errors import InputError
from medgan.models import build_discriminator, resolved_config
from medgan.models import dcgan as dcgan_models
from medgan.models import pggan as pggan_models
from medgan.models import srresnet as srresnet_models
from medgan.models import stylegan2 as stylegan2_models
from medgan.models.layers import MinibatchStddev
from medgan.plotting import _pyplot, channel_windows, save_figure
from medgan.training.checkpoint import file_sha256, load_checkpoint, save_checkpoint
from medgan.training.distributed import resolve_device
from medgan.training.generate import load_generator
from medgan.training.schedule import build_optimizer, draw_latents, latent_distribution

log = logging.getLogger(__name__)

CHECKPOINT_KIND = "encoder"
CHECKPOINT_FORMAT = "medgan.analysis.encoder/1"
# how each architecture initialises its layers (others: PyTorch's default initialisation)
LAYER_INIT = {"dcgan": dcgan_models.init_weights, "dcgan_delplace": dcgan_models.init_weights,
              "kitchen": dcgan_models.init_weights, "srresnet": srresnet_models.he_init}
OUTPUT_LAYERS = (nn.Conv2d, nn.Linear, pggan_models.EqualizedConv2d, pggan_models.EqualizedLinear,
                 stylegan2_models.EqualLinear)


class ZeroFeatureMap(nn.Module):
    """(N, C, H, W) -> (N, C + 1, H, W) with a map of zeros: a per-image stand-in for
    :class:`~medgan.models.layers.MinibatchStddev` that keeps the next layer's shape."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, x.new_zeros(x.shape[0], 1, *x.shape[2:])], dim=1)


class LatentEncoder(nn.Module):
    """Images (N, channels, resolution, resolution) -> latent codes (N, latent_dim)."""

    def __init__(self, body: nn.Module, *, channels: int, resolution: int, latent_dim: int):
        super().__init__()
        self.body = body
        self.channels, self.resolution, self.latent_dim = channels, resolution, latent_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dcgan_models.assert_shape(x, (None, self.channels, self.resolution, self.resolution),
                                  "LatentEncoder input")
        if isinstance(self.body, pggan_models.PGGANDiscriminator):
            codes = _pggan_features(self.body, x)
        elif isinstance(self.body, stylegan2_models.StyleGAN2Discriminator):
            codes = _stylegan2_features(self.body, x)
        else:
            codes = self.body.main(x)
        codes = codes.reshape(x.shape[0], self.latent_dim)
        return codes


def _pggan_features(D: pggan_models.PGGANDiscriminator, x: torch.Tensor) -> torch.Tensor:
    """The PGGAN discriminator's forward pass at full resolution (alpha 1) without its final
    reshape to (N,), so that its last layer may have ``latent_dim`` outputs."""
    h = D._from_rgb(D.max_level, x)
    for i in range(D.max_level, 0, -1):
        h = D._block(i, h)
    h = torch.nn.functional.leaky_relu(D.conv4(D.mbstd(h)), pggan_models.LEAKY_SLOPE)
    h = torch.nn.functional.leaky_relu(D.dense4(h.flatten(1)), pggan_models.LEAKY_SLOPE)
    return D.logit(h)


def _stylegan2_features(D: stylegan2_models.StyleGAN2Discriminator,
                        x: torch.Tensor) -> torch.Tensor:
    """The StyleGAN2 discriminator's forward pass without its final squeeze to (N,)."""
    h = D.conv(D.mbstd(D.blocks(D.from_rgb(x))))
    return D.out(D.dense(h.flatten(1)))


def _widened(layer: nn.Module, latent_dim: int) -> nn.Module:
    """A layer like ``layer`` (one output) with ``latent_dim`` outputs."""
    if isinstance(layer, stylegan2_models.EqualLinear):
        return stylegan2_models.EqualLinear(layer.weight.shape[1], latent_dim)
    if isinstance(layer, pggan_models.EqualizedLinear):
        f_in = layer.weight.shape[1]
        gain = layer.weight_scale * f_in**0.5
        return pggan_models.EqualizedLinear(f_in, latent_dim, gain=gain)
    if isinstance(layer, pggan_models.EqualizedConv2d):
        c_in, k = layer.weight.shape[1], layer.weight.shape[-1]
        return pggan_models.EqualizedConv2d(c_in, latent_dim, k,
                                            gain=layer.weight_scale * (c_in * k * k)**0.5)
    if isinstance(layer, nn.Conv2d):
        return nn.Conv2d(layer.in_channels, latent_dim, layer.kernel_size, layer.stride,
                         layer.padding, layer.dilation, bias=layer.bias is not None)
    if isinstance(layer, nn.Linear):
        return nn.Linear(layer.in_features, latent_dim, bias=layer.bias is not None)
    raise TypeError(f"cannot widen a {type(layer).__name__}")


def _output_layer(D: nn.Module) -> tuple[nn.Module, str]:
    """The parent module and attribute name of D's last one-output layer."""
    found = None
    for parent in D.modules():
        for name, child in parent.named_children():
            if isinstance(child, OUTPUT_LAYERS) and child.weight.shape[0] == 1:
                found = (parent, name)
    if found is None:
        raise ValueError(f"{type(D).__name__} has no one-output layer to replace")
    return found


def build_encoder(arch: dict[str, Any], *, channels: int, resolution: int, latent_dim: int,
                  minibatch_stddev: bool = False) -> LatentEncoder:
    """The discriminator of ``arch`` ending in ``latent_dim`` outputs instead of one (Beers).

    The last one-output layer (conv or dense, equalized-LR for ``pggan``) is replaced by the same
    kind of layer with ``latent_dim`` outputs, initialised as the architecture initialises its
    layers. Unless ``minibatch_stddev``, minibatch-stddev layers become :class:`ZeroFeatureMap`.
    """
    if isinstance(latent_dim, bool) or not isinstance(latent_dim, int) or latent_dim < 1:
        raise ValueError(f"latent_dim must be a positive integer, got {latent_dim!r}")
    D = build_discriminator(arch, channels=channels, resolution=resolution)
    hooked = (pggan_models.PGGANDiscriminator, stylegan2_models.StyleGAN2Discriminator)
    if not (isinstance(D, hooked) or hasattr(D, "main")):
        raise ValueError(f"architecture {arch['name']!r}: no encoder hook for "
                         f"{type(D).__name__} (add one to medgan.analysis.encoder)")
    if isinstance(D, pggan_models.PGGANDiscriminator):
        D.set_stage(D.max_level, 1.0)
    parent, name = _output_layer(D)
    new = _widened(getattr(parent, name), latent_dim)
    init = LAYER_INIT.get(arch["name"])
    if init is not None:
        init(new)
    setattr(parent, name, new)
    if not minibatch_stddev:
        for module in list(D.modules()):
            for child_name, child in module.named_children():
                if isinstance(child, MinibatchStddev):
                    setattr(module, child_name, ZeroFeatureMap())
    return LatentEncoder(D, channels=channels, resolution=resolution, latent_dim=latent_dim)


# --- training ------------------------------------------------------------------------------------

def default_batch_size(config: dict[str, Any]) -> int:
    """The batch size a GAN run trained with at its full resolution (Beers: "the same training
    conditions")."""
    schedule = config.get("schedule") or {}
    if "batch_size" in schedule:
        return int(schedule["batch_size"])
    if "batch_sizes" in schedule:
        return pggan_models.per_resolution(schedule["batch_sizes"], config["resolution"],
                                           "schedule batch_sizes")
    raise ValueError("the GAN config records no batch size; pass batch_size")


def train_encoder(generator_checkpoint: str | os.PathLike, out_path: str | os.PathLike, *,
                  steps: int = 20000, batch_size: int | None = None,
                  optimizer: dict[str, Any] | None = None, seed: int = 0, device: str = "cpu",
                  log_every: int = 50, stats_path: str | os.PathLike | None = None,
                  minibatch_stddev: bool = False, threads: int | None = None,
                  progress: bool = True) -> dict[str, Any]:
    """Train an encoder E to invert the generator of ``generator_checkpoint`` (Beers 2018).

    Each step draws ``z`` (batch_size, latent_dim) from the run's latent distribution, makes
    ``x = G(z)`` with G frozen in eval mode (EMA weights where kept) and minimises
    ``MSE(E(x), z) = mean((E(x) - z)**2)``. Writes ``out_path`` (a plain-dict checkpoint, kind
    ``"encoder"``, atomically) and ``stats_path`` (default ``<out stem>_stats.jsonl``: one line
    ``{"step", "loss"}`` per ``log_every`` steps, the mean loss over those steps). Returns a summary
    dict. ``seed`` seeds the encoder's initialisation and the latents: on CPU the same seed and
    thread count give identical weights. ``threads`` sets torch's CPU thread count when given.
    """
    for value, what in ((steps, "steps"), (log_every, "log_every")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{what} must be a positive integer, got {value!r}")
    if threads is not None:
        torch.set_num_threads(threads)
    out_path = Path(out_path)
    stats_path = (out_path.with_name(f"{out_path.stem}_stats.jsonl") if stats_path is None
                  else Path(stats_path))
    dev = resolve_device(device)
    G, config = _frozen_generator(generator_checkpoint, dev)
    ckpt = load_checkpoint(generator_checkpoint)
    resolution, channels = int(config["resolution"]), list(config["channels"])
    batch_size = default_batch_size(config) if batch_size is None else batch_size
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    opt_cfg = copy.deepcopy(config["optimizer"] if optimizer is None else optimizer)
    arch = resolved_config(config["architecture"])
    distribution = latent_distribution(config)

    torch.manual_seed(seed)
    E = build_encoder(arch, channels=len(channels), resolution=resolution,
                      latent_dim=G.latent_dim, minibatch_stddev=minibatch_stddev).to(dev)
    E.train()
    opt = build_optimizer(E.parameters(), opt_cfg, model="d")
    latent_gen = torch.Generator(device=dev).manual_seed(seed)

    partial = stats_path.with_name(stats_path.name + ".partial")
    partial.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    history = _fit(E, G, opt, partial, steps=steps, batch_size=batch_size,
                   distribution=distribution, generator=latent_gen, log_every=log_every,
                   name=out_path, progress=progress)
    train_s = time.perf_counter() - t0

    record = {"path": str(generator_checkpoint), "sha256": file_sha256(generator_checkpoint),
              "step": int(ckpt["step"])}
    settings = {"steps": steps, "batch_size": batch_size, "optimizer": opt_cfg, "seed": seed,
                "log_every": log_every, "minibatch_stddev": minibatch_stddev}
    save_checkpoint(out_path, {
        "kind": CHECKPOINT_KIND, "format": CHECKPOINT_FORMAT,
        "encoder": {k: v.cpu() if torch.is_tensor(v) else v for k, v in E.state_dict().items()},
        "architecture": arch, "latent_dim": int(G.latent_dim), "channels": channels,
        "resolution": resolution, "latent_distribution": distribution,
        "generator_checkpoint": record, "config": settings, "step": steps, "history": history,
        "medgan_version": __version__, "torch_version": str(torch.__version__),
    })
    os.replace(partial, stats_path)
    return {"path": str(out_path), "stats": str(stats_path), "final_loss": history[-1]["loss"],
            "latent_variance": 1.0 if distribution == "normal" else 1.0 / 3.0,
            "generator_checkpoint": record, "config": settings, "train_s": train_s,
            "s_per_step": train_s / steps, "threads": torch.get_num_threads(), "device": str(dev)}


def _frozen_generator(checkpoint: str | os.PathLike, dev: torch.device):
    """The generator of ``checkpoint`` without gradients, at its full resolution."""
    G, config = load_generator(checkpoint, device=str(dev))
    resolution = int(config["resolution"])
    if getattr(G, "current_resolution", resolution) != resolution:
        raise InputError(checkpoint, f"generator is at {G.current_resolution} px, not its full "
                                     f"resolution {resolution} (unfinished progressive run)")
    for p in G.parameters():
        p.requires_grad_(False)
    return G, config


def _fit(E: nn.Module, G: nn.Module, opt: torch.optim.Optimizer, partial: Path, *, steps: int,
         batch_size: int, distribution: str, generator: torch.Generator, log_every: int,
         name: Path, progress: bool) -> list[dict[str, Any]]:
    """The training loop of :func:`train_encoder`; the log rows, also written to ``partial``."""
    dev = next(E.parameters()).device
    history: list[dict[str, Any]] = []
    running, n_running = torch.zeros((), device=dev), 0
    with open(partial, "w") as fh:
        for step in tqdm(range(1, steps + 1), desc=f"encoder {name.parent.name}",
                         unit="step", disable=not progress, mininterval=1.0):
            z = draw_latents(batch_size, G.latent_dim, distribution=distribution,
                             generator=generator, device=dev)
            with torch.no_grad():
                x = G(z)
            loss = torch.mean((E(x) - z) ** 2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            running += loss.detach()
            n_running += 1
            if step % log_every == 0 or step == steps:
                row = {"step": step, "loss": float(running) / n_running}
                if not np.isfinite(row["loss"]):
                    raise FloatingPointError(f"{name}: encoder training diverged at step "
                                             f"{step}")
                history.append(row)
                fh.write(json.dumps(row) + "\n")
                fh.flush()
                running, n_running = torch.zeros((), device=dev), 0
    return history


def load_encoder(path: str | os.PathLike, *, device: str = "cpu") -> tuple[LatentEncoder, dict]:
    """The encoder of a :func:`train_encoder` checkpoint in eval mode, and the checkpoint's other
    entries (architecture, latent_dim, channels, resolution, generator_checkpoint, history, ...).
    """
    ckpt = load_checkpoint(path, required=())
    if ckpt.get("kind") != CHECKPOINT_KIND:
        found = ckpt.get("kind") or ("a GAN checkpoint" if "discriminator" in ckpt else "none")
        raise InputError(path, f"not an encoder checkpoint (kind: {found})")
    try:
        E = build_encoder(ckpt["architecture"], channels=len(ckpt["channels"]),
                          resolution=int(ckpt["resolution"]), latent_dim=int(ckpt["latent_dim"]),
                          minibatch_stddev=bool(ckpt["config"]["minibatch_stddev"]))
        E.load_state_dict(ckpt["encoder"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise InputError(path, f"broken encoder checkpoint ({err})") from err
    info = {k: v for k, v in ckpt.items() if k != "encoder"}
    return E.to(resolve_device(device)).eval(), info


# --- using a trained encoder --------------------------------------------------------------------

def _check_images(images: Any, channels: int, resolution: int, what: str) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1:] != (channels, resolution, resolution):
        raise ValueError(f"{what}: expected images (N, {channels}, {resolution}, {resolution}), "
                         f"got shape {images.shape}")
    return images


@torch.no_grad()
def encode(encoder: LatentEncoder, images: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
    """Latent codes ``E(x)`` (N, latent_dim) float32 of images (N, C, H, W), E in eval mode."""
    images = _check_images(images, encoder.channels, encoder.resolution, "encode")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    was_training = encoder.training
    encoder.eval()
    dev = next(encoder.parameters()).device
    out = np.empty((images.shape[0], encoder.latent_dim), dtype=np.float32)
    try:
        for i in range(0, images.shape[0], batch_size):
            batch = torch.from_numpy(np.asarray(images[i:i + batch_size], dtype=np.float32))
            out[i:i + batch_size] = encoder(batch.to(dev)).float().cpu().numpy()
    finally:
        encoder.train(was_training)
    return out


@torch.no_grad()
def reconstruct(generator: nn.Module, encoder: LatentEncoder, images: np.ndarray, *,
                batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """``(codes, reconstructions)``: ``E(x)`` (N, latent_dim) and ``G(E(x))`` (N, C, H, W),
    both float32, G in eval mode (Beers Fig. 4: approximate nearest neighbours in latent space)."""
    codes = encode(encoder, images, batch_size=batch_size)
    was_training = generator.training
    generator.eval()
    dev = next(generator.parameters()).device
    parts = []
    try:
        for i in range(0, codes.shape[0], batch_size):
            z = torch.from_numpy(codes[i:i + batch_size]).to(dev)
            parts.append(generator(z).float().cpu().numpy())
    finally:
        generator.train(was_training)
    recon = (np.concatenate(parts) if parts
             else np.empty((0, *np.asarray(images).shape[1:]), np.float32))
    return codes, recon


def reconstruction_table(real: np.ndarray, recon: np.ndarray, channel_names: Sequence[str],
                         meta_rows: Any = None):
    """One row per image: ``index``, the columns of ``meta_rows`` (a DataFrame or a list of dicts,
    one per image), ``mse`` (mean over channels and pixels of ``(x - G(E(x)))**2``) and
    ``mse_<channel>`` per channel."""
    import pandas as pd

    real, recon = np.asarray(real, dtype=np.float64), np.asarray(recon, dtype=np.float64)
    if real.ndim != 4 or real.shape != recon.shape:
        raise ValueError(f"real and reconstructions must be (N, C, H, W) of one shape, got "
                         f"{real.shape} and {recon.shape}")
    names = list(channel_names)
    if len(names) != real.shape[1]:
        raise ValueError(f"{real.shape[1]} channels but {len(names)} channel names")
    sq = (real - recon) ** 2
    table = pd.DataFrame({"index": np.arange(real.shape[0])})
    if meta_rows is not None:
        meta = meta_rows if isinstance(meta_rows, pd.DataFrame) else pd.DataFrame(list(meta_rows))
        if len(meta) != real.shape[0]:
            raise ValueError(f"{real.shape[0]} images but {len(meta)} meta rows")
        clash = [c for c in meta.columns if c in ("index", "mse") or str(c).startswith("mse_")]
        if clash:
            raise ValueError(f"meta columns {clash} clash with the table's own columns")
        meta = meta.reset_index(drop=True)
        table = pd.concat([table, meta], axis=1)
    table["mse"] = sq.mean(axis=(1, 2, 3))
    for c, name in enumerate(names):
        table[f"mse_{name}"] = sq[:, c].mean(axis=(1, 2))
    return table


def plot_reconstructions(real: np.ndarray, recon: np.ndarray, channel_names: Sequence[str],
                         path: str | os.PathLike, *, n: int = 8,
                         windows: Sequence[tuple[float, float]] | None = None,
                         title: str | None = "held-out images (top) and G(E(x)) (bottom)") -> None:
    """Beers Fig. 4: the first ``n`` real images as columns; the top rows their channels (one row
    per channel, label and vessel channels included), the bottom rows their reconstructions
    ``G(E(x))`` in the same channel order, each channel in one grey window for real and
    reconstruction (``windows``, e.g. :func:`medgan.plotting.real_windows`; default robust
    percentiles of the real images)."""
    real, recon = np.asarray(real, dtype=np.float32), np.asarray(recon, dtype=np.float32)
    if real.ndim != 4 or real.shape != recon.shape or real.shape[0] < 1:
        raise ValueError(f"real and reconstructions must be (N >= 1, C, H, W) of one shape, got "
                         f"{real.shape} and {recon.shape}")
    names = list(channel_names)
    c = real.shape[1]
    if len(names) != c:
        raise ValueError(f"{c} channels but {len(names)} channel names")
    windows = channel_windows(real, windows)
    k = min(int(n), real.shape[0])
    rows = np.concatenate([real[:k].transpose(1, 0, 2, 3), recon[:k].transpose(1, 0, 2, 3)])
    labels = [f"real {nm}" for nm in names] + [f"G(E(x)) {nm}" for nm in names]
    plt = _pyplot()
    fig, axes = plt.subplots(2 * c, k, squeeze=False,
                             figsize=(1.2 * k + 0.8, 1.2 * 2 * c + (0.4 if title else 0.1)))
    for r in range(2 * c):  # rows (2C, k, H, W): real channels, then reconstructed channels
        lo, hi = windows[r % c]
        for col in range(k):
            ax = axes[r, col]
            ax.imshow(rows[r, col], cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(labels[r], fontsize=7)
    fig.tight_layout(pad=0.2)
    if title:
        fig.suptitle(title, fontsize=9)
        fig.subplots_adjust(top=1 - 0.35 / fig.get_figheight())
    save_figure(fig, path)


__all__ = ["LatentEncoder", "ZeroFeatureMap", "build_encoder", "default_batch_size", "encode",
           "load_encoder", "plot_reconstructions", "reconstruct", "reconstruction_table",
           "train_encoder"]
