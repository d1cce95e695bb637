"""Downstream tasks of a model: what a task network learns from its images, per dataset kind.

A :class:`Task` names the channels a task network reads and what it predicts:

* **segmentation** where the GAN generates label channels: BraTS tumour labels (inputs: the
  model's MRI sequences; targets: its ``edema``, ``necrosis``, ``enhancing`` channels, binary
  at > 0.5; Dice per label and of the whole tumour, their union) and fundus vessels (inputs
  ``R, G, B``; target the ``vessels`` channel, ``2 p - 1`` of the U-net probability, vessel
  at > 0; ROC AUC and Dice);
* **classification** where meta.tsv has a label: BraTS tumour presence per slice (from the
  label channels when the model generates them: a slice with tumour has at least
  ``min_tumour_px`` label pixels, in real and synthetic images alike), and any column a
  class-conditional model is conditioned on (``condition.column``: ProstateX ``ClinSig``, fundus
  ``laterality``, BraTS ``tumour``); ROC AUC and balanced accuracy.

:func:`model_tasks` lists the tasks of a model; :meth:`Task.from_images` turns images of the
model's channels (real or generated) and their class labels into :class:`TaskData`.
:func:`~medgan.data.classes.label_column` reads a class column of meta.tsv, with the derived
column ``tumour`` (``tumour_px > 0``) for BraTS; the class-conditional generator uses the same
classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from medgan.data.classes import class_names, encode_labels, label_column
from medgan.data.labels import LABEL_CHANNELS

SEGMENTATION, CLASSIFICATION = "segmentation", "classification"
FUNDUS_RGB, VESSELS = ("R", "G", "B"), "vessels"


@dataclass
class TaskData:
    """Images of one task: ``x`` (N, C, H, W) float32 inputs, ``y`` the targets - (N, K, H, W)
    float32 in {0, 1} (segmentation) or (N,) int64 class indices (classification) - and
    ``groups`` (N,) the patient of each image (empty strings for synthetic images)."""

    x: np.ndarray
    y: np.ndarray
    groups: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.groups is None:
            self.groups = np.full(len(self.x), "", dtype=object)
        if not (len(self.x) == len(self.y) == len(self.groups)):
            raise ValueError(f"TaskData: {len(self.x)} images, {len(self.y)} targets and "
                             f"{len(self.groups)} groups")

    def __len__(self) -> int:
        return len(self.x)

    def take(self, idx: np.ndarray) -> TaskData:
        return TaskData(self.x[idx], self.y[idx], self.groups[idx])

    @staticmethod
    def concat(parts: Sequence[TaskData]) -> TaskData:
        parts = [p for p in parts if len(p)]
        return TaskData(np.concatenate([p.x for p in parts]), np.concatenate([p.y for p in parts]),
                        np.concatenate([p.groups for p in parts]))


@dataclass(frozen=True)
class Task:
    """One downstream task of a model (see the module docstring).

    ``inputs``: channel names fed to the network; ``targets``: segmentation target channels;
    ``column``: the meta.tsv class column of a classification task (None when the label
    channels give the labels); ``classes``: the class names, index = class label;
    ``threshold``: target channels are foreground above it; ``conditional``: synthetic images
    are generated for given class labels.
    """

    name: str
    kind: str
    inputs: tuple[str, ...]
    targets: tuple[str, ...] = ()
    threshold: float = 0.5
    column: str | None = None
    classes: tuple[str, ...] = ()
    conditional: bool = False
    min_tumour_px: int = 1

    @property
    def metrics(self) -> list[str]:
        if self.kind == CLASSIFICATION:
            return ["auc", "balanced_accuracy"]
        if self.name == VESSELS:
            return ["auc", "dice"]
        return [f"dice_{t}" for t in self.targets] + ["dice_whole_tumour"]

    @property
    def main_metric(self) -> str:
        return self.metrics[-1] if self.name != VESSELS and self.kind == SEGMENTATION \
            else self.metrics[0]

    def from_images(self, images: np.ndarray, channels: Sequence[str],
                    labels: np.ndarray | None = None,
                    groups: np.ndarray | None = None) -> TaskData:
        """The task's inputs and targets from ``images`` (N, C, H, W) of ``channels``;
        ``labels``: class indices of a classification task whose labels are not in the
        channels (meta.tsv for real images, the condition for generated ones)."""
        channels = list(channels)
        missing = [c for c in (*self.inputs, *self.targets) if c not in channels]
        if missing:
            raise ValueError(f"task {self.name}: images lack channel(s) {missing}; they have "
                             f"{channels}")
        x = np.ascontiguousarray(images[:, [channels.index(c) for c in self.inputs]],
                                 dtype=np.float32)
        if self.kind == SEGMENTATION or self.column is None:
            masks = images[:, [channels.index(c) for c in self.targets]] > self.threshold
        if self.kind == SEGMENTATION:
            y = masks.astype(np.float32)
        elif self.column is None:  # tumour presence from the label channels
            y = (masks.any(axis=1).sum(axis=(1, 2)) >= self.min_tumour_px).astype(np.int64)
        else:
            if labels is None:
                raise ValueError(f"task {self.name}: class labels are needed")
            y = np.asarray(labels, dtype=np.int64)
        return TaskData(x, y, None if groups is None else np.asarray(groups, dtype=object))


def model_tasks(*, kind: str, channels: Sequence[str], condition: dict[str, Any] | None = None,
                min_tumour_px: int = 1) -> list[Task]:
    """The downstream tasks of a model of ``channels`` on a dataset of ``kind``
    (``condition``: the model's ``condition`` section, with the ``classes`` its checkpoint
    records). Empty when the model generates no labels."""
    channels = list(channels)
    tasks: list[Task] = []
    column = (condition or {}).get("column")
    if kind == "brats":
        labels = tuple(c for c in LABEL_CHANNELS if c in channels)
        images = tuple(c for c in channels if c not in LABEL_CHANNELS)
        if labels and images:
            tasks.append(Task("tumour_labels", SEGMENTATION, images, labels, threshold=0.5))
            if column != "tumour":
                tasks.append(Task("tumour_presence", CLASSIFICATION, images, labels,
                                  threshold=0.5, classes=("no", "yes"),
                                  min_tumour_px=min_tumour_px))
    if kind == "fundus" and VESSELS in channels and all(c in channels for c in FUNDUS_RGB):
        tasks.append(Task(VESSELS, SEGMENTATION, FUNDUS_RGB, (VESSELS,), threshold=0.0))
    if column:
        classes = tuple(str(c) for c in (condition or {}).get("classes", ()))
        name = "tumour_presence" if column == "tumour" else column
        tasks.append(Task(name, CLASSIFICATION, tuple(channels), column=column,
                          classes=classes, conditional=True))
    return tasks


__all__ = ["CLASSIFICATION", "SEGMENTATION", "Task", "TaskData", "class_names", "encode_labels",
           "label_column", "model_tasks"]
