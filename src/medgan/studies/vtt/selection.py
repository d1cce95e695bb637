"""The images of a Visual Turing Test kit: one block per model, held-out real images of the
model's dataset and channels against the model's synthetic images (Han et al. 2018 sec. 3.3).

Real images come only from the held-out split (``split.tsv``), so a reader never sees an image
the GAN was trained on. Blocks that show the same dataset and channels (DCGAN T1 and WGAN T1)
draw their real images least-used first, so that no displayed image repeats within a kit while
the held-out split is large enough; the kit record counts any that do. A pooled dataset (Han's
Concat, meta.tsv's ``sequence`` column) gives its real images in equal proportion from each
sequence (:func:`pick_stratified`; the key's ``sequence`` column). Synthetic images are
generated from the model's checkpoint with a seed derived from the kit seed and the block, and
the answer key records that seed and the latent index, so every image can be made again.
Channels are shown with the grey windows of the study figures
(:func:`medgan.plotting.real_windows`).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medgan.errors import InputError


@dataclass
class KitBlock:
    """One block of a kit: real and synthetic images (N, C, H, W) of one model and image type.

    ``real_info`` / ``synthetic_info``: one dict per image, written to the answer key (never
    to the page). ``windows``: a grey window (low, high) per channel. ``examples``: real
    images (not shown as items) for the second round's ``real_examples`` clue.
    """

    model: str
    image_type: str
    channels: list[str]
    real: np.ndarray
    synthetic: np.ndarray
    windows: list[tuple[float, float]]
    real_info: list[dict[str, Any]] = field(default_factory=list)
    synthetic_info: list[dict[str, Any]] = field(default_factory=list)
    examples: np.ndarray | None = None

    def __post_init__(self) -> None:
        for name in ("real", "synthetic"):
            arr = np.asarray(getattr(self, name), dtype=np.float32)
            if arr.ndim != 4 or arr.shape[1] != len(self.channels):
                raise ValueError(
                    f"block {self.model}: {name} images must be (N, {len(self.channels)}, H, W), "
                    f"got {arr.shape}"
                )
            setattr(self, name, arr)
        if len(self.windows) != len(self.channels):
            raise ValueError(f"block {self.model}: one display window per channel is needed")
        if not self.real_info:
            self.real_info = [{} for _ in range(len(self.real))]
        if not self.synthetic_info:
            self.synthetic_info = [{} for _ in range(len(self.synthetic))]


def image_type(channels: Sequence[str]) -> str:
    """Han 2018's name of an image type: the sequence, or ``Concat`` for several channels."""
    return channels[0] if len(channels) == 1 else "Concat"


def block_seed(seed: int, block: int) -> int:
    """The seed of block ``block`` of a kit seeded with ``seed`` (independent streams)."""
    return int(np.random.SeedSequence([seed, block]).generate_state(1)[0])


def pick_least_used(
    candidates: np.ndarray, n: int, used: Counter, rng: np.random.Generator
) -> np.ndarray:
    """``n`` of ``candidates`` without replacement, the least used first (ties at random);
    ``used`` is updated."""
    candidates = np.asarray(candidates)
    order = rng.permutation(len(candidates))
    counts = np.array([used[int(c)] for c in candidates[order]])
    chosen = candidates[order[np.argsort(counts, kind="stable")[:n]]]
    for c in chosen:
        used[int(c)] += 1
    return np.sort(chosen)


def pick_stratified(
    candidates: np.ndarray,
    strata: Sequence[str],
    n: int,
    used: Counter,
    rng: np.random.Generator,
) -> np.ndarray:
    """``n`` of ``candidates`` in equal proportion from each stratum (``strata[i]`` is the
    stratum of ``candidates[i]``), least used first within a stratum; when ``n`` does not
    divide evenly, a random choice of strata gets one more. Han 2018 sec. 3.3: Concat images
    "were classified together with real T1, T1c, T2, and FLAIR images in equal proportion"."""
    candidates, strata = np.asarray(candidates), np.asarray(strata, dtype=str)
    names = sorted(set(strata.tolist()))
    share = np.full(len(names), n // len(names))
    share[rng.permutation(len(names))[: n % len(names)]] += 1
    chosen = []
    for name, k in zip(names, share, strict=True):
        pool = candidates[strata == name]
        if len(pool) < k:
            raise ValueError(f"stratum {name} has {len(pool)} images; {k} are needed")
        chosen.append(pick_least_used(pool, int(k), used, rng))
    return np.sort(np.concatenate(chosen))


def real_strata(meta, channels: Sequence[str]) -> np.ndarray | None:
    """The ``sequence`` of each image of a pooled dataset (Han's Concat), else None."""
    if len(channels) == 1 and "sequence" in getattr(meta, "columns", ()):
        return meta["sequence"].astype(str).to_numpy()
    return None


def blocks_from_models(
    *,
    models: Sequence[str],
    checkpoints: Sequence[str | os.PathLike],
    data_dirs: Sequence[str | os.PathLike],
    splits: Sequence[str | os.PathLike],
    n_real: int,
    n_synthetic: int,
    seed: int = 0,
    n_examples: int = 0,
) -> list[KitBlock]:
    """One :class:`KitBlock` per model: ``n_real`` held-out real images of its dataset and
    channels, ``n_synthetic`` images of its generator, ``n_examples`` real training images."""
    from medgan.data.prepared import load_prepared
    from medgan.data.split import load_split, split_indices
    from medgan.plotting import real_windows
    from medgan.training.generate import generate_from, load_generator

    used: dict[tuple[str, tuple[str, ...]], Counter] = {}
    blocks = []
    for b, (model, ckpt, data_dir, split) in enumerate(
        zip(models, checkpoints, data_dirs, splits, strict=True)
    ):
        G, config = load_generator(ckpt)
        channels = list(config["channels"])
        data = load_prepared(data_dir, channels=channels)
        table = load_split(split, len(data.images))
        train_idx, held_idx = split_indices(split, len(data.images), table=table)
        if len(held_idx) < n_real:
            raise InputError(
                split,
                f"has {len(held_idx)} held-out images; the kit's block for "
                f"{model} needs {n_real} (lower vtt n_real or hold out more)",
            )
        rng = np.random.default_rng(block_seed(seed, b))
        counter = used.setdefault((str(data_dir), tuple(channels)), Counter())
        strata = real_strata(data.meta, channels)
        if strata is None:
            real_idx = pick_least_used(held_idx, n_real, counter, rng)
        else:  # Concat: the real images in equal proportion from each sequence
            try:
                real_idx = pick_stratified(held_idx, strata[held_idx], n_real, counter, rng)
            except ValueError as err:
                raise InputError(
                    split,
                    f"{err} for the kit's block for {model} (lower vtt n_real or hold out more)",
                ) from err
        ex_idx = np.sort(rng.choice(train_idx, size=min(n_examples, len(train_idx)), replace=False))
        syn_seed = block_seed(seed, 1000 + b)
        synthetic = generate_from(G, config, n_synthetic, seed=syn_seed)
        subjects = data.meta["subject"].astype(str).tolist() if "subject" in data.meta else None
        blocks.append(
            KitBlock(
                model=model,
                image_type=image_type(channels),
                channels=channels,
                real=np.asarray(data.images[real_idx]),
                synthetic=synthetic,
                windows=real_windows(data_dir, channels, seed=seed),
                real_info=[
                    {
                        "dataset": os.path.basename(os.path.normpath(data_dir)),
                        "dataset_index": int(i),
                        "subject": subjects[i] if subjects else "",
                        "reuse": counter[int(i)] - 1,
                        **({"sequence": str(strata[i])} if strata is not None else {}),
                    }
                    for i in real_idx
                ],
                synthetic_info=[
                    {"latent_seed": syn_seed, "latent_index": j} for j in range(n_synthetic)
                ],
                examples=np.asarray(data.images[ex_idx]) if len(ex_idx) else None,
            )
        )
    return blocks


def toy_blocks(
    *, n_real: int = 3, n_synthetic: int = 3, size: int = 16, seed: int = 0, n_examples: int = 2
) -> list[KitBlock]:
    """Two small blocks of generated images (a one-channel ``T1`` and a two-channel
    ``Concat``) for trying the page and for tests: discs, the synthetic ones noisier."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size - 0.5

    def images(n: int, c: int, noise: float) -> np.ndarray:
        r = rng.uniform(0.25, 0.4, size=(n, c, 1, 1))
        disc = (np.hypot(yy, xx)[None, None] < r).astype(np.float32)
        return disc + noise * rng.standard_normal((n, c, size, size)).astype(np.float32)

    blocks = []
    for b, channels in enumerate((["T1"], ["T1", "T2"])):
        c = len(channels)
        blocks.append(
            KitBlock(
                model=f"toy_{image_type(channels).lower()}",
                image_type=image_type(channels),
                channels=channels,
                real=images(n_real, c, 0.05),
                synthetic=images(n_synthetic, c, 0.3),
                windows=[(0.0, 1.0)] * c,
                real_info=[
                    {"dataset": "toy", "dataset_index": i, "subject": f"s{i}", "reuse": 0}
                    for i in range(n_real)
                ],
                synthetic_info=[
                    {"latent_seed": block_seed(seed, 1000 + b), "latent_index": j}
                    for j in range(n_synthetic)
                ],
                examples=images(n_examples, c, 0.05) if n_examples else None,
            )
        )
    return blocks
