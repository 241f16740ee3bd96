"""Unsupervised GM-GAN (Ben-Yosef & Weinshall 2018): a Gaussian-mixture latent prior.

Static or dynamic by ``prior.dynamic``; the losses are the plain GAN's, the difference is
where z comes from. Sampling can pick a component and scale every covariance by s^2.

``model.info_weight > 0`` adds an option the paper does not have: D gets a second head that
predicts which Gaussian k made a generated image, and both D and G minimise its cross-entropy
on generated images (InfoGAN's mutual-information term with the Gaussian index as the
categorical code). It asks G to make the Gaussians tell apart, which the plain objective
never does.

Composition: with ``encoder.enabled`` the model ``gmgan`` is
:class:`~mixgan.models.gmgan_encoder.GMGANWithEncoder` (``models.build_model`` chooses), this model
with an encoder trained beside G. It extends the hooks this class inherits from
:class:`~mixgan.models.base.GANModel` (``build_discriminator``, ``batch``, ``fake``, ``d_logits``,
``generator_step``, ``modules``); nothing here depends on it.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from ..nets import build_discriminator
from . import losses
from .base import GANModel


class GMGAN(GANModel):
    name = "gmgan"
    has_components = True

    @property
    def info_weight(self) -> float:
        return self.cfg.model.info_weight

    def build_discriminator(self) -> nn.Module:
        if not self.info_weight:
            return super().build_discriminator()
        m = self.cfg.model
        return build_discriminator(m.arch, self.shape, m.width, aux_classes=self.cfg.prior.components,
                                   spectral_norm=m.spectral_norm)

    def discriminator_loss(self, real, fake):
        if not self.info_weight:
            return super().discriminator_loss(real, fake)
        (adv_r, _), (adv_f, which) = self.D_train(real.x), self.D_train(fake.x)
        return losses.d_loss(adv_r, adv_f, self.loss_kind) + self.info_weight * F.cross_entropy(which, fake.k)

    def generator_loss(self, fake):
        if not self.info_weight:
            return super().generator_loss(fake)
        adv, which = self.D(fake.x)
        return losses.g_loss(adv, self.loss_kind) + self.info_weight * F.cross_entropy(which, fake.k)
