"""Task networks: train one on a :class:`~medgan.analysis.utility.tasks.TaskData` set, score it.

* segmenter: the project's small U-net (:class:`~medgan.models.unet.VesselUNet`, ``depth`` and
  ``width`` from the settings, BatchNorm, one logit per target channel), loss binary cross
  entropy + soft Dice;
* classifier: :class:`TaskClassifier`, 3x3 convolution + BatchNorm + ReLU + 2x2 max-pooling
  blocks down to 4x4 (widths ``width * 2**i``, capped at ``8 width``), global average pool,
  linear; cross entropy.

Both train for a fixed number of Adam steps on batches drawn uniformly with replacement from the
whole training set (real and synthetic pooled), so every training set gets the same compute.
Inputs are standardised per channel with a fixed ``norm`` (the real training split's mean and
standard deviation). Classic augmentation (:func:`augment_batch`) draws, per image, flips
(horizontal only where the task allows it: it would swap a fundus photo's laterality), a
rotation of up to ``rotation_deg`` and an intensity change ``x * (1 + a) + b`` with ``a, b``
uniform in +-``intensity``. Everything is seeded: the same seed gives the same network.

Metrics on the held-out real images (:func:`score_task`): segmentation Dice over all pixels of
the set pooled (2 |P and T| / (|P| + |T|), prediction = probability > 0.5; a slice without tumour
adds only its false positives), the whole tumour being the union of the labels, and for vessels
the ROC AUC of the probabilities over all pixels; classification ROC AUC (one-vs-rest, macro,
for more than two classes) and balanced accuracy of the arg-max class.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from medgan.analysis.utility.tasks import CLASSIFICATION, VESSELS, Task, TaskData

FIT_DEFAULTS: dict[str, Any] = {"steps": 200, "batch_size": 32, "lr": 3e-3, "width": 8,
                                "depth": 2}
AUGMENT_DEFAULTS: dict[str, Any] = {"flip": True, "rotation_deg": 10.0, "intensity": 0.1}


class TaskClassifier(nn.Module):
    """``(N, C, R, R) -> (N, n_classes)`` logits; R >= 8."""

    def __init__(self, *, channels: int, resolution: int, n_classes: int, width: int = 8):
        super().__init__()
        layers: list[nn.Module] = []
        c, size, i = channels, resolution, 0
        while size > 4:
            out = width * min(2 ** i, 8)
            layers += [nn.Conv2d(c, out, 3, padding=1, bias=False), nn.BatchNorm2d(out),
                       nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            c, size, i = out, size // 2, i + 1
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(c, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).mean(dim=(2, 3)))


def build_task_net(task: Task, *, channels: int, resolution: int, n_classes: int = 2,
                   width: int = 8, depth: int = 2) -> nn.Module:
    if task.kind == CLASSIFICATION:
        return TaskClassifier(channels=channels, resolution=resolution, n_classes=n_classes,
                              width=width)
    from medgan.models.unet import build_unet

    depth = min(depth, int(math.log2(resolution & -resolution)))  # sides divisible by 2**depth
    return build_unet({"depth": depth, "width": width, "in_channels": channels,
                       "out_channels": len(task.targets)})


def _rotation_grid(angles: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    cos, sin = torch.cos(angles), torch.sin(angles)
    zero = torch.zeros_like(angles)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    return F.affine_grid(theta, [len(angles), 1, *size], align_corners=False)


def augment_batch(x: torch.Tensor, y: torch.Tensor | None, generator: torch.Generator, *,
                  flip: bool = True, hflip: bool = True, rotation_deg: float = 10.0,
                  intensity: float = 0.1) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Classic augmentation of a batch (see the module docstring); ``y`` (masks, or None for
    class labels) gets the same flips and rotation, thresholded back to {0, 1}."""
    n = len(x)

    def draw(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator).to(x.device)

    if flip:
        for dim, allowed in ((3, hflip), (2, True)):
            if not allowed:
                continue
            sel = draw(n) < 0.5
            x = torch.where(sel[:, None, None, None], x.flip(dim), x)
            if y is not None:
                y = torch.where(sel[:, None, None, None], y.flip(dim), y)
    if rotation_deg > 0:
        angles = (draw(n) * 2 - 1) * math.radians(rotation_deg)
        grid = _rotation_grid(angles, tuple(x.shape[2:]))
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        if y is not None:
            y = (F.grid_sample(y, grid, mode="bilinear", padding_mode="zeros",
                               align_corners=False) > 0.5).to(y.dtype)
    if intensity > 0:
        scale = 1 + (draw(n, x.shape[1], 1, 1) * 2 - 1) * intensity
        shift = (draw(n, x.shape[1], 1, 1) * 2 - 1) * intensity
        x = x * scale + shift
    return x, y


def _loss(task: Task, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if task.kind == CLASSIFICATION:
        return F.cross_entropy(logits, y)
    prob = torch.sigmoid(logits)
    inter = (prob * y).sum()
    dice = 1 - (2 * inter + 1) / (prob.sum() + y.sum() + 1)
    return F.binary_cross_entropy_with_logits(logits, y) + dice


def fit_task_net(task: Task, data: TaskData, *, norm: tuple[np.ndarray, np.ndarray],
                 seed: int, n_classes: int = 2, augment: dict[str, Any] | None = None,
                 device: str | torch.device = "cpu", **settings: Any) -> nn.Module:
    """A task network trained on ``data`` (see the module docstring); ``augment``: the classic
    augmentation's settings, None for none; ``settings``: :data:`FIT_DEFAULTS`' keys."""
    cfg = {**FIT_DEFAULTS, **settings}
    unknown = sorted(set(cfg) - set(FIT_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown task-network setting(s) {unknown}")
    if len(data) == 0:
        raise ValueError(f"task {task.name}: no training images")
    torch.manual_seed(seed)
    net = build_task_net(task, channels=data.x.shape[1], resolution=data.x.shape[-1],
                         n_classes=n_classes, width=cfg["width"], depth=cfg["depth"]).to(device)
    x = _standardise(data.x, norm).to(device)
    y = torch.from_numpy(np.ascontiguousarray(data.y)).to(device)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"])
    aug = None if augment is None else {**AUGMENT_DEFAULTS, **augment}
    net.train()
    for _ in range(cfg["steps"]):
        idx = torch.randint(len(x), (min(cfg["batch_size"], max(len(x), 2)),), generator=gen)
        xb, yb = x[idx.to(device)], y[idx.to(device)]
        if aug is not None:
            xb, masks = augment_batch(xb, None if task.kind == CLASSIFICATION else yb, gen,
                                      hflip=task.column != "laterality", **aug)
            yb = yb if masks is None else masks
        loss = _loss(task, net(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return net.eval()


def _standardise(x: np.ndarray, norm: tuple[np.ndarray, np.ndarray]) -> torch.Tensor:
    mean, std = (torch.as_tensor(np.asarray(v, np.float32))[None, :, None, None] for v in norm)
    return (torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)) - mean) / std


@torch.no_grad()
def predict(net: nn.Module, x: np.ndarray, *, norm: tuple[np.ndarray, np.ndarray],
            device: str | torch.device = "cpu", batch_size: int = 256) -> np.ndarray:
    """Probabilities: (N, K, H, W) sigmoid (segmenter) or (N, n_classes) softmax."""
    out = []
    for i in range(0, len(x), batch_size):
        logits = net(_standardise(x[i:i + batch_size], norm).to(device)).float()
        out.append((torch.softmax(logits, 1) if logits.ndim == 2 else torch.sigmoid(logits))
                   .cpu().numpy())
    return np.concatenate(out)


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two boolean arrays pooled over all their elements; NaN when both are empty."""
    total = int(pred.sum()) + int(truth.sum())
    return math.nan if total == 0 else 2.0 * int((pred & truth).sum()) / total


def score_task(task: Task, net: nn.Module, test: TaskData, *,
               norm: tuple[np.ndarray, np.ndarray], n_classes: int = 2,
               device: str | torch.device = "cpu") -> dict[str, float]:
    """The task's metrics (:attr:`Task.metrics`) of ``net`` on ``test``; NaN where undefined
    (e.g. an AUC on one class)."""
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    prob = predict(net, test.x, norm=norm, device=device)
    if task.kind == CLASSIFICATION:
        y = test.y
        present = np.unique(y)
        if len(present) < 2:
            auc = math.nan
        elif n_classes == 2:
            auc = float(roc_auc_score(y, prob[:, 1]))
        else:
            auc = float(roc_auc_score(y, prob, multi_class="ovr", labels=list(range(n_classes))))
        return {"auc": auc, "balanced_accuracy": float(balanced_accuracy_score(
            y, prob.argmax(1)))}
    truth = test.y > 0.5
    pred = prob > 0.5
    if task.name == VESSELS:
        t = truth.ravel()
        auc = float(roc_auc_score(t, prob.ravel())) if 0 < t.sum() < t.size else math.nan
        return {"auc": auc, "dice": dice(pred, truth)}
    out = {f"dice_{name}": dice(pred[:, k], truth[:, k]) for k, name in enumerate(task.targets)}
    out["dice_whole_tumour"] = dice(pred.any(1), truth.any(1))
    return out
