"""Classifier two-sample test (C2ST): can a classifier tell real from synthetic images?

Lopez-Paz & Oquab 2017, "Revisiting classifier two-sample tests": train a binary classifier on
half of the pooled samples and measure its accuracy on the other half. Under the null hypothesis
(same distribution) the held-out accuracy is Binomial(n_test, 1/2) / n_test, so the one-sided
exact binomial test of the number of correct predictions gives a p-value. It is the objective
version of Han et al. 2018's Visual Turing Test (Table 1: a physician's confusion matrix on 50
real / 50 synthetic images): the four counts here are that confusion matrix.

Procedure (:func:`classifier_two_sample_test`):

1. Balance the classes: subsample the larger set to the size of the smaller (seeded).
2. Split each class into a training and a test half. With groups (e.g. patient ids), the split
   is group-aware: all images of one group go to the same half. Without it, slices of one
   patient would sit in both halves, the classifier could recognise patients, and even
   real-vs-real accuracy would exceed 1/2. Within each half the classes are then trimmed to
   equal counts, so chance accuracy is exactly 1/2.
3. Pixels mode (4-D arrays): a small CNN (stride-2 4x4 convolutions down to 4x4, leaky ReLU,
   global average pool, linear; widths ``width * 2**i`` capped at ``8 * width``) on images
   standardised per channel with the real training half's mean/std, trained with Adam on
   binary cross entropy for ``epochs`` epochs. Works at 16-256 px and any channel count.
   Memory: the balanced images are held in memory as float32 (after the optional pooling to
   ``max_resolution``), e.g. 6000 x 1 x 64 x 64 -> 100 MB, 6000 x 4 x 256 x 256 -> 6.3 GB.
   Features mode (2-D arrays, e.g. domain features): logistic regression on standardised
   features.
4. Label 1 = synthetic; a logit > 0 predicts synthetic.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from scipy.stats import binomtest
from torch import nn

from medgan.analysis.metrics.intervals import proportion_interval

DEFAULTS: dict[str, Any] = {"epochs": 8, "batch_size": 64, "lr": 1e-3, "width": 16,
                            "max_resolution": None}


class TwoSampleClassifier(nn.Module):
    """``(N, C, R, R) -> (N,)`` logits; R a power of two in 16..1024 (any >= 8 works)."""

    def __init__(self, *, channels: int, resolution: int, width: int = 16):
        super().__init__()
        layers: list[nn.Module] = []
        c, size, i = channels, resolution, 0
        while size > 4:
            out = width * min(2 ** i, 8)
            layers += [nn.Conv2d(c, out, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            c, size, i = out, size // 2, i + 1
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).mean(dim=(2, 3))).squeeze(1)


def _group_halves(n: int, groups: np.ndarray | None, rng: np.random.Generator, what: str
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Indices of two halves of ``range(n)``; whole groups per half when ``groups`` is given
    (groups in random order, each to the currently smaller half)."""
    if groups is None:
        perm = rng.permutation(n)
        return np.sort(perm[: n // 2]), np.sort(perm[n // 2:])
    unique, inverse = np.unique(groups, return_inverse=True)
    if len(unique) < 2:
        raise ValueError(f"a group-aware split needs at least 2 distinct {what} groups, "
                         f"got {len(unique)}")
    members = [np.flatnonzero(inverse == g) for g in range(len(unique))]
    halves: list[list[int]] = [[], []]
    for g in rng.permutation(len(unique)):
        target = 0 if len(halves[0]) <= len(halves[1]) else 1
        halves[target].extend(members[g].tolist())
    first, second = (np.sort(np.array(h, dtype=np.int64)) for h in halves)
    return first, second


def _check_groups(groups: Any, n: int, what: str) -> np.ndarray | None:
    if groups is None:
        return None
    groups = np.asarray(groups)
    if groups.ndim != 1 or len(groups) != n:
        raise ValueError(f"{what} must have one entry per image ({n}), got shape {groups.shape}")
    return groups


def split_two_samples(n_real: int, n_synthetic: int, *, real_groups: Any = None,
                      synthetic_groups: Any = None, seed: int = 0) -> dict[str, np.ndarray]:
    """Balanced, optionally group-aware train/test indices of both classes (steps 1-2 of the
    module docstring): ``real_train``, ``real_test``, ``synthetic_train``, ``synthetic_test``."""
    rng = np.random.default_rng(seed)
    rg = _check_groups(real_groups, n_real, "real_groups")
    sg = _check_groups(synthetic_groups, n_synthetic, "synthetic_groups")
    n = min(n_real, n_synthetic)
    keep_r = np.sort(rng.choice(n_real, n, replace=False))
    keep_s = np.sort(rng.choice(n_synthetic, n, replace=False))
    r_tr, r_te = _group_halves(n, None if rg is None else rg[keep_r], rng, "real")
    s_tr, s_te = _group_halves(n, None if sg is None else sg[keep_s], rng, "synthetic")
    out = {}
    for part, (r, s) in {"train": (r_tr, s_tr), "test": (r_te, s_te)}.items():
        m = min(len(r), len(s))
        out[f"real_{part}"] = keep_r[np.sort(rng.choice(r, m, replace=False))]
        out[f"synthetic_{part}"] = keep_s[np.sort(rng.choice(s, m, replace=False))]
    return out


def _group_folds(n: int, groups: np.ndarray | None, rng: np.random.Generator, k: int,
                 what: str) -> list[np.ndarray]:
    """``k`` disjoint folds of ``range(n)``; whole groups per fold when ``groups`` is given
    (groups in random order, each to the currently smallest fold)."""
    if groups is None:
        return [np.sort(f) for f in np.array_split(rng.permutation(n), k)]
    unique, inverse = np.unique(groups, return_inverse=True)
    if len(unique) < k:
        raise ValueError(f"a group-aware {k}-fold split needs at least {k} distinct {what} "
                         f"groups, got {len(unique)}")
    folds: list[list[int]] = [[] for _ in range(k)]
    for g in rng.permutation(len(unique)):
        min(folds, key=len).extend(np.flatnonzero(inverse == g).tolist())
    return [np.sort(np.array(f, dtype=np.int64)) for f in folds]


def cross_validation_splits(n_real: int, n_synthetic: int, *, folds: int,
                            real_groups: Any = None, synthetic_groups: Any = None,
                            seed: int = 0) -> list[dict[str, np.ndarray]]:
    """``folds`` train/test splits (dicts as :func:`split_two_samples` returns) whose test
    parts are disjoint: after balancing the classes, each class is cut into ``folds`` folds
    (group-aware with groups); split f tests on fold f of both classes (trimmed to equal
    counts) and trains on the other folds (trimmed likewise), so every kept image is tested
    at most once."""
    if int(folds) != folds or folds < 2:
        raise ValueError(f"folds must be an integer >= 2, got {folds!r}")
    rng = np.random.default_rng(seed)
    rg = _check_groups(real_groups, n_real, "real_groups")
    sg = _check_groups(synthetic_groups, n_synthetic, "synthetic_groups")
    n = min(n_real, n_synthetic)
    keep_r = np.sort(rng.choice(n_real, n, replace=False))
    keep_s = np.sort(rng.choice(n_synthetic, n, replace=False))
    fr = _group_folds(n, None if rg is None else rg[keep_r], rng, folds, "real")
    fs = _group_folds(n, None if sg is None else sg[keep_s], rng, folds, "synthetic")
    out = []
    for f in range(folds):
        parts = {"train": (np.concatenate([x for i, x in enumerate(fr) if i != f]),
                           np.concatenate([x for i, x in enumerate(fs) if i != f])),
                 "test": (fr[f], fs[f])}
        split = {}
        for part, (r, s) in parts.items():
            m = min(len(r), len(s))
            split[f"real_{part}"] = keep_r[np.sort(rng.choice(r, m, replace=False))]
            split[f"synthetic_{part}"] = keep_s[np.sort(rng.choice(s, m, replace=False))]
        out.append(split)
    return out


def _validate(real: Any, synthetic: Any) -> tuple[np.ndarray, np.ndarray]:
    for what, x in (("real", real), ("synthetic", synthetic)):
        if not isinstance(x, np.ndarray) or x.ndim not in (2, 4):
            raise ValueError(f"{what} must be a numpy array (N, C, H, W) of images or (N, d) "
                             f"of features, got {getattr(x, 'shape', type(x).__name__)}")
        if x.shape[0] < 4:
            raise ValueError(f"the two-sample test needs at least 4 {what} samples, "
                             f"got {x.shape[0]}")
    if real.shape[1:] != synthetic.shape[1:]:
        raise ValueError(f"real and synthetic samples differ in shape: {real.shape[1:]} vs "
                         f"{synthetic.shape[1:]}")
    if real.ndim == 4 and (real.shape[2] != real.shape[3] or real.shape[2] < 8):
        raise ValueError(f"images must be square and at least 8 px, got {real.shape[2:]}")
    return real, synthetic


def _gather(x: np.ndarray, idx: np.ndarray, what: str, max_resolution: int | None,
            chunk: int = 256) -> np.ndarray:
    """``x[idx]`` as float32, read (and pooled to ``max_resolution``) in chunks."""
    parts = []
    for start in range(0, len(idx), chunk):
        block = np.asarray(x[idx[start:start + chunk]], dtype=np.float32)
        if not np.isfinite(block).all():
            raise ValueError(f"{what} samples hold NaN or inf values")
        if block.ndim == 4 and max_resolution is not None:
            block = _pool_to(block, max_resolution)
        parts.append(block)
    return np.concatenate(parts)


def classifier_two_sample_test(real: np.ndarray, synthetic: np.ndarray, *,
                               real_groups: Any = None, synthetic_groups: Any = None,
                               seed: int = 0, epochs: int = 8, batch_size: int = 64,
                               lr: float = 1e-3, width: int = 16,
                               max_resolution: int | None = None, device: str = "cpu",
                               folds: int | None = None, level: float = 0.95
                               ) -> dict[str, Any]:
    """Classifier two-sample test (Lopez-Paz & Oquab 2017) of ``real`` against ``synthetic``.

    Images ``(N, C, H, W)`` use the CNN, features ``(N, d)`` logistic regression (see the
    module docstring). Returns ``accuracy`` on the test images, the confusion counts
    ``real_as_real``, ``real_as_synthetic``, ``synthetic_as_real``, ``synthetic_as_synthetic``,
    ``n_train``, ``n_test``, ``mode`` (``"pixels"`` or ``"features"``), ``p_value``: the
    one-sided exact binomial test (alternative "greater") of the number of correct test
    predictions against chance 1/2, and ``accuracy_lo``, ``accuracy_hi``: its exact
    (Clopper-Pearson) ``level`` interval. Same seed (and thread count) -> same result on CPU.

    ``folds``: None - train on one half, test on the other (:func:`split_two_samples`);
    k >= 2 - k-fold cross-validation (:func:`cross_validation_splits`): k classifiers, every
    kept image tested once, so ``n_test`` is about twice the balanced set size and the interval
    narrower (``n_train`` is then the training set of one fold).

    ``max_resolution``: images larger than this are average-pooled by a power-of-two factor to
    at most this size before the CNN (cost grows with the square of the resolution; the test
    then sees no detail finer than the pooled pixels). ``None``: full resolution. ``device``:
    where the CNN runs (``"cpu"``, ``"cuda"``, ``"auto"``).
    """
    real, synthetic = _validate(real, synthetic)
    for name, value in {"epochs": epochs, "batch_size": batch_size, "width": width}.items():
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    if max_resolution is not None and max_resolution < 8:
        raise ValueError(f"max_resolution must be >= 8, got {max_resolution}")
    groups = {"real_groups": real_groups, "synthetic_groups": synthetic_groups, "seed": seed}
    splits = ([split_two_samples(len(real), len(synthetic), **groups)] if folds is None else
              cross_validation_splits(len(real), len(synthetic), folds=folds, **groups))
    fit = {"seed": seed, "epochs": int(epochs), "batch_size": int(batch_size), "lr": lr,
           "width": int(width), "device": device, "max_resolution": max_resolution}
    counts = dict.fromkeys(COUNT_KEYS, 0)
    for split in splits:
        for key, value in _split_counts(real, synthetic, split, **fit).items():
            counts[key] += value
    n_test = sum(counts.values())
    correct = counts["real_as_real"] + counts["synthetic_as_synthetic"]
    p_value = float(binomtest(correct, n_test, 0.5, alternative="greater").pvalue)
    lo, hi = proportion_interval(correct, n_test, level=level)
    return {"accuracy": correct / n_test, **counts,
            "n_train": len(splits[0]["real_train"]) + len(splits[0]["synthetic_train"]),
            "n_test": n_test, "p_value": p_value, "accuracy_lo": lo, "accuracy_hi": hi,
            "folds": len(splits) if folds is not None else 0,
            "mode": "features" if real.ndim == 2 else "pixels"}


COUNT_KEYS = ("real_as_real", "real_as_synthetic", "synthetic_as_real",
              "synthetic_as_synthetic")


def _split_counts(real: np.ndarray, synthetic: np.ndarray, split: dict[str, np.ndarray], *,
                  seed: int, epochs: int, batch_size: int, lr: float, width: int, device: str,
                  max_resolution: int | None) -> dict[str, int]:
    """Train on one split's training part, predict its test part: the confusion counts."""
    if min(len(v) for v in split.values()) < 1:
        raise ValueError("the group-aware split left a part without samples of one class")
    xr_tr, xr_te = (_gather(real, split[f"real_{p}"], "real", max_resolution)
                    for p in ("train", "test"))
    xs_tr, xs_te = (_gather(synthetic, split[f"synthetic_{p}"], "synthetic", max_resolution)
                    for p in ("train", "test"))
    x_train = np.concatenate([xr_tr, xs_tr])
    y_train = np.concatenate([np.zeros(len(xr_tr)), np.ones(len(xs_tr))]).astype(np.float32)
    x_test = np.concatenate([xr_te, xs_te])
    if real.ndim == 2:
        predicted = _features_predict(x_train, y_train, x_test, len(xr_tr), seed=seed)
    else:
        predicted = _pixels_predict(x_train, y_train, x_test, len(xr_tr), seed=seed,
                                    epochs=epochs, batch_size=batch_size, lr=lr, width=width,
                                    device=device)
    pred_r, pred_s = predicted[: len(xr_te)], predicted[len(xr_te):]
    return {"real_as_real": int((~pred_r).sum()), "real_as_synthetic": int(pred_r.sum()),
            "synthetic_as_real": int((~pred_s).sum()),
            "synthetic_as_synthetic": int(pred_s.sum())}


def _pixels_predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, n_real: int,
                    *, seed: int, epochs: int, batch_size: int, lr: float, width: int,
                    device: str) -> np.ndarray:
    """Train the CNN; boolean 'synthetic' predictions for ``x_test``."""
    sums = np.zeros((2, x_train.shape[1]))
    for start in range(0, n_real, 256):
        block = x_train[start:min(start + 256, n_real)].astype(np.float64)
        sums += [block.sum(axis=(0, 2, 3)), (block ** 2).sum(axis=(0, 2, 3))]
    count = n_real * x_train.shape[2] * x_train.shape[3]
    mean = sums[0] / count
    std = np.sqrt(np.maximum(sums[1] / count - mean ** 2, 0.0)).clip(min=1e-8)
    mean_t = torch.from_numpy(mean.astype(np.float32)).view(1, -1, 1, 1)
    std_t = torch.from_numpy(std.astype(np.float32)).view(1, -1, 1, 1)
    xt, xe, yt = torch.from_numpy(x_train), torch.from_numpy(x_test), torch.from_numpy(y_train)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TwoSampleClassifier(channels=xt.shape[1], resolution=xt.shape[2], width=width)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" \
        else torch.device(device)
    model.to(dev, memory_format=torch.channels_last)  # faster convolutions on CPU (oneDNN)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(xt), generator=generator)
        for start in range(0, len(xt), batch_size):
            idx = order[start:start + batch_size]
            batch = ((xt[idx] - mean_t) / std_t).to(dev, memory_format=torch.channels_last)
            loss = F.binary_cross_entropy_with_logits(model(batch), yt[idx].to(dev))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        logits = torch.cat([
            model(((xe[s:s + 256] - mean_t) / std_t).to(dev, memory_format=torch.channels_last))
            .cpu() for s in range(0, len(xe), 256)])
    return (logits > 0).numpy()


def _pool_to(x: np.ndarray, max_resolution: int) -> np.ndarray:
    """Average-pool square images by the smallest power-of-two factor that brings them to at
    most ``max_resolution`` px."""
    factor = 1
    while x.shape[2] // factor > max_resolution:
        factor *= 2
    if factor == 1:
        return x
    return F.avg_pool2d(torch.from_numpy(x), factor).numpy()


def _features_predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, n_real: int,
                      *, seed: int) -> np.ndarray:
    """Logistic regression on features standardised with the real training half's stats."""
    from sklearn.linear_model import LogisticRegression

    real_train = x_train[:n_real].astype(np.float64)
    mean, std = real_train.mean(axis=0), np.maximum(real_train.std(axis=0), 1e-8)
    clf = LogisticRegression(max_iter=1000, random_state=seed)
    clf.fit((x_train - mean) / std, y_train.astype(int))
    return clf.predict((x_test - mean) / std).astype(bool)
