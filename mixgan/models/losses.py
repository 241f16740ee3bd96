"""Adversarial losses on logits. Each model picks one by ``model.loss``."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def d_loss(real: torch.Tensor, fake: torch.Tensor, kind: str = "ns") -> torch.Tensor:
    """Discriminator loss: push real logits up and fake logits down."""
    return d_fake(-real, kind) + d_fake(fake, kind)


def d_fake(fake: torch.Tensor, kind: str = "ns") -> torch.Tensor:
    """D's loss on logits it should push down (fakes; for a real one, pass its negation)."""
    if kind == "hinge":
        return F.relu(1 + fake).mean()
    return F.softplus(fake).mean()


def g_loss(fake: torch.Tensor, kind: str = "ns") -> torch.Tensor:
    """Generator loss: the non-saturating -log D(G(z)), or -D(G(z)) for hinge."""
    if kind == "hinge":
        return -fake.mean()
    return F.softplus(-fake).mean()
