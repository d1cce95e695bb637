"""Retinal-vessel segmentation with a U-net on 48x48 patches (Beers et al. 2018, sec. 2.1).

* :func:`train_vessel_unet`: train :class:`~medgan.models.unet.VesselUNet` on random
  ``patch_size`` patches whose centres lie inside the field of view (retina-unet draws a fixed
  pool of patches once and trains epochs over it; so does this: ``n_patches`` x ``epochs``),
  binary cross-entropy on the manual vessel mask, Adam, random flips/transposes;
* :func:`segment_vessels`: overlapping patches (stride ``patch_size - overlap``: 48 - 8 = 40),
  predictions averaged where patches overlap, the image zero-padded at the bottom/right so the
  patches tile it, probabilities set to 0 outside the field of view;
* :func:`vessel_auc`: ROC AUC inside the field of view (scikit-learn);
* :func:`vessel_dice`: Dice of the map thresholded at 0.5 against the truth inside the field
  of view: unlike the AUC, which only ranks pixels, it sees a map that is a bright blob with
  the vessels inside it (issue 16: AUC 0.92 but Dice 0.52 for an under-trained U-net);
* :func:`save_vessel_unet` / :func:`load_vessel_unet`: a plain-dict checkpoint
  (:mod:`medgan.checkpoint_file`) with the U-net config, patch size and preprocessing settings;
* :func:`train_vessel_segmenter` (the workflow's entry point: train on the labelled photos
  minus a held-out share, write the held-out AUC), :func:`train_vessel_unet_on_folder` (train
  on every labelled photo) and :func:`crossval_vessel_auc` (per-image AUC of k-fold
  cross-validation, for the benchmark).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from medgan.data.preprocess.fundus_image import (
    DEFAULT_CLAHE_CLIP,
    DEFAULT_GAMMA,
    DEFAULT_RESOLUTION,
    load_segmentation_set,
)
from medgan.data.readers.fundus import discover_fundus_images
from medgan.errors import InputError
from medgan.models.unet import build_unet, resolve_unet_config

CHECKPOINT_KIND = "vessel_unet"
PATCH_SIZE = 48


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _check_training_set(images, vessel_masks, fov_masks, patch_size: int):
    if not (len(images) == len(vessel_masks) == len(fov_masks)) or not images:
        raise ValueError(f"need equally many (>= 1) images, vessel masks and FOV masks, got "
                         f"{len(images)}, {len(vessel_masks)}, {len(fov_masks)}")
    out = []
    for i, (img, ves, fov) in enumerate(zip(images, vessel_masks, fov_masks, strict=True)):
        img = np.asarray(img, np.float32)
        ves = np.asarray(ves, bool)
        fov = np.ones(img.shape, bool) if fov is None else np.asarray(fov, bool)
        if img.ndim != 2 or ves.shape != img.shape or fov.shape != img.shape:
            raise ValueError(f"training image {i}: expected (H, W) image and masks of the same "
                             f"size, got {img.shape}, {ves.shape}, {fov.shape}")
        if not fov.any():
            raise ValueError(f"training image {i}: empty field of view")
        half = patch_size // 2
        pad = ((half, patch_size - half), (half, patch_size - half))
        out.append((np.pad(img, pad), np.pad(ves, pad), np.argwhere(fov)))
    return out


def train_vessel_unet(images: Sequence[np.ndarray], vessel_masks: Sequence[np.ndarray],
                      fov_masks: Sequence[np.ndarray | None], *, patch_size: int = PATCH_SIZE,
                      n_patches: int = 20000, epochs: int = 1, batch_size: int = 32,
                      lr: float = 1e-3, unet: dict[str, Any] | None = None, augment: bool = True,
                      seed: int = 0, threads: int | None = None, device: str = "cpu",
                      progress: bool | None = None,
                      log: Callable[[dict[str, Any]], None] | None = None) -> nn.Module:
    """Train a vessel U-net on random patches of preprocessed images; returns it in eval mode.

    ``images`` are (H, W) float arrays (output of
    :func:`~medgan.data.preprocess.fundus_image.preprocess_for_vessel_segmentation`),
    ``vessel_masks``
    and ``fov_masks`` bool arrays of the same sizes (a None FOV = the whole image). A pool of
    ``n_patches`` patch centres is drawn uniformly over the FOV pixels of all images (patches
    reaching past the border see zeros) and trained on for ``epochs`` shuffled passes in
    batches of ``batch_size`` (Adam, learning rate ``lr``, binary cross-entropy on logits).
    ``unet`` is the U-net config (:data:`~medgan.models.unet.UNET_DEFAULTS`). ``augment`` applies
    a random flip/transpose (the 8 symmetries of the square) per patch. Deterministic for a
    ``seed`` on a given machine and thread count. ``log`` receives one dict per epoch.
    """
    from tqdm import tqdm

    config = resolve_unet_config(unet)
    if patch_size % (2 ** config["depth"]):
        raise ValueError(f"patch_size {patch_size} is not divisible by 2 ** depth = "
                         f"{2 ** config['depth']}")
    if n_patches < 1 or epochs < 1 or batch_size < 1:
        raise ValueError("n_patches, epochs and batch_size must be positive")
    data = _check_training_set(images, vessel_masks, fov_masks, patch_size)
    rng = np.random.default_rng(seed)
    counts = np.array([len(d[2]) for d in data])
    which = rng.choice(len(data), size=n_patches, p=counts / counts.sum())
    pool = np.empty((n_patches, 3), np.int64)
    for i in range(len(data)):
        sel = np.nonzero(which == i)[0]
        pool[sel, 0] = i
        pool[sel, 1:] = data[i][2][rng.integers(0, counts[i], size=len(sel))]
    offsets = np.arange(patch_size)

    with _torch_threads(threads), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_unet(config).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        loss_fn = nn.BCEWithLogitsLoss()
        model.train()
        steps_per_epoch = math.ceil(n_patches / batch_size)
        bar = tqdm(total=epochs * steps_per_epoch, desc="train_vessel_unet", unit="step",
                   disable=None if progress is None else not progress)
        step = 0
        for epoch in range(epochs):
            order = rng.permutation(n_patches)
            total, t0 = 0.0, time.perf_counter()
            for b in range(steps_per_epoch):
                idx = pool[order[b * batch_size:(b + 1) * batch_size]]
                x = np.empty((len(idx), 1, patch_size, patch_size), np.float32)
                y = np.empty_like(x)
                for k, (i, r, c) in enumerate(idx):
                    img, ves, _ = data[i]
                    rows, cols = (r + offsets)[:, None], (c + offsets)[None, :]
                    x[k, 0], y[k, 0] = img[rows, cols], ves[rows, cols]
                if augment:
                    x, y = _random_symmetry(x, y, rng)
                xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(xt), yt)
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
                step += 1
                bar.update(1)
            entry = {"epoch": epoch + 1, "step": step, "loss": total / n_patches,
                     "seconds": round(time.perf_counter() - t0, 2)}
            bar.set_postfix(loss=f"{entry['loss']:.4f}")
            if log is not None:
                log(entry)
        bar.close()
    model.eval()
    model.trained_steps = step
    return model


def _random_symmetry(x: np.ndarray, y: np.ndarray, rng: np.random.Generator):
    flips = rng.integers(0, 2, size=(len(x), 3)).astype(bool)
    for k, (fv, fh, tr) in enumerate(flips):
        for arr in (x, y):
            patch = arr[k, 0]
            if fv:
                patch = patch[::-1]
            if fh:
                patch = patch[:, ::-1]
            if tr:
                patch = patch.T
            arr[k, 0] = patch
    return x, y


def _patch_starts(length: int, patch: int, stride: int) -> tuple[list[int], int]:
    n = max(1, math.ceil(max(length - patch, 0) / stride) + 1)
    return [i * stride for i in range(n)], (n - 1) * stride + patch


@torch.no_grad()
def segment_vessels(model: nn.Module, image: np.ndarray, fov: np.ndarray | None = None, *,
                    patch_size: int = PATCH_SIZE, overlap: int = 8, batch_size: int = 128,
                    activation: str = "sigmoid", device: str | None = None) -> np.ndarray:
    """Vessel probability map (H, W) float32 of a preprocessed (H, W) image.

    The image is zero-padded at the bottom and right so that ``patch_size`` patches at stride
    ``patch_size - overlap`` cover it; each pixel's value is the mean of the predictions of
    all patches covering it (accumulated in float64), then cropped back and set to 0 outside
    ``fov``. ``activation`` "sigmoid" turns the model's logits into probabilities; "none"
    uses its output as is.
    """
    if activation not in ("sigmoid", "none"):
        raise ValueError(f"activation must be 'sigmoid' or 'none', got {activation!r}")
    if not 0 <= overlap < patch_size:
        raise ValueError(f"overlap must be in [0, patch_size), got {overlap}")
    image = np.asarray(image, np.float32)
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D preprocessed image, got shape {image.shape}")
    h, w = image.shape
    stride = patch_size - overlap
    rows, h_pad = _patch_starts(h, patch_size, stride)
    cols, w_pad = _patch_starts(w, patch_size, stride)
    padded = np.zeros((h_pad, w_pad), np.float32)
    padded[:h, :w] = image
    total = np.zeros((h_pad, w_pad), np.float64)
    count = np.zeros((h_pad, w_pad), np.float64)
    starts = [(r, c) for r in rows for c in cols]
    if device is None:
        params = list(model.parameters()) if isinstance(model, nn.Module) else []
        device = params[0].device if params else "cpu"
    was_training = getattr(model, "training", False)
    if isinstance(model, nn.Module):
        model.eval()
    try:
        for b in range(0, len(starts), batch_size):
            chunk = starts[b:b + batch_size]
            x = np.stack([padded[r:r + patch_size, c:c + patch_size] for r, c in chunk])
            out = model(torch.from_numpy(x[:, None]).to(device))
            if activation == "sigmoid":
                out = torch.sigmoid(out)
            out = out.detach().to("cpu", torch.float64).numpy().reshape(len(chunk), patch_size,
                                                                        patch_size)
            for (r, c), pred in zip(chunk, out, strict=True):
                total[r:r + patch_size, c:c + patch_size] += pred
                count[r:r + patch_size, c:c + patch_size] += 1.0
    finally:
        if was_training:
            model.train()
    prob = (total / count)[:h, :w].astype(np.float32)
    if fov is not None:
        prob = prob * np.asarray(fov, bool)
    return prob


def vessel_auc(prob: np.ndarray, truth: np.ndarray, fov: np.ndarray | None = None) -> float:
    """ROC AUC of ``prob`` against the bool ``truth`` over the pixels inside ``fov``.

    ``ValueError`` when the FOV holds only one class (the AUC is undefined).
    """
    from sklearn.metrics import roc_auc_score

    prob, truth = np.asarray(prob), np.asarray(truth, bool)
    fov = np.ones(truth.shape, bool) if fov is None else np.asarray(fov, bool)
    if prob.shape != truth.shape or fov.shape != truth.shape:
        raise ValueError(f"shapes differ: prob {prob.shape}, truth {truth.shape}, fov {fov.shape}")
    t = truth[fov]
    if t.all() or not t.any():
        raise ValueError("the AUC is undefined: the field of view holds only one class")
    return float(roc_auc_score(t, prob[fov]))


def vessel_dice(prob: np.ndarray, truth: np.ndarray, fov: np.ndarray | None = None, *,
                threshold: float = 0.5) -> float:
    """Dice ``2 |P & T| / (|P| + |T|)`` of ``prob > threshold`` against the bool ``truth`` over
    the pixels inside ``fov`` (1.0 when both are empty)."""
    prob, truth = np.asarray(prob), np.asarray(truth, bool)
    fov = np.ones(truth.shape, bool) if fov is None else np.asarray(fov, bool)
    if prob.shape != truth.shape or fov.shape != truth.shape:
        raise ValueError(f"shapes differ: prob {prob.shape}, truth {truth.shape}, fov {fov.shape}")
    pred, t = prob[fov] > threshold, truth[fov]
    total = int(pred.sum() + t.sum())
    return 1.0 if total == 0 else float(2 * (pred & t).sum() / total)


def save_vessel_unet(path: str | os.PathLike, model: nn.Module, *,
                     preprocessing: dict[str, Any], patch_size: int = PATCH_SIZE,
                     training: dict[str, Any] | None = None) -> None:
    """Write the U-net as a plain-dict checkpoint (weights, config, patch size, preprocessing)."""
    from medgan import __version__
    from medgan.checkpoint_file import save_checkpoint

    save_checkpoint(path, {
        "kind": CHECKPOINT_KIND,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "config": dict(model.config),
        "step": int(getattr(model, "trained_steps", 0)),
        "patch_size": int(patch_size),
        "preprocessing": dict(preprocessing),
        "training": dict(training or {}),
        "medgan_version": __version__,
    })


def load_vessel_unet(path: str | os.PathLike) -> tuple[nn.Module, dict[str, Any]]:
    """``(model in eval mode, checkpoint dict)``; InputError naming ``path`` if it is no
    vessel U-net checkpoint."""
    from medgan.checkpoint_file import load_checkpoint

    ckpt = load_checkpoint(path, required=("kind", "model", "config", "patch_size",
                                           "preprocessing"))
    if ckpt["kind"] != CHECKPOINT_KIND:
        raise InputError(path, f"not a vessel U-net checkpoint (kind {ckpt['kind']!r})")
    try:
        model = build_unet(ckpt["config"])
        model.load_state_dict(ckpt["model"])
    except (ValueError, RuntimeError) as err:
        raise InputError(path, f"U-net weights do not fit its config "
                               f"({str(err).splitlines()[0]})") from err
    model.eval()
    return model, ckpt


def _preprocessing(resolution, aspect, gamma, clahe_clip, clahe_kernel) -> dict[str, Any]:
    return {"resolution": resolution, "aspect": aspect, "gamma": float(gamma),
            "clahe_clip": float(clahe_clip), "clahe_kernel": clahe_kernel,
            "grayscale": "luminance"}


def train_vessel_unet_on_folder(root: str | os.PathLike, checkpoint: str | os.PathLike, *,
                                resolution: int | None = DEFAULT_RESOLUTION,
                                aspect: str = "stretch", gamma: float = DEFAULT_GAMMA,
                                clahe_clip: float = DEFAULT_CLAHE_CLIP,
                                clahe_kernel: int | None = None, **train: Any) -> dict[str, Any]:
    """Train the vessel U-net on every photo of ``root`` (all need manual vessel masks) and
    save it to ``checkpoint``. ``train`` are :func:`train_vessel_unet`'s keyword arguments.
    Returns the checkpoint's metadata (all but the weights)."""
    records = discover_fundus_images(root, require_vessels=True)
    prep = _preprocessing(resolution, aspect, gamma, clahe_clip, clahe_kernel)
    images, vessels, fovs = load_segmentation_set(
        records, resolution=resolution, aspect=aspect, gamma=gamma, clahe_clip=clahe_clip,
        clahe_kernel=clahe_kernel)
    history: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    model = train_vessel_unet(images, vessels, fovs, log=history.append, **train)
    training = {k: v for k, v in train.items() if k not in ("progress", "log")}
    training.update({"source": str(root), "n_images": len(records), "history": history,
                     "seconds": round(time.perf_counter() - t0, 1)})
    save_vessel_unet(checkpoint, model, preprocessing=prep,
                     patch_size=train.get("patch_size", PATCH_SIZE), training=training)
    return {"config": dict(model.config), "preprocessing": prep, "training": training}


def train_vessel_segmenter(root: str | os.PathLike, checkpoint: str | os.PathLike,
                           auc_table: str | os.PathLike, *, heldout_fraction: float = 0.25,
                           seed: int = 0, resolution: int | None = DEFAULT_RESOLUTION,
                           aspect: str = "stretch", gamma: float = DEFAULT_GAMMA,
                           clahe_clip: float = DEFAULT_CLAHE_CLIP,
                           clahe_kernel: int | None = None, overlap: int = 8,
                           **train: Any) -> dict[str, Any]:
    """The workflow's segmenter step: train on the labelled photos of ``root`` minus a held-out
    share, write the model to ``checkpoint`` and the held-out AUC per photo to ``auc_table``.

    The labelled photos (those with a manual vessel mask) are shuffled with ``seed``;
    ``heldout_fraction`` of them (at least one) are held out. The U-net (``train``:
    :func:`train_vessel_unet`'s keyword arguments) is trained on the rest, segments each held-out
    photo (``overlap``) and is scored inside its FOV (:func:`vessel_auc`). The saved model is the
    one that was scored. ``auc_table`` (TSV) has one row per held-out photo - ``image, auc`` - and
    a last row ``mean``; ``dice`` is :func:`vessel_dice` at probability 0.5. Returns
    ``{"mean_auc", "mean_dice", "n_train", "n_heldout"}``.
    """
    import pandas as pd

    from medgan.atomic import write_tsv

    records = [r for r in discover_fundus_images(root) if r.vessels is not None]
    if len(records) < 2:
        raise InputError(root, f"the vessel segmenter needs at least 2 photos with manual vessel "
                               f"masks (1st_manual/), found {len(records)}")
    if not 0 < heldout_fraction < 1:
        raise ValueError(f"heldout_fraction must be in (0, 1), got {heldout_fraction}")
    order = np.random.default_rng(seed).permutation(len(records))
    n_held = min(len(records) - 1, max(1, round(heldout_fraction * len(records))))
    held, kept = sorted(order[:n_held].tolist()), sorted(order[n_held:].tolist())
    images, vessels, fovs = load_segmentation_set(
        records, resolution=resolution, aspect=aspect, gamma=gamma, clahe_clip=clahe_clip,
        clahe_kernel=clahe_kernel)
    history: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    model = train_vessel_unet([images[i] for i in kept], [vessels[i] for i in kept],
                              [fovs[i] for i in kept], seed=seed, log=history.append, **train)
    seconds = round(time.perf_counter() - t0, 1)
    patch = train.get("patch_size", PATCH_SIZE)
    rows = []
    for i in held:
        prob = segment_vessels(model, images[i], fovs[i], patch_size=patch, overlap=overlap)
        rows.append({"image": records[i].image_id, "auc": vessel_auc(prob, vessels[i], fovs[i]),
                     "dice": vessel_dice(prob, vessels[i], fovs[i])})
    mean_auc = float(np.mean([r["auc"] for r in rows]))
    mean_dice = float(np.mean([r["dice"] for r in rows]))
    training = {k: v for k, v in train.items() if k not in ("progress", "log")}
    training.update({"source": str(root), "seed": seed, "heldout_fraction": heldout_fraction,
                     "train_images": [records[i].image_id for i in kept],
                     "heldout_images": [records[i].image_id for i in held],
                     "heldout_mean_auc": mean_auc, "heldout_mean_dice": mean_dice,
                     "history": history, "seconds": seconds})
    save_vessel_unet(checkpoint, model,
                     preprocessing=_preprocessing(resolution, aspect, gamma, clahe_clip,
                                                  clahe_kernel),
                     patch_size=patch, training=training)
    write_tsv(auc_table, pd.DataFrame(rows + [{"image": "mean", "auc": mean_auc,
                                               "dice": mean_dice}]))
    return {"mean_auc": mean_auc, "mean_dice": mean_dice, "n_train": len(kept),
            "n_heldout": len(held)}


def crossval_vessel_auc(root: str | os.PathLike, *, folds: int = 5,
                        resolution: int | None = DEFAULT_RESOLUTION, aspect: str = "stretch",
                        gamma: float = DEFAULT_GAMMA, clahe_clip: float = DEFAULT_CLAHE_CLIP,
                        clahe_kernel: int | None = None, overlap: int = 8, seed: int = 0,
                        **train: Any):
    """k-fold cross-validated vessel AUC on the photos of ``root`` (all with vessel masks).

    Photos are shuffled with ``seed`` and split into ``folds`` near-equal folds; for each fold a
    U-net is trained on the others (``train``: :func:`train_vessel_unet`'s keyword arguments)
    and each held-out photo is segmented (``overlap``) and scored inside its FOV at
    ``resolution`` (None: the photos' own size). Returns a DataFrame, one row per held-out
    photo: ``fold, image, auc, train_seconds``.
    """
    import pandas as pd

    records = discover_fundus_images(root, require_vessels=True)
    if not 2 <= folds <= len(records):
        raise ValueError(f"folds must be between 2 and the number of images ({len(records)}), "
                         f"got {folds}")
    images, vessels, fovs = load_segmentation_set(
        records, resolution=resolution, aspect=aspect, gamma=gamma, clahe_clip=clahe_clip,
        clahe_kernel=clahe_kernel)
    order = np.random.default_rng(seed).permutation(len(records))
    rows = []
    for fold, held in enumerate(np.array_split(order, folds)):
        held_out = set(held.tolist())
        train_idx = [i for i in order if i not in held_out]
        t0 = time.perf_counter()
        model = train_vessel_unet([images[i] for i in train_idx], [vessels[i] for i in train_idx],
                                  [fovs[i] for i in train_idx], seed=seed + fold, **train)
        seconds = time.perf_counter() - t0
        for i in sorted(held):
            prob = segment_vessels(model, images[i], fovs[i],
                                   patch_size=train.get("patch_size", PATCH_SIZE),
                                   overlap=overlap)
            rows.append({"fold": fold, "image": records[i].image_id,
                         "auc": vessel_auc(prob, vessels[i], fovs[i]),
                         "train_seconds": round(seconds, 1)})
    return pd.DataFrame(rows)


__all__ = ["CHECKPOINT_KIND", "PATCH_SIZE", "crossval_vessel_auc", "load_vessel_unet",
           "save_vessel_unet", "segment_vessels", "train_vessel_segmenter", "train_vessel_unet",
           "train_vessel_unet_on_folder", "vessel_auc", "vessel_dice"]
