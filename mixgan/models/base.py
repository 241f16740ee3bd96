"""What every model shares: networks, optimizers, EMA, sampling; subclasses own their losses.

A model is built from a Config and a Dataset. The training loop calls ``train_step`` with a
function that returns the next real batch and a seeded generator for latent noise, and
reads back a dict of floats to log. ``G_train``/``D_train`` are the modules to call when a
gradient must be synchronised (DDP wrappers under torchrun, the plain modules otherwise).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..config import Config
from ..data import DataSpec, Dataset
from ..errors import MixganError
from ..nets import LatentGenerator, build_discriminator, build_generator
from ..nets.augment import attach_augment
from ..priors import build_prior
from . import losses

Batch = dict[str, torch.Tensor]


@dataclass
class Samples:
    """Generated samples and what they were conditioned on (None where it does not apply)."""

    x: torch.Tensor
    component: torch.Tensor | None = None
    label: torch.Tensor | None = None
    instance: torch.Tensor | None = None
    cond: torch.Tensor | None = None  # real-valued conditions of a vector-conditioned model

    def arrays(self) -> dict:
        return {k: v.cpu().numpy() for k, v in vars(self).items() if v is not None}


class GANModel:
    """Plain GAN: N(0, I) prior, G and D trained by alternating Adam updates."""

    name = "gan"
    mixture = False  # latent prior is a Gaussian mixture with components
    class_conditional = False  # samples can be requested per class

    def __init__(self, cfg: Config, spec: DataSpec, device: torch.device | str = "cpu"):
        self.cfg, self.device, self.spec = cfg, torch.device(device), spec
        self.shape, self.num_classes = spec.shape, spec.num_classes
        self.loss_kind = cfg.model.loss
        self.x_train = self.y_train = None
        self.step = 0  # the training step in progress, set by the loop
        self.check(spec)
        prior = build_prior(cfg, self.mixture, seed=cfg.train.seed)
        m = cfg.model
        net = build_generator(m.arch, cfg.prior.latent_dim, self.shape, m.width, self.g_cond_dim(), self.g_cond_mode())
        self.G = LatentGenerator(prior, net).to(self.device)
        self.D = self.build_discriminator().to(self.device)
        attach_augment(self.D, cfg.train.augment)
        self.G_ema = copy.deepcopy(self.G).requires_grad_(False) if cfg.train.ema else None
        t = cfg.train
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=t.lr_g, betas=(t.beta1, t.beta2))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=t.lr_d, betas=(t.beta1, t.beta2))
        self.G_train, self.D_train = self.G, self.D

    # ---- hooks for subclasses -------------------------------------------------------
    def check(self, spec: DataSpec) -> None:
        """Refuse data this model cannot train on (raise MixganError)."""

    def g_cond_dim(self) -> int:
        return 0

    def g_cond_mode(self) -> str:
        return "concat"

    def build_discriminator(self) -> nn.Module:
        m = self.cfg.model
        return build_discriminator(m.arch, self.shape, m.width, spectral_norm=m.spectral_norm)

    def batch(self, index: torch.Tensor) -> Batch:
        """The real batch for these training-set indices (data already on the device)."""
        out = {"x": self.x_train[index]}
        if self.y_train is not None:
            out["y"] = self.y_train[index]
        return out

    def fake(self, n: int, gen: torch.Generator, grad: bool, batch: Batch | None = None):
        """Generated samples for a training step and what D must be told about them (here the
        Gaussian ``k`` each came from; all 0 under the one-Gaussian prior)."""
        eps, k = self.G.prior.draw(n, gen, device=self.device)
        g = self.G_train if grad else self.G
        with torch.set_grad_enabled(grad):
            return g(eps, k), {"k": k}

    def d_logits(self, x: torch.Tensor, info: dict, train: bool = True) -> torch.Tensor:
        return (self.D_train if train else self.D)(x)

    # ---- training -------------------------------------------------------------------
    def attach_data(self, data: Dataset) -> None:
        """Hold the training set as tensors on the model's device."""
        self.x_train = data.x_train.to(self.device)
        self.y_train = data.y_train.to(self.device) if data.y_train is not None else None

    def attach_run(self, path) -> None:
        """Called once the run directory exists: a model may keep per-run files there (IC-GAN's instances)."""

    def train_step(self, next_batch: Callable[[], Batch], gen: torch.Generator) -> dict[str, float]:
        """``d_steps`` discriminator updates, then one generator update."""
        for _ in range(self.cfg.train.d_steps):
            real = next_batch()
            fake, info = self.fake(len(real["x"]), gen, grad=False, batch=real)
            loss_d = self.discriminator_loss(real, fake.detach(), info)
            if self.cfg.train.r1:
                loss_d = loss_d + self.r1_penalty(real)
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            self.opt_d.step()
        self.D.requires_grad_(False)
        fake, info = self.fake(self.cfg.train.batch_size, gen, grad=True, batch=real)
        loss_g = self.generator_loss(fake, info)
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        self.D.requires_grad_(True)
        self.update_ema()
        return {"loss_d": loss_d.detach(), "loss_g": loss_g.detach()}

    def discriminator_loss(self, real: Batch, fake: torch.Tensor, info: dict) -> torch.Tensor:
        return losses.d_loss(self.d_logits(real["x"], real), self.d_logits(fake, info), self.loss_kind)

    def generator_loss(self, fake: torch.Tensor, info: dict) -> torch.Tensor:
        return losses.g_loss(self.d_logits(fake, info, train=False), self.loss_kind)

    def r1_penalty(self, real: Batch) -> torch.Tensor:
        """Zero-centred R1 (Mescheder et al. 2018): gamma/2 * E|grad_x D(x)|^2 on real images,
        through whatever D's real/fake logit is for this model (the first output of a tuple)."""
        x = real["x"].detach().requires_grad_(True)
        out = self.d_logits(x, real)
        out = out[0] if isinstance(out, tuple) else out
        (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
        return self.cfg.train.r1 / 2 * grad.pow(2).flatten(1).sum(1).mean()

    @torch.no_grad()
    def update_ema(self) -> None:
        """EMA of G's weights; the decay ramps up as (1 + s) / (10 + s) so that a short run's
        average is not dominated by its first, untrained steps."""
        if self.G_ema is None:
            return
        decay = min(self.cfg.train.ema_decay, (1 + self.step) / (10 + self.step))
        for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
            p_ema.lerp_(p, 1 - decay)
        for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
            b_ema.copy_(b)

    # ---- state ----------------------------------------------------------------------
    def modules(self) -> dict[str, nn.Module]:
        mods = {"G": self.G, "D": self.D}
        if self.G_ema is not None:
            mods["G_ema"] = self.G_ema
        return mods

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt_g": self.opt_g, "opt_d": self.opt_d}

    def extra_tensors(self) -> dict[str, torch.Tensor]:
        """Non-module state to checkpoint (IC-GAN's instance features, for example)."""
        return {}

    def load_extra_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        pass

    # ---- sampling -------------------------------------------------------------------
    @property
    def generator(self) -> LatentGenerator:
        return self.G_ema if self.G_ema is not None else self.G

    @property
    def components(self) -> int:
        return self.G.prior.components if self.mixture else 0

    def check_request(self, component: int | None, label: int | None) -> None:
        if component is not None and not self.mixture:
            raise MixganError(f"model '{self.name}' has no Gaussian components to choose from")
        if label is not None and not self.class_conditional:
            raise MixganError(f"model '{self.name}' is not class-conditional")
        if label is not None and not 0 <= label < self.num_classes:
            raise MixganError(f"class must be in [0, {self.num_classes - 1}], got {label}")

    @torch.no_grad()
    def sample(self, n: int, component: int | None = None, scale: float = 1.0, label: int | None = None,
               generator: torch.Generator | None = None, batch_size: int = 1000, **kwargs) -> Samples:
        """n samples from the (EMA) generator in eval mode, in batches."""
        self.check_request(component, label)
        if scale <= 0:
            raise MixganError(f"scale must be > 0, got {scale}")
        g = self.generator
        was_training = g.training
        g.eval()
        try:
            parts = [self.sample_batch(min(batch_size, n - i), component, scale, label, generator, **kwargs)
                     for i in range(0, n, batch_size)]
        finally:
            g.train(was_training)
        fields = {k: torch.cat([getattr(p, k) for p in parts]) for k in vars(parts[0])
                  if getattr(parts[0], k) is not None}
        return Samples(**fields)

    def sample_batch(self, n, component, scale, label, generator, **kwargs) -> Samples:
        eps, k = self.G.prior.draw(n, generator, component, device=self.device)
        return Samples(self.generator(eps, k, scale=scale).float().cpu(), k.cpu() if self.mixture else None)

    def grid_rows(self) -> tuple[int, dict]:
        """Rows of the progress grid and the sampling argument that selects each row."""
        if self.mixture:
            return self.components, {"component": list(range(self.components))}
        return 10, {}

    def sample_grid(self, columns: int = 10, seed: int = 0) -> tuple[torch.Tensor, int]:
        """Fixed-noise samples: one row per component (or class), ``columns`` per row."""
        rows, choice = self.grid_rows()
        key, values = next(iter(choice.items()), (None, None))
        xs = []
        for r in range(rows):
            gen = torch.Generator(self.device).manual_seed(seed * 1000 + r)
            kwargs = {key: values[r]} if key else {}
            xs.append(self.sample(columns, generator=gen, **kwargs).x)
        return torch.cat(xs), rows
