"""AC-GAN (Odena et al. 2017): G takes a one-hot class with z; D has a real/fake head and an
auxiliary class head. (``model.condition`` does not apply: conditional BatchNorm in G trained far
worse for AC-GAN on fashion-mnist than concatenation.)

D minimises the adversarial loss plus the class cross-entropy on real and on generated
images; G minimises its adversarial loss plus the class cross-entropy of its samples. The
cross-entropies are taken on the aux head's logits (log-softmax inside), never on softmax
outputs, which would saturate.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..nets import build_discriminator
from . import losses
from .base import Batch
from .cgan import LabelConditioned


class ACGAN(LabelConditioned):
    name = "acgan"

    def build_discriminator(self) -> nn.Module:
        m = self.cfg.model
        return build_discriminator(m.arch, self.shape, m.width, aux_classes=self.num_classes,
                                   spectral_norm=m.spectral_norm)

    def d_logits(self, b: Batch, train: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """(real/fake logits, class logits)."""
        return (self.D_train if train else self.D)(b.x)

    def discriminator_loss(self, real, fake) -> torch.Tensor:
        adv_r, cls_r = self.d_logits(real)
        adv_f, cls_f = self.d_logits(fake)
        return (losses.d_loss(adv_r, adv_f, self.loss_kind)
                + F.cross_entropy(cls_r, real.y) + F.cross_entropy(cls_f, fake.y))

    def generator_loss(self, fake) -> torch.Tensor:
        adv, cls = self.d_logits(fake, train=False)
        return losses.g_loss(adv, self.loss_kind) + F.cross_entropy(cls, fake.y)
