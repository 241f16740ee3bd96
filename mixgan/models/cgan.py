"""Conditional GAN (Mirza & Osindero 2014): the condition is fed to both G and D.

The condition is a one-hot class label, or any real vector when the data carries one
(``npz:PATH`` with an array ``c``). In G it joins z at the input of the first hidden layer
(or, with ``arch=cgan-mlp``, the paper's separate z and y layers meet in a joint hidden
layer). In D it joins x: as constant extra channels of an image, extra inputs of a vector,
or the paper's y maxout branch with ``arch=cgan-mlp``.

Vector-conditioned models keep up to ``BANK_ROWS`` training conditions in their checkpoint,
so sampling without conditions draws them from the data: p(x) = mean_i p(x | c_i).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..data import DataSpec, Dataset
from ..errors import MixganError
from ..nets import build_discriminator, resolve_arch
from .base import Batch, GANModel, Samples
from .gmgan_supervised import check_labelled

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

    def condition(self, info: dict) -> torch.Tensor:
        """The vector G and D see for a batch: its conditions ``c``, or its one-hot labels."""
        return info["c"] if "c" in info else self.one_hot(info["y"])

    def fake(self, n, gen, grad, batch=None):
        eps, k = self.G.prior.draw(n, gen, device=self.device)
        info = {"y": self.draw_labels(n, gen)}
        g = self.G_train if grad else self.G
        with torch.set_grad_enabled(grad):
            return g(eps, k, self.condition(info)), info

    def sample_batch(self, n, component, scale, label, generator, **kwargs) -> Samples:
        eps, k = self.G.prior.draw(n, generator, device=self.device)
        y = (torch.full((n,), label, dtype=torch.long, device=self.device) if label is not None
             else self.draw_labels(n, generator))
        x = self.generator(eps, k, self.one_hot(y), scale=scale).float().cpu()
        return Samples(x, label=y.cpu())

    def grid_rows(self) -> tuple[int, dict]:
        return self.num_classes, {"label": list(range(self.num_classes))}


class CGAN(LabelConditioned):
    name = "cgan"

    def check(self, spec: DataSpec) -> None:
        self.vector = spec.cond_dim > 0
        if self.vector:
            self.class_conditional = False
        else:
            check_labelled(self.name, spec)
        self.cond_bank = torch.zeros(0, spec.cond_dim)

    def g_cond_dim(self) -> int:
        return self.spec.cond_dim if self.vector else self.num_classes

    def build_discriminator(self) -> nn.Module:
        m, cd = self.cfg.model, self.g_cond_dim()
        if resolve_arch(m.arch, self.shape) == "cgan-mlp":
            return build_discriminator(m.arch, self.shape, m.width, cond_dim=cd, spectral_norm=m.spectral_norm)
        shape = (self.shape[0] + cd, *self.shape[1:]) if len(self.shape) == 3 else (sum(self.shape) + cd,)
        return ConcatCondition(build_discriminator(m.arch, shape, m.width, spectral_norm=m.spectral_norm))

    def d_logits(self, x: torch.Tensor, info: dict, train: bool = True) -> torch.Tensor:
        return (self.D_train if train else self.D)(x, self.condition(info))

    # ---- vector conditions ----------------------------------------------------------
    def attach_data(self, data: Dataset) -> None:
        super().attach_data(data)
        if self.vector:
            self.c_train = data.cond_train.float().to(self.device)
            rows = min(len(self.c_train), BANK_ROWS, max(1, BANK_VALUES // self.spec.cond_dim))
            self.cond_bank = self.c_train[:rows].clone()

    def batch(self, index: torch.Tensor) -> Batch:
        out = super().batch(index)
        if self.vector:
            out["c"] = self.c_train[index]
        return out

    def fake(self, n, gen, grad, batch=None):
        if not self.vector:
            return super().fake(n, gen, grad, batch)
        eps, k = self.G.prior.draw(n, gen, device=self.device)
        if batch is not None and len(batch["c"]) >= n:
            c = batch["c"][:n]
        else:
            c = self.draw_conditions(n, gen)
        g = self.G_train if grad else self.G
        with torch.set_grad_enabled(grad):
            return g(eps, k, c), {"c": c}

    def draw_conditions(self, n: int, gen: torch.Generator | None) -> torch.Tensor:
        if len(self.cond_bank) == 0:
            raise MixganError("this cgan is conditioned on vectors: give the conditions (cond=..., or --cond FILE.npz)")
        return self.cond_bank[torch.randint(len(self.cond_bank), (n,), generator=gen, device=self.device)]

    def extra_tensors(self) -> dict[str, torch.Tensor]:
        return {"cond_bank": self.cond_bank.contiguous()} if self.vector else {}

    def load_extra_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        if self.vector and "cond_bank" in tensors:
            self.cond_bank = tensors["cond_bank"].float().to(self.device)

    def as_conditions(self, cond, n: int) -> torch.Tensor:
        """``cond`` as an n x cond_dim tensor: one row per sample, or one row (or vector) for all."""
        if not self.vector:
            raise MixganError("this cgan is conditioned on class labels: request a class, not conditions")
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

    @torch.no_grad()
    def sample(self, n, component=None, scale=1.0, label=None, generator=None, batch_size=1000, cond=None,
               **kwargs) -> Samples:
        """As GANModel.sample; ``cond`` (vector-conditioned models) gives each sample's condition."""
        if cond is None:
            return super().sample(n, component, scale, label, generator, batch_size, **kwargs)
        parts = [super(CGAN, self).sample(len(c), component, scale, label, generator, batch_size, cond=c, **kwargs)
                 for c in self.as_conditions(cond, n).split(batch_size)]
        return Samples(**{k: torch.cat([getattr(p, k) for p in parts]) for k in vars(parts[0])
                          if getattr(parts[0], k) is not None})

    def sample_batch(self, n, component, scale, label, generator, cond=None, **kwargs) -> Samples:
        if not self.vector:
            return super().sample_batch(n, component, scale, label, generator, **kwargs)
        eps, k = self.G.prior.draw(n, generator, device=self.device)
        c = cond if cond is not None else self.draw_conditions(n, generator)
        x = self.generator(eps, k, c, scale=scale).float().cpu()
        return Samples(x, cond=c.cpu())

    def grid_rows(self) -> tuple[int, dict]:
        return (10, {}) if self.vector else super().grid_rows()
