"""Kitchen & Seah 2017 (prostate lesions): Fig. 4 (a page of real and synthetic lesions, T2 /
ADC / Ktrans side by side), Fig. 5 (linear interpolation between two lesions in Z) and
Tables 1-2 (the generator and discriminator layer by layer, read from the networks).

The layer tables are traced, not typed: a forward pass of one input through the networks
built from the checkpoint's config records every layer's output shape (forward hooks), so a
change of architecture changes the tables.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from medgan.atomic import write_tsv
from medgan.plotting import _pyplot, pick_images, real_windows, save_figure

ACTIVATIONS = {nn.ReLU: "ReLU", nn.LeakyReLU: "L. ReLU", nn.ELU: "ELU", nn.Tanh: "tanh",
               nn.Sigmoid: "sigmoid"}


def _shape(t: torch.Tensor) -> str:
    """Output shape as the paper writes it: H x W x C, or the length of a vector."""
    s = list(t.shape[1:])
    return " x ".join(map(str, s[1:] + s[:1])) if len(s) == 3 else " x ".join(map(str, s))


def _trace(net: nn.Module, x: torch.Tensor) -> list[tuple[nn.Module, str, str]]:
    calls: list[tuple[nn.Module, str, str]] = []
    hooks = [m.register_forward_hook(
        lambda mod, inp, out: calls.append((mod, _shape(inp[0]), _shape(out))))
        for m in net.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            net.eval()(x)
    finally:
        for h in hooks:
            h.remove()
    return calls


def _kernel(m: nn.Module) -> str:
    k, s = m.kernel_size[0], m.stride[0]
    return f"{k} x {k}" + (f" / {s}" if s > 1 else "")


def layer_table(net: nn.Module, x: torch.Tensor, *, input_name: str = "input") -> pd.DataFrame:
    """Kitchen's Tables 1-2 for ``net`` on input ``x``: one row per weighted layer (with its
    activation), reshapes and pooling, with kernel, features, output shape, noise/dropout
    after it and parameter count."""
    rows = [{"layer": input_name, "kernel": "", "feats.": "", "out. shape": _shape(x),
             "noise": "", "params": 0}]
    for mod, shape_in, shape_out in _trace(net, x):
        last = rows[-1]
        if isinstance(mod, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            if shape_in != last["out. shape"] and last["layer"] != "global avg. pool":
                rows.append({"layer": "reshape", "kernel": "", "feats.": "",
                             "out. shape": shape_in, "noise": "", "params": 0})
            name = {nn.Linear: "fully connected", nn.Conv2d: "conv.",
                    nn.ConvTranspose2d: "T. conv."}[type(mod)]
            feats = mod.out_features if isinstance(mod, nn.Linear) else mod.out_channels
            rows.append({"layer": name, "feats.": feats, "out. shape": shape_out, "noise": "",
                         "kernel": "" if isinstance(mod, nn.Linear) else _kernel(mod),
                         "params": sum(p.numel() for p in mod.parameters())})
        elif type(mod) in ACTIVATIONS:
            last["layer"] += f" / {ACTIVATIONS[type(mod)]}"
        elif type(mod).__name__ == "GaussianNoise":
            last["noise"] = "gaussian"
        elif isinstance(mod, nn.Dropout):
            last["noise"] = "dropout"
        elif isinstance(mod, (nn.AdaptiveAvgPool2d, nn.AvgPool2d)):
            rows.append({"layer": "global avg. pool", "kernel": "", "feats.": "",
                         "out. shape": shape_out, "noise": "", "params": 0})
    return pd.DataFrame(rows)


def write_layer_tables(checkpoint: str | os.PathLike, *, generator_table: str | os.PathLike,
                       discriminator_table: str | os.PathLike) -> tuple[pd.DataFrame, ...]:
    """Tables 1 (generator) and 2 (discriminator) of the model in ``checkpoint``."""
    from medgan.models import build_discriminator, build_generator
    from medgan.training.checkpoint import load_checkpoint

    config = load_checkpoint(checkpoint)["config"]
    arch, c, r = config["architecture"], len(config["channels"]), int(config["resolution"])
    G = build_generator(arch, channels=c, resolution=r)
    D = build_discriminator(arch, channels=c, resolution=r)
    g = layer_table(G, torch.zeros(1, G.latent_dim), input_name="random input")
    d = layer_table(D, torch.zeros(1, c, r, r))
    write_tsv(generator_table, g)
    write_tsv(discriminator_table, d)
    return g, d


def _show(ax, image: np.ndarray, window: tuple[float, float]) -> None:
    ax.imshow(image, cmap="gray", vmin=window[0], vmax=window[1], interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_lesion_page(checkpoint: str | os.PathLike, data_dir: str | os.PathLike,
                     path: str | os.PathLike, *, n_rows: int = 16, seed: int = 0) -> None:
    """Kitchen Fig. 4: ``n_rows`` real lesions (left, one column per channel) beside
    ``n_rows`` synthetic ones (right), every channel in the real images' window."""
    from medgan.training.generate import generate_from, load_generator

    G, config = load_generator(checkpoint)
    channels = list(config["channels"])
    synthetic = generate_from(G, config, n_rows, seed=seed)
    real = pick_images(data_dir, channels, n_rows, seed=seed)
    windows = real_windows(data_dir, channels, seed=seed)
    n, c = min(len(real), n_rows), len(channels)
    plt = _pyplot()
    fig, axes = plt.subplots(n, 2 * c + 1, squeeze=False,
                             figsize=(0.8 * (2 * c + 1), 0.8 * n + 0.5),
                             gridspec_kw={"width_ratios": [1] * c + [0.25] + [1] * c})
    for i in range(n):
        axes[i, c].axis("off")
        for k in range(c):
            _show(axes[i, k], real[i, k], windows[k])
            _show(axes[i, c + 1 + k], synthetic[i, k], windows[k])
    for k, ch in enumerate(channels):
        axes[0, k].set_title(f"real\n{ch}", fontsize=7)
        axes[0, c + 1 + k].set_title(f"synthetic\n{ch}", fontsize=7)
    fig.tight_layout(pad=0.2)
    save_figure(fig, path)


def plot_lesion_interpolation(checkpoint: str | os.PathLike, data_dir: str | os.PathLike,
                              path: str | os.PathLike, *, n_pairs: int = 2, steps: int = 10,
                              seed: int = 0) -> np.ndarray:
    """Kitchen Fig. 5: linear interpolation in Z between ``n_pairs`` pairs of lesions drawn
    with ``seed``, one row per channel, in the real images' windows. Returns the images."""
    from medgan.analysis.interpolation import interpolation_figure

    channels = _channels(checkpoint)
    return interpolation_figure(checkpoint, path, n_pairs=n_pairs, steps=steps,
                                methods=("linear",), seed=seed,
                                windows=real_windows(data_dir, channels, seed=seed))


def _channels(checkpoint: str | os.PathLike) -> list[str]:
    from medgan.training.checkpoint import load_checkpoint

    config: dict[str, Any] = load_checkpoint(checkpoint)["config"]
    return list(config["channels"])
