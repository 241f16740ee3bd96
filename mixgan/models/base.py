"""What every model shares: networks, optimizers, EMA, sampling; subclasses own their losses.

A model is built from a Config and a DataSpec. The training loop calls ``train_step`` with a
function that returns the next real batch and a seeded generator for latent noise, and
reads back a dict of losses (0-d tensors, still on the device) to log. ``G_train``/``D_train``
are the modules to call when a gradient must be synchronised (DDP wrappers under torchrun, the
plain modules otherwise).

Device contract: parameters live in ``G``/``D``/``G_ema``; every other tensor the model holds
(training data, instance features, neighbour tables, labels, condition banks) is a
:class:`held` attribute, a non-persistent buffer of ``model.held``, so ``model.to(device)``
moves it all and no call site moves state by hand. ``model.device`` is derived from G's
parameters. ``sample`` always returns :class:`Samples` on the CPU.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, fields, replace
from typing import Callable, Iterator

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..config import Config
from ..data import DataSpec, Dataset, to_float
from ..data.batches import BatchSource, Neighbours, Rows
from ..data.rows import NpyRows
from ..errors import MixganError
from ..nets import IMAGE_ARCHS, LatentGenerator, build_discriminator, build_generator, resolve_arch
from ..nets.augment import attach_augment
from ..priors import build_prior
from . import losses



@dataclass
class Batch:
    """A batch D is shown, real or generated, with what it is conditioned on (None where it does
    not apply). Real batches come from ``batch``, generated ones from ``fake``."""

    x: torch.Tensor
    k: torch.Tensor | None = None  # the Gaussian each generated sample came from
    y: torch.Tensor | None = None  # class (real label, or the class a fake was generated for)
    c: torch.Tensor | None = None  # the condition vector G and D see (vector cGAN, IC-GAN fakes)
    h: torch.Tensor | None = None  # instance features (IC-GAN real batches)


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

    def cpu(self) -> "Samples":
        return Samples(**{k: None if v is None else v.cpu() for k, v in vars(self).items()})

    @staticmethod
    def cat(parts: list["Samples"]) -> "Samples":
        """One Samples from batches with the same fields set."""
        return Samples(**{k: torch.cat([getattr(p, k) for p in parts]) for k in vars(parts[0])
                          if getattr(parts[0], k) is not None})


@dataclass
class SamplePlan:
    """What each sample of a ``sample`` call is conditioned on, decided before any batch is made.

    ``label`` and ``component`` are one int for all samples (or None: drawn per batch);
    ``labels``, ``cond`` and ``instance`` are per-sample tensors (cond and labels on the model's
    device, instance on the CPU). ``split`` cuts it into batches, so no model re-splits its own.
    """

    n: int
    component: int | None = None
    label: int | None = None
    labels: torch.Tensor | None = None
    cond: torch.Tensor | None = None
    instance: torch.Tensor | None = None

    def split(self, size: int) -> list["SamplePlan"]:
        out = []
        for a in range(0, self.n, size):
            cut = {f.name: getattr(self, f.name)[a:a + size] for f in fields(self)
                   if isinstance(getattr(self, f.name), torch.Tensor)}
            out.append(replace(self, n=min(size, self.n - a), **cut))
        return out


def check_labelled(name: str, spec: DataSpec, hint: str = "") -> None:
    """Refuse data without at least two classes (class-conditional models need labels)."""
    if spec.num_classes < 2:
        raise MixganError(f"model '{name}' needs class labels; dataset '{spec.name}' has none{hint}")


def wrong_labels(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """For each label another class: offsets 1..N-1 cycle over the batch, so no RNG is drawn."""
    offset = 1 + torch.arange(len(y), device=y.device) % (num_classes - 1)
    return (y + offset) % num_classes


class held:
    """A model attribute stored as a non-persistent buffer of ``model.held`` (kept out of
    checkpoints, moved by ``model.to``); assigning a tensor puts it on the model's device.

    A table too large to hold may be assigned as :class:`~mixgan.data.rows.NpyRows` (rows of a
    file read on demand, indexed like a tensor): a CPU model keeps it so, any other device gets
    the whole table copied into its memory, where a batch's rows are gathered."""

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    def __get__(self, model, owner=None):
        if model is None:
            return self
        value = model.held._buffers.get(self.name)
        return value if value is not None else model.on_disk.get(self.name)

    def __set__(self, model, value) -> None:
        model.on_disk.pop(self.name, None)
        if isinstance(value, NpyRows) and model.device.type == "cpu":
            model.held.register_buffer(self.name, None, persistent=False)
            model.on_disk[self.name] = value
            return
        value = None if value is None else as_tensor(value).to(model.device)
        model.held.register_buffer(self.name, value, persistent=False)


def as_tensor(value) -> torch.Tensor:
    """A tensor, an array, or the rows of a file (read whole) as a tensor."""
    return value.all() if isinstance(value, NpyRows) else torch.as_tensor(value)


class GANModel:
    """Plain GAN: N(0, I) prior, G and D trained by alternating Adam updates."""

    name = "gan"
    # capabilities, declared by each model class and read by every caller instead of probing for methods
    has_components = False  # the latent prior is a Gaussian mixture: samples can be requested per Gaussian
    class_conditional = False  # samples can be requested per class
    instance_conditional = False  # samples are conditioned on stored or given instances (IC-GAN)
    accepts_condition_vectors = False  # samples are conditioned on real vectors (``cond=``)

    x_train = held()
    y_train = held()
    c_train = held()  # the training set's condition vectors (data that carries them)

    def __init__(self, cfg: Config, spec: DataSpec, device: torch.device | str = "cpu"):
        self.cfg, self.spec = cfg, spec
        self.shape, self.num_classes = spec.shape, spec.num_classes
        self.loss_kind = cfg.model.loss
        self.step = 0  # the training step in progress, set by the loop
        self.held = nn.Module()
        self.on_disk: dict[str, NpyRows] = {}  # held tables read from files on demand (see held)
        self.check(spec)
        self.build_networks()
        self.to(device)
        self.x_train = self.y_train = self.c_train = None
        self.levels = 255

    def build_networks(self) -> None:
        """G (prior + net), D, the EMA copy and the optimizers, from the config and the data spec
        alone: the hooks it calls (``g_cond_dim``, ``build_discriminator``) must not set state."""
        prior = build_prior(self.cfg, self.has_components, seed=self.cfg.train.seed)
        m = self.cfg.model
        net = build_generator(m.arch, self.cfg.prior.latent_dim, self.shape, m.width, self.g_cond_dim(),
                              self.g_cond_mode())
        self.G = LatentGenerator(prior, net)
        self.D = self.build_discriminator()
        attach_augment(self.D, self.cfg.train.augment)
        self.G_ema = copy.deepcopy(self.G).requires_grad_(False) if self.cfg.train.ema else None
        t = self.cfg.train
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=t.lr_g, betas=(t.beta1, t.beta2))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=t.lr_d, betas=(t.beta1, t.beta2))
        self.G_train, self.D_train = self.G, self.D

    def wrap_for_training(self, wrap: Callable[[nn.Module], nn.Module]) -> None:
        """Set the ``*_train`` modules, the ones called where a gradient must be synchronised:
        ``wrap`` is DDP under torchrun (see training.dist.wrap), the identity otherwise."""
        self.G_train, self.D_train = wrap(self.G), wrap(self.D)

    @property
    def conv_body(self) -> bool:
        """G and D are conv bodies (``IMAGE_ARCHS``), which take conditional BatchNorm and a projection head."""
        return resolve_arch(self.cfg.model.arch, self.shape) in IMAGE_ARCHS

    @property
    def device(self) -> torch.device:
        """Where the model's parameters (and so everything it holds) live."""
        return next(self.G.parameters()).device

    def to(self, device: torch.device | str) -> "GANModel":
        """Move networks, held tensors and optimizer moments to ``device``."""
        device = torch.device(device)
        for module in (*self.modules().values(), self.held):
            module.to(device)
        if device.type != "cpu":
            for name, rows in list(self.on_disk.items()):
                setattr(self, name, rows.all())
        for opt in self.optimizers().values():
            for state in opt.state.values():
                for key, value in state.items():
                    if torch.is_tensor(value) and key != "step":  # Adam keeps its step count on the CPU
                        state[key] = value.to(device)
        return self

    def generate(self, eps: torch.Tensor, k: torch.Tensor, cond: torch.Tensor | None = None,
                 grad: bool = False) -> torch.Tensor:
        """G's images for a training step: through ``G_train`` with gradients for the G update,
        through the plain ``G`` without them for the D update."""
        g = self.G_train if grad else self.G
        with torch.set_grad_enabled(grad):
            return g(eps, k, cond)

    # ---- hooks for subclasses -------------------------------------------------------
    def check(self, spec: DataSpec) -> None:
        """Refuse data this model cannot train on (raise MixganError); validation only, no state."""

    def g_cond_dim(self) -> int:
        return 0

    def g_cond_mode(self) -> str:
        return "concat"

    def build_discriminator(self) -> nn.Module:
        m = self.cfg.model
        return build_discriminator(m.arch, self.shape, m.width, spectral_norm=m.spectral_norm)

    def images(self, index: torch.Tensor | None = None) -> torch.Tensor:
        """Held training images (all, or rows ``index``) as floats in [-1, 1], converted where they are held."""
        return to_float(self.x_train if index is None else self.x_train[index], self.levels)

    def neighbours(self) -> Neighbours | None:
        """The neighbour table the batch source reads beside (or instead of) each instance; None: none."""
        return None

    def real_batch(self, rows: Rows) -> Batch:
        """The real batch from what the batch source read for a training batch (on the model's device)."""
        return Batch(rows.x, y=rows.y, c=rows.c)

    def batch_source(self, order: Callable[[int], torch.Tensor]) -> BatchSource:
        """A source of training batches over the held training set (batch b: instances ``order(b)``)."""
        t = self.cfg.train
        return BatchSource(self.x_train, self.y_train, self.c_train, order, self.device, self.neighbours(),
                           seed=t.seed, d_steps=t.d_steps, levels=self.levels)

    def batch(self, index: torch.Tensor, b: int = 0) -> Batch:
        """The real batch of held training rows ``index``, read as training reads batch b (evaluation, tests)."""
        return self.real_batch(self.batch_source(lambda _: index).read(b, index))

    def fake(self, n: int, gen: torch.Generator, grad: bool, batch: Batch | None = None) -> Batch:
        """n generated samples for a training step (``batch``: the step's real batch), with the
        Gaussian ``k`` each came from (all 0 under the one-Gaussian prior)."""
        eps, k = self.G.prior.draw(n, gen, device=self.device)
        return Batch(self.generate(eps, k, grad=grad), k=k)

    def d_logits(self, b: Batch, train: bool = True) -> torch.Tensor:
        """D's output for a batch: through ``D_train`` for D's update, the plain ``D`` for G's."""
        return (self.D_train if train else self.D)(b.x)

    # ---- training -------------------------------------------------------------------
    def attach_data(self, data: Dataset) -> None:
        """Hold the training set as stored (uint8 images, labels, conditions), moved to the model's
        device on assignment, where it fits in memory; a set read on demand is left where it is
        (training reads its batches through a batch source either way)."""
        self.levels = data.levels
        held = not data.streamed
        self.x_train = data.x_train if held else None
        self.y_train = data.y_train if held else None
        self.c_train = data.cond_train.float() if held and data.cond_train is not None else None

    def attach_run(self, path) -> None:
        """Called once the run directory exists: a model may keep per-run files there (IC-GAN's instances)."""

    def open_run(self, path, expect: dict | None = None) -> bool:
        """Use the per-run files of a saved run (``mixgan.load``); False where there are none."""
        return False

    def discriminator_steps(self, next_batch: Callable[[], Batch], gen: torch.Generator) -> tuple[Batch, torch.Tensor]:
        """``d_steps`` discriminator updates; returns the last real batch and D's last loss.

        Each update's loss is computed under ``parametrize.cached()``: D's spectrally normalised
        weights (and their power iteration) are computed once for all of its calls (real, fake, R1)
        instead of once per call. That is a fifth of ``gan``'s device operations a step (298 -> 232),
        the cost that bounds a small GAN's step on a GPU. No D call may run under ``no_grad`` inside it:
        the weights it caches would carry no gradient."""
        for _ in range(self.cfg.train.d_steps):
            real = next_batch()
            fake = self.fake(len(real.x), gen, grad=False, batch=real)
            with parametrize.cached():
                loss_d = self.discriminator_loss(real, fake)
                if self.cfg.train.r1:
                    loss_d = loss_d + self.r1_penalty(real)
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            self.opt_d.step()
        return real, loss_d

    def train_step(self, next_batch: Callable[[], Batch], gen: torch.Generator) -> dict[str, torch.Tensor]:
        """``d_steps`` discriminator updates, then one generator update; the losses stay on the device."""
        real, loss_d = self.discriminator_steps(next_batch, gen)
        self.D.requires_grad_(False)
        logs = self.generator_step(real, gen)
        self.D.requires_grad_(True)
        self.update_ema()
        return {"loss_d": loss_d.detach(), **logs}

    def generator_step(self, real: Batch, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """One update of G (D frozen; ``real``: the step's last real batch); returns the losses to log."""
        fake = self.fake(self.cfg.train.batch_size, gen, grad=True, batch=real)
        loss_g = self.generator_loss(fake)
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        return {"loss_g": loss_g.detach()}

    def discriminator_loss(self, real: Batch, fake: Batch) -> torch.Tensor:
        return losses.d_loss(self.d_logits(real), self.d_logits(fake), self.loss_kind)

    def generator_loss(self, fake: Batch) -> torch.Tensor:
        return losses.g_loss(self.d_logits(fake, train=False), self.loss_kind)

    def r1_penalty(self, real: Batch) -> torch.Tensor:
        """Zero-centred R1 (Mescheder et al. 2018): gamma/2 * E|grad_x D(x)|^2 on real images,
        through whatever D's real/fake logit is for this model (the first output of a tuple)."""
        x = real.x.detach().requires_grad_(True)
        out = self.d_logits(dataclasses.replace(real, x=x))
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
        torch._foreach_lerp_(list(self.G_ema.parameters()), list(self.G.parameters()), 1 - decay)
        buffers = list(self.G.buffers())
        if buffers:
            torch._foreach_copy_(list(self.G_ema.buffers()), buffers)

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
        return self.G.prior.components if self.has_components else 0

    def check_request(self, component: int | None, label: int | None) -> None:
        if component is not None and not self.has_components:
            raise MixganError(f"model '{self.name}' has no Gaussian components to choose from")
        if label is not None and not self.class_conditional:
            raise MixganError(f"model '{self.name}' is not class-conditional")
        if label is not None and not 0 <= label < self.num_classes:
            raise MixganError(f"class must be in [0, {self.num_classes - 1}], got {label}")

    def plan(self, n: int, component: int | None, label: int | None, generator: torch.Generator | None,
             **request) -> SamplePlan:
        """What each of the n samples is conditioned on; models with their own requests
        (conditions, instances) extend it and refuse requests they do not know."""
        request = [key for key, value in request.items() if value is not None]
        if request:
            raise MixganError(f"model '{self.name}' takes no sampling option {', '.join(map(repr, request))}")
        return SamplePlan(n, component, label)

    def sample(self, n: int, component: int | None = None, scale: float = 1.0, label: int | None = None,
               generator: torch.Generator | None = None, batch_size: int = 1000, **request) -> Samples:
        """n samples from the (EMA) generator in eval mode, in batches, returned on the CPU."""
        out = Samples.cat(list(self.sample_batches(n, component, scale, label, generator, batch_size, **request)))
        out.x = out.x.float()
        return out

    def sample_batches(self, n: int, component: int | None = None, scale: float = 1.0, label: int | None = None,
                       generator: torch.Generator | None = None, batch_size: int = 1000,
                       **request) -> Iterator[Samples]:
        """The batches :meth:`sample` joins, one at a time on the CPU, so that a caller can reduce
        each (to features, say) before the next is made."""
        self.check_request(component, label)
        if scale <= 0:
            raise MixganError(f"scale must be > 0, got {scale}")
        with torch.no_grad():
            plan = self.plan(n, component, label, generator, **request)
        g = self.generator
        was_training = g.training
        try:
            for p in plan.split(batch_size):
                g.eval()
                with torch.no_grad():
                    part = self.sample_batch(p, scale, generator).cpu()
                part.x = part.x.float()
                yield part
        finally:
            g.train(was_training)

    def sample_batch(self, plan: SamplePlan, scale: float, generator: torch.Generator | None) -> Samples:
        """One batch of ``plan`` (at most ``batch_size`` samples)."""
        eps, k = self.G.prior.draw(plan.n, generator, plan.component, device=self.device)
        return Samples(self.generator(eps, k, scale=scale), k if self.has_components else None)

    def grid_rows(self) -> tuple[int, dict]:
        """Rows of the progress grid and the sampling argument that selects each row."""
        if self.has_components:
            return self.components, {"component": list(range(self.components))}
        return 10, {}

    def grid_labels(self) -> list[str]:
        """What each row of :meth:`sample_grid` shows ("Gaussian 3", "class 7"); empty where rows are alike."""
        _, choice = self.grid_rows()
        key, values = next(iter(choice.items()), (None, []))
        name = {"component": "Gaussian", "label": "class"}.get(key, key)
        return [f"{name} {v}" for v in values]

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
