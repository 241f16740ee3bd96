"""Conditional GAN (Mirza & Osindero 2014): the condition is fed to both G and D.

The condition is a one-hot class label, or any real vector when the data carries one
(``npz:PATH`` with an array ``c``). On conv bodies (``model.condition=auto``, the default) it
enters G through conditional BatchNorm and D through a projection head, as in the SNGAN/BigGAN
family, far better on images than concatenation (docs/conditional.md). ``model.condition=concat``
gives the paper's wiring: the condition joins z at G's input and x at D's (constant extra channels of an image,
extra inputs of a vector); ``arch=cgan-mlp`` is the paper's MNIST network.

With ``model.mismatch`` (on in the image-cgan recipe) D also scores every real image paired with a
wrong class as a fake, a matching-aware D (Reed et al. 2016), which raises conditional accuracy
and lowers FID (benchmarks/results/conditional.md). ``model.class_weight`` adds an auxiliary class
head to D instead.

Two classes share the name ``cgan`` (``models.build_model`` picks by the data): :class:`CGAN` on
class labels and :class:`VectorCGAN` on condition vectors. The vector one keeps up to ``BANK_ROWS``
training conditions in its checkpoint, so sampling without conditions draws them from the data:
p(x) = mean_i p(x | c_i).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..data import DataSpec, Dataset
from ..errors import MixganError
from ..nets import build_discriminator, resolve_arch
from . import losses
from .base import Batch, GANModel, SamplePlan, Samples, check_labelled, held, wrong_labels

BANK_ROWS = 10_000
BANK_VALUES = 2_000_000  # cap on rows x cond_dim kept in a checkpoint


class ConcatCondition(nn.Module):
    """A discriminator body over x joined with the condition."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor, cond: torch.Tensor):
        if x.ndim == 4:
            cond = cond[:, :, None, None].expand(-1, -1, *x.shape[2:])
        else:
            x = x.flatten(1)
        return self.body(torch.cat([x, cond.to(x.dtype)], 1))


class LabelConditioned(GANModel):
    """A generator fed a one-hot class: labels drawn uniformly, recorded in Samples, one grid row per class."""

    class_conditional = True

    def check(self, spec: DataSpec) -> None:
        check_labelled(self.name, spec)

    def g_cond_dim(self) -> int:
        return self.num_classes

    def one_hot(self, y: torch.Tensor) -> torch.Tensor:
        return F.one_hot(y, self.num_classes).float()

    def draw_labels(self, n: int, gen: torch.Generator | None) -> torch.Tensor:
        return torch.randint(self.num_classes, (n,), generator=gen, device=self.device)

    def condition(self, b: Batch) -> torch.Tensor:
        """The vector G and D see for a batch: its one-hot labels."""
        return self.one_hot(b.y)

    def fake(self, n, gen, grad, batch=None) -> Batch:
        eps, k = self.G.prior.draw(n, gen, device=self.device)
        y = self.draw_labels(n, gen)
        return Batch(self.generate(eps, k, self.one_hot(y), grad), y=y)

    def sample_batch(self, plan: SamplePlan, scale, generator) -> Samples:
        n = plan.n
        eps, k = self.G.prior.draw(n, generator, device=self.device)
        y = (torch.full((n,), plan.label, dtype=torch.long, device=self.device) if plan.label is not None
             else self.draw_labels(n, generator))
        return Samples(self.generator(eps, k, self.one_hot(y), scale=scale), label=y)

    def grid_rows(self) -> tuple[int, dict]:
        return self.num_classes, {"label": list(range(self.num_classes))}


class ConditionWiring(GANModel):
    """How a cGAN's condition (``condition(batch)``, ``g_cond_dim()`` wide) enters G and D."""

    @property
    def modern_condition(self) -> bool:
        """``model.condition=auto`` on a conv body: the condition enters G by conditional BatchNorm and
        D by projection (Miyato & Koyama 2018), not by concatenation as in the paper."""
        return self.cfg.model.condition == "auto" and self.conv_body

    def g_cond_mode(self) -> str:
        return "cbn" if self.modern_condition else "concat"

    def build_discriminator(self) -> nn.Module:
        m, cd = self.cfg.model, self.g_cond_dim()
        aux = self.num_classes if m.class_weight else 0
        if self.modern_condition or resolve_arch(m.arch, self.shape) == "cgan-mlp":
            return build_discriminator(m.arch, self.shape, m.width, cond_dim=cd, aux_classes=aux,
                                       spectral_norm=m.spectral_norm)
        shape = (self.shape[0] + cd, *self.shape[1:]) if len(self.shape) == 3 else (sum(self.shape) + cd,)
        return ConcatCondition(build_discriminator(m.arch, shape, m.width, aux_classes=aux,
                                                   spectral_norm=m.spectral_norm))

    def d_logits(self, b: Batch, train: bool = True):
        """D's real/fake logits for (x, condition); with ``class_weight``, also its class logits."""
        return (self.D_train if train else self.D)(b.x, self.condition(b))


class CGAN(LabelConditioned, ConditionWiring):
    """cGAN on class labels."""

    name = "cgan"

    def discriminator_loss(self, real: Batch, fake: Batch) -> torch.Tensor:
        m = self.cfg.model
        if not (m.class_weight or m.mismatch):
            return super().discriminator_loss(real, fake)
        adv_r, cls_r, adv_wrong = self.real_outputs(real)
        loss = losses.d_loss(adv_r, self.split(self.d_logits(fake))[0], self.loss_kind)
        if m.class_weight:
            loss = loss + m.class_weight * F.cross_entropy(cls_r, real.y)
        if m.mismatch:
            loss = loss + m.mismatch * losses.d_fake(adv_wrong, self.loss_kind)
        return loss

    def real_outputs(self, real: Batch) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """D on real images: logits of the true pairs, class logits (``class_weight``), and with
        ``mismatch`` the logits of each image paired with a wrong class."""
        if not self.cfg.model.mismatch:
            return (*self.split(self.d_logits(real)), None)
        wrong = self.one_hot(wrong_labels(real.y, self.num_classes))
        if self.modern_condition:  # the projection is linear in the condition: both pairs from one pass
            adv, cls = self.split(self.D_train(real.x, torch.stack([self.condition(real), wrong], 1)))
            return adv[:, :1], cls, adv[:, 1:]
        adv, cls = self.split(self.d_logits(real))
        return adv, cls, self.split(self.D_train(real.x, wrong))[0]

    def generator_loss(self, fake: Batch) -> torch.Tensor:
        if not self.cfg.model.class_weight:
            return super().generator_loss(fake)
        adv, cls = self.d_logits(fake, train=False)
        return losses.g_loss(adv, self.loss_kind) + self.cfg.model.class_weight * F.cross_entropy(cls, fake.y)

    @staticmethod
    def split(out) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(real/fake logits, class logits or None) from D's output, with or without a class head."""
        return out if isinstance(out, tuple) else (out, None)


class VectorCGAN(ConditionWiring):
    """cGAN on real-valued condition vectors (the data's ``c``): the paper's multimodal case."""

    name = "cgan"
    accepts_condition_vectors = True
    cond_bank = held()  # up to BANK_ROWS training conditions, kept in checkpoints to sample without conditions

    def __init__(self, cfg, spec: DataSpec, device: torch.device | str = "cpu"):
        super().__init__(cfg, spec, device)
        self.cond_bank = torch.zeros(0, spec.cond_dim)

    def check(self, spec: DataSpec) -> None:
        if self.cfg.model.class_weight or self.cfg.model.mismatch:
            raise MixganError("class_weight and mismatch need class labels; this cgan is conditioned on vectors")

    def g_cond_dim(self) -> int:
        return self.spec.cond_dim

    def condition(self, b: Batch) -> torch.Tensor:
        return b.c

    def attach_data(self, data: Dataset) -> None:
        super().attach_data(data)
        c = data.cond_train.float()
        self.cond_bank = c[:min(len(c), BANK_ROWS, max(1, BANK_VALUES // self.spec.cond_dim))].clone()

    def fake(self, n, gen, grad, batch=None) -> Batch:
        eps, k = self.G.prior.draw(n, gen, device=self.device)
        c = batch.c[:n] if batch is not None and len(batch.c) >= n else self.draw_conditions(n, gen)
        return Batch(self.generate(eps, k, c, grad), c=c)

    def draw_conditions(self, n: int, gen: torch.Generator | None) -> torch.Tensor:
        if len(self.cond_bank) == 0:
            raise MixganError("this cgan is conditioned on vectors: give the conditions (cond=..., or --cond FILE.npz)")
        return self.cond_bank[torch.randint(len(self.cond_bank), (n,), generator=gen, device=self.device)]

    def extra_tensors(self) -> dict[str, torch.Tensor]:
        return {"cond_bank": self.cond_bank.contiguous()}

    def load_extra_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        if "cond_bank" in tensors:
            self.cond_bank = tensors["cond_bank"].float()

    def as_conditions(self, cond, n: int) -> torch.Tensor:
        """``cond`` as an n x cond_dim tensor: one row per sample, or one row (or vector) for all."""
        c = torch.as_tensor(cond, dtype=torch.float32, device=self.device)
        if c.ndim == 1:
            c = c[None]
        if c.ndim != 2 or c.shape[1] != self.spec.cond_dim:
            raise MixganError(f"conditions must have {self.spec.cond_dim} columns, got shape {tuple(c.shape)}")
        if len(c) == 1:
            c = c.expand(n, -1)
        if len(c) != n:
            raise MixganError(f"got {len(c)} conditions for {n} samples")
        if not torch.isfinite(c).all():
            raise MixganError("conditions contain NaN or infinite values")
        return c

    def plan(self, n, component, label, generator, cond=None, **request) -> SamplePlan:
        """As GANModel's; ``cond`` gives each sample's condition."""
        plan = super().plan(n, component, label, generator, **request)
        if cond is not None:
            plan.cond = self.as_conditions(cond, n)
        return plan

    def sample_batch(self, plan: SamplePlan, scale, generator) -> Samples:
        eps, k = self.G.prior.draw(plan.n, generator, device=self.device)
        c = plan.cond if plan.cond is not None else self.draw_conditions(plan.n, generator)
        return Samples(self.generator(eps, k, c, scale=scale), cond=c)
