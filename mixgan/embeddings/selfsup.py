"""A self-supervised instance embedding: a small CNN trained with a contrastive loss, no labels.

SimCLR (Chen et al. 2020) for small grey-scale or colour images: two augmented views of each
image are pulled together and pushed away from the other images of the batch (NT-Xent). The
augmentations suit 8x8 to 32x32 images: a random affine map (shift, scale, slight rotation),
brightness and contrast, Gaussian noise and a small erased square. No flips: they change the
meaning of digits. The encoder is trained once per dataset and settings and cached under
``$MIXGAN_CACHE/selfsup/<dataset>-<fingerprint>-<settings>/`` (safetensors + JSON), behind a
file lock so parallel processes train it once.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..config import env_cap
from ..data import DataSpec, Dataset, to_float
from ..errors import MixganError
from .base import Embedding

VERSION = 2  # 2: the steps scale with the set's size (fit_steps)
FEATURE_DIM = 128
FIT_MAX = 50_000  # larger training sets: the encoder trains on a seeded subset of this many images
FIT_EPOCHS = 120  # a small set trains for at most this many passes over it ...
FIT_MIN_STEPS = 200  # ... but never fewer steps than this
STEP_SECONDS, PIXEL_SECONDS = 0.25, 2.8e-7  # on 2 CPU cores a step costs the first plus 2 x batch x C x H x W
# of the second (measured: 0.25 s a step at 256 images of 1 x 8 x 8, 2 s at 256 of 3 x 64 x 64)


def fit_steps(steps: int, batch_size: int, n: int) -> int:
    """The steps the encoder trains on n images: ``steps``, fewer for a small set (``FIT_EPOCHS`` passes
    over it, at least ``FIT_MIN_STEPS``), so that 300 photos do not cost what 60,000 do."""
    return min(steps, max(FIT_MIN_STEPS, math.ceil(FIT_EPOCHS * n / max(1, batch_size))))


def fit_seconds(steps: int, batch_size: int, shape) -> float:
    """Roughly how long training takes on the CPU, where the encoder trains."""
    return steps * (STEP_SECONDS + 2 * batch_size * math.prod(shape) * PIXEL_SECONDS)


class Encoder(nn.Module):
    """Three conv-BN-ReLU blocks (two with stride 2), 2x2 average pooling, a linear 128-d output."""

    def __init__(self, channels: int, width: int = 32, dim: int = FEATURE_DIM):
        super().__init__()
        w = width

        def block(c_in, c_out, stride):
            return [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]

        self.body = nn.Sequential(*block(channels, w, 1), *block(w, 2 * w, 2), *block(2 * w, 4 * w, 2),
                                  nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16 * w, dim))
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, 64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A random view of each image in [-1, 1]: affine jitter, brightness/contrast, noise, an erased square."""
    n, c, h, w = x.shape

    def u(lo, hi, *shape):
        return lo + (hi - lo) * torch.rand(n, *shape, generator=gen, device=x.device)

    angle, scale = u(-0.2, 0.2), u(0.85, 1.15)
    shift = u(-0.15, 0.15, 2)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    v = F.grid_sample(x + 1, grid, padding_mode="zeros", align_corners=False)  # background (-1) pads with 0
    v = v * u(0.7, 1.3, 1, 1, 1) + u(-0.2, 0.2, 1, 1, 1)
    v = v + 0.1 * torch.randn(v.shape, generator=gen, device=x.device)
    side = max(1, h // 4)
    top = (torch.rand(n, generator=gen, device=x.device) * (h - side + 1)).long()
    left = (torch.rand(n, generator=gen, device=x.device) * (w - side + 1)).long()
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    box = ((rows >= top.view(n, 1, 1)) & (rows < (top + side).view(n, 1, 1))
           & (cols >= left.view(n, 1, 1)) & (cols < (left + side).view(n, 1, 1)))
    erase = box & (torch.rand(n, 1, 1, generator=gen, device=x.device) < 0.5)
    v = v.masked_fill(erase.unsqueeze(1), 0.0)
    return (v - 1).clamp(-1.5, 1.5)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """SimCLR's loss: each view must pick its partner out of the 2N - 1 other views."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = z @ z.T / temperature
    logits.fill_diagonal_(-float("inf"))
    n = len(z1)
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return F.cross_entropy(logits, target)


def train_encoder(x: torch.Tensor, steps: int = 600, batch_size: int = 256, width: int = 32, lr: float = 2e-3,
                  seed: int = 0, levels: int = 255, on_step=None) -> tuple[Encoder, list[float]]:
    """Train an encoder on images ``x`` (N x C x H x W in [-1, 1], or uint8 ``0..levels``, converted a
    batch at a time); returns it and the loss per step (``on_step()`` is called after each)."""
    if x.ndim != 4:
        raise MixganError(f"the self-supervised encoder needs images N x C x H x W, got shape {tuple(x.shape)}")
    if len(x) < 2:
        raise MixganError("the self-supervised encoder needs at least 2 images")
    torch.manual_seed(seed)
    net = Encoder(x.shape[1], width)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=1e-5)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / max(1, steps))))
    bs = min(batch_size, len(x))
    losses = []
    net.train()
    for _ in range(steps):
        idx = torch.randint(len(x), (bs,), generator=gen)
        batch = to_float(x[idx], levels) if x.dtype == torch.uint8 else x[idx].float()
        z1 = net.head(net(augment(batch, gen)))
        z2 = net.head(net(augment(batch, gen)))
        loss = nt_xent(z1, z2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if on_step is not None:
            on_step()
    return net.eval(), losses


class SelfSupEmbedding(Embedding):
    """The 128-d output of a contrastively trained encoder (no labels used)."""

    name = "selfsup"
    dim = FEATURE_DIM

    def __init__(self, spec: DataSpec, steps: int = 600, batch_size: int = 256, width: int = 32, seed: int = 0):
        super().__init__(spec)
        if spec.kind != "image" or len(spec.shape) != 3:
            raise MixganError(f"embedding 'selfsup' needs images; dataset '{spec.name}' holds points "
                              "(use model.embedding=pixels)")
        cap = env_cap("MIXGAN_MAX_STEPS")  # a quick check of a command: few steps, cached apart
        self.settings = {"version": VERSION, "steps": steps if cap is None else min(steps, cap),
                         "batch_size": batch_size, "width": width, "seed": seed, **({"max_steps": cap} if cap else {})}
        self.net = Encoder(spec.shape[0], width).eval()
        self.fitted = False

    def cache_folder(self, data: Dataset) -> Path:
        from ..io import cache_dir

        key = hashlib.sha256(json.dumps(self.settings, sort_keys=True).encode()).hexdigest()[:8]
        return cache_dir() / "selfsup" / f"{data.name.replace('/', '-')}-{data.fingerprint()}-{key}"

    def _read(self, tensors: dict[str, torch.Tensor], meta: dict) -> nn.Module | None:
        if meta.get("settings") != self.settings:
            return None
        net = Encoder(self.spec.shape[0], self.settings["width"])
        net.load_state_dict(tensors)
        return net.eval()

    def fit(self, data: Dataset) -> None:
        """Load the cached encoder of this dataset, or train and cache it."""
        from .. import progress
        from ..io import cached

        def make():
            s = self.settings
            n = len(data.x_train)
            if n > FIT_MAX:  # a seeded subset, held as stored (uint8): the steps draw fewer images than it has
                rows = torch.randperm(n, generator=torch.Generator().manual_seed(s["seed"]))[:FIT_MAX].sort().values
                x, levels = data.x_train[rows], data.levels
            else:
                x, levels = data.images(), 255
            steps, bs = fit_steps(s["steps"], s["batch_size"], n), min(s["batch_size"], n)
            with progress.task(f"training the self-supervised encoder of {data.name} ({steps} steps, {n:,} images; "
                               "cached for later runs)", total=steps, eta=fit_seconds(steps, bs, x.shape[1:])) as task:
                net, losses = train_encoder(x, steps, s["batch_size"], s["width"], seed=s["seed"], levels=levels,
                                            on_step=task.advance)
            meta = {"dataset": data.name, "fingerprint": data.fingerprint(), "settings": s, "steps_run": steps,
                    "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None}
            return net, net.state_dict(), meta

        self.net, self.fitted = cached(self.cache_folder(data), "encoder.safetensors", self._read, make), True

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self.fitted:
            raise MixganError("embedding 'selfsup' is not fitted")
        return self.net.to(x.device).eval()(x.float())

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu() for k, v in self.net.state_dict().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.net.load_state_dict(state)
        self.net.eval()
        self.fitted = True
