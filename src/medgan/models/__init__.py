"""GAN architectures: a registry from an architecture name to its generator/discriminator builders.

Every builder takes the architecture config dict (``{"name": ..., <hyperparameters>}``) and the
data's ``channels`` and ``resolution``, and raises ``ValueError`` naming any unknown key.
Every generator exposes ``latent_dim``, ``channels`` and ``resolution`` and maps
``z`` (N, latent_dim) to (N, channels, resolution, resolution); every discriminator maps images to
logits (N,).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from torch import nn

from medgan.models import dcgan, kitchen, pggan, srresnet, stylegan2
from medgan.models.conditional import (
    ConditionalDiscriminator,
    ConditionalGenerator,
    LabelSlot,
    condition_size,
)


class Architecture(NamedTuple):
    """The two builders of one architecture, and its default config."""

    build_generator: Callable[..., nn.Module]
    build_discriminator: Callable[..., nn.Module]
    defaults: dict[str, Any]


ARCHITECTURES: dict[str, Architecture] = {
    "dcgan": Architecture(dcgan.build_generator, dcgan.build_discriminator, dcgan.DEFAULTS),
    "dcgan_delplace": Architecture(dcgan.build_delplace_generator,
                                   dcgan.build_delplace_discriminator, dcgan.DELPLACE_DEFAULTS),
    "srresnet": Architecture(srresnet.build_generator, srresnet.build_discriminator,
                             srresnet.DEFAULTS),
    "kitchen": Architecture(kitchen.build_generator, kitchen.build_discriminator,
                            kitchen.DEFAULTS),
    # Built at full size (last level, alpha 1); the progressive schedule is not yet in the trainer.
    "pggan": Architecture(pggan.build_generator, pggan.build_discriminator, pggan.DEFAULTS),
    # Karras et al. 2020; trained with the stylegan2 loss (lazy R1, ADA) of medgan.training.losses
    "stylegan2": Architecture(stylegan2.build_generator, stylegan2.build_discriminator,
                              stylegan2.DEFAULTS),
}


def get_architecture(arch: dict[str, Any]) -> Architecture:
    """The registry entry named by ``arch["name"]`` (``ValueError`` if missing or unknown)."""
    if not isinstance(arch, dict) or "name" not in arch:
        raise ValueError(f"architecture config must be a dict with a 'name' key, got {arch!r}")
    try:
        return ARCHITECTURES[arch["name"]]
    except KeyError:
        raise ValueError(f"unknown architecture {arch['name']!r}; known: "
                         f"{sorted(ARCHITECTURES)}") from None


def build_generator(arch: dict[str, Any], *, channels: int, resolution: int,
                    condition: dict[str, Any] | None = None,
                    slot: LabelSlot | None = None) -> nn.Module:
    """Build the generator of the architecture named in ``arch``; with a ``condition``
    (``classes``, ``embed_dim``) a class-conditional one (:mod:`medgan.models.conditional`)
    whose labels come from ``slot`` when not given."""
    n_classes, embed_dim = condition_size(condition)
    if n_classes:
        arch = {**arch, "latent_dim": resolved_config(arch)["latent_dim"] + embed_dim}
    G = get_architecture(arch).build_generator(arch, channels=channels, resolution=resolution)
    if not n_classes:
        return G
    if hasattr(G, "mixing_keep"):  # stylegan2: a mixing latent keeps the class embedding
        G.mixing_keep = embed_dim
    return ConditionalGenerator(G, n_classes=n_classes, embed_dim=embed_dim, slot=slot)


def build_discriminator(arch: dict[str, Any], *, channels: int, resolution: int,
                        condition: dict[str, Any] | None = None,
                        slot: LabelSlot | None = None) -> nn.Module:
    """Build the discriminator of the architecture named in ``arch`` (class-conditional with a
    ``condition``, see :func:`build_generator`)."""
    n_classes, _ = condition_size(condition)
    D = get_architecture(arch).build_discriminator(arch, channels=channels + n_classes,
                                                   resolution=resolution)
    return ConditionalDiscriminator(D, n_classes=n_classes, slot=slot) if n_classes else D


def resolved_config(arch: dict[str, Any]) -> dict[str, Any]:
    """``arch`` with the architecture's defaults filled in (for recording beside results)."""
    return {**get_architecture(arch).defaults, **arch}


__all__ = ["ARCHITECTURES", "Architecture", "build_discriminator", "build_generator",
           "get_architecture", "resolved_config"]
