"""Supervised GM-GAN (Ben-Yosef & Weinshall 2018): class-conditional synthesis from a mixture prior.

K Gaussians in the latent space, K a multiple of the N classes, mapped to classes by
f(k) = k mod N (Gaussians y, y + N, y + 2N, ... all belong to class y). G takes z only; the
class is carried by which Gaussian z came from. D outputs N per-class real/fake logits:
real (x, y) pushes logit y up, a fake G(z_k) pushes logit f(k) down, and G pushes logit f(k)
of G(z_k) up. To generate class y, pick one of its Gaussians uniformly.
"""
from __future__ import annotations

import torch
from torch import nn

from ..data import DataSpec
from ..errors import MixganError
from ..nets import build_discriminator
from . import losses
from .base import Batch, GANModel, SamplePlan, Samples, check_labelled, wrong_labels


class SupervisedGMGAN(GANModel):
    name = "gmgan-supervised"
    has_components = True
    class_conditional = True

    def check(self, spec: DataSpec) -> None:
        check_labelled(self.name, spec)
        k, n = self.cfg.prior.components, spec.num_classes
        if k % n:
            raise MixganError(f"gmgan-supervised needs components to be a multiple of the {n} classes, got {k}")

    def class_of(self, k: torch.Tensor) -> torch.Tensor:
        """f: Gaussian index -> class."""
        return k % self.num_classes

    def build_discriminator(self) -> nn.Module:
        m = self.cfg.model
        return build_discriminator(m.arch, self.shape, m.width, out_dim=self.num_classes,
                                   spectral_norm=m.spectral_norm)

    def fake(self, n, gen, grad, batch=None):
        eps, k = self.G.prior.draw(n, gen, device=self.device)
        return Batch(self.generate(eps, k, grad=grad), k=k, y=self.class_of(k))

    def d_logits(self, b: Batch, train: bool = True) -> torch.Tensor:
        """The logit of each sample's own class (y for real data, f(k) for fakes)."""
        logits = (self.D_train if train else self.D)(b.x)
        return logits.gather(1, b.y[:, None])[:, 0]

    def discriminator_loss(self, real: Batch, fake: Batch) -> torch.Tensor:
        """With ``model.mismatch``, D also pushes down the logit of a wrong class of each real image."""
        w = self.cfg.model.mismatch
        if not w:
            return super().discriminator_loss(real, fake)
        logits = self.D_train(real.x)
        own, wrong = (logits.gather(1, y[:, None])[:, 0] for y in (real.y, wrong_labels(real.y, self.num_classes)))
        return losses.d_loss(own, self.d_logits(fake), self.loss_kind) + w * losses.d_fake(wrong, self.loss_kind)

    def plan(self, n, component, label, generator, **request) -> SamplePlan:
        if component is not None and label is not None and component % self.num_classes != label:
            raise MixganError(f"component {component} belongs to class {component % self.num_classes}, not {label}")
        return super().plan(n, component, label, generator, **request)

    def sample_batch(self, plan: SamplePlan, scale, generator) -> Samples:
        eps, k = self.G.prior.draw(plan.n, generator, plan.component, device=self.device)
        if plan.label is not None and plan.component is None:
            k = (k // self.num_classes) * self.num_classes + plan.label  # uniform over class y's Gaussians
        return Samples(self.generator(eps, k, scale=scale), component=k, label=self.class_of(k))

    def grid_rows(self) -> tuple[int, dict]:
        return self.num_classes, {"label": list(range(self.num_classes))}
