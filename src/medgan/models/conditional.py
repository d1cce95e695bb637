"""Class-conditional generator and discriminator around any architecture of the registry.

As in Mirza & Osindero 2014 (conditional GANs), the class label joins the generator's latent
and the discriminator's image:

* :class:`ConditionalGenerator`: a learned label embedding (``embed_dim`` numbers per class) is
  concatenated to the latent ``z``; the architecture's generator is built with
  ``latent_dim + embed_dim`` inputs and ``latent_dim`` stays the noise size that callers draw;
* :class:`ConditionalDiscriminator`: the label as one-hot maps (one channel per class, at the
  image's size, so at every stage of progressive growing) is concatenated to the image; the
  architecture's discriminator is built with ``channels + n_classes`` input channels.

This wraps every architecture the same way (``dcgan``, ``dcgan_delplace``, ``srresnet``,
``kitchen``, ``pggan``: each has a ``latent_dim`` and a channel count); calls other than
``forward`` (``set_stage``, ``current_resolution`` of ``pggan``) reach the wrapped model.

Labels: ``G(z, labels)`` and ``D(x, labels)`` take them explicitly. The training step calls
``G(z)`` and ``D(x)`` (the loss objects know nothing of classes), so both wrappers of one run
share a :class:`LabelSlot` that the training loop fills with the labels of each real batch:
the fake images of a discriminator step and of the following generator step are generated
with the labels of that real batch (and a gradient penalty's interpolates carry them too). A
model called without labels and with an empty slot (analyses that know nothing of classes:
interpolation, the encoder) uses class 0 for every image, so that a latent walk stays in one
class; :func:`~medgan.training.generate.generate_from` draws classes from the training
frequencies instead.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

EMBED_DIM = 8


class LabelSlot:
    """The class labels (N,) of the current batch, shared by a run's G and D (or None)."""

    def __init__(self) -> None:
        self.labels: torch.Tensor | None = None


class _Wrapper(nn.Module):
    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("base"), name)

    def _labels(self, n: int, labels: torch.Tensor | None, device: torch.device) -> torch.Tensor:
        if labels is None:
            labels = self.slot.labels
        if labels is None:
            labels = torch.zeros(n, dtype=torch.long, device=device)
        if labels.shape != (n,):
            raise ValueError(f"{type(self).__name__}: {tuple(labels.shape)} labels for a batch "
                             f"of {n}")
        return labels.to(device=device, dtype=torch.long)


class ConditionalGenerator(_Wrapper):
    """``(z, labels) -> images``: ``base`` (built for ``latent_dim + embed_dim`` inputs) on
    ``[z, embedding(labels)]``."""

    def __init__(self, base: nn.Module, *, n_classes: int, embed_dim: int = EMBED_DIM,
                 slot: LabelSlot | None = None):
        super().__init__()
        if n_classes < 2:
            raise ValueError(f"a class-conditional model needs at least 2 classes, got {n_classes}")
        self.base, self.n_classes, self.embed_dim = base, n_classes, embed_dim
        self.embedding = nn.Embedding(n_classes, embed_dim)
        self.slot = slot or LabelSlot()

    @property
    def latent_dim(self) -> int:
        return self.base.latent_dim - self.embed_dim

    def latent_input(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The wrapped generator's input ``[z, embedding(labels)]``."""
        y = self._labels(z.shape[0], labels, z.device)
        return torch.cat([z, self.embedding(y).to(z.dtype)], dim=1)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.base(self.latent_input(z, labels))


class ConditionalDiscriminator(_Wrapper):
    """``(x, labels) -> logits``: ``base`` (built for ``channels + n_classes`` channels) on the
    image with one-hot label maps."""

    def __init__(self, base: nn.Module, *, n_classes: int, slot: LabelSlot | None = None):
        super().__init__()
        self.base, self.n_classes = base, n_classes
        self.slot = slot or LabelSlot()

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        y = self._labels(x.shape[0], labels, x.device)
        maps = F.one_hot(y, self.n_classes).to(x.dtype)[:, :, None, None]
        return self.base(torch.cat([x, maps.expand(-1, -1, *x.shape[2:])], dim=1))


def condition_size(condition: dict[str, Any] | None) -> tuple[int, int]:
    """``(n_classes, embed_dim)`` of a resolved ``condition`` config (``(0, 0)``: none)."""
    if not condition:
        return 0, 0
    return len(condition["classes"]), int(condition.get("embed_dim", EMBED_DIM))
