"""Residual bodies of the SNGAN/BigGAN family (Miyato et al. 2018, Brock et al. 2019), kept lean.

Sized like the DCGAN bodies (:func:`.conv.plan`): an H x H image is reached from an s0 x s0 seed
by n up-blocks (8 -> 4*2, 28 -> 7*4, 32 -> 4*8, 64 -> 4*16). Channels halve at every block
from ``width * 2^(n-1)``, so the cost sits at low resolution, where it is cheap.

G: fc -> seed -> n x [BN-ReLU-up-conv3-BN-ReLU-conv3 + up-conv1 shortcut] -> BN-ReLU-conv3-tanh.
The batch norms are conditional (class or instance embedding) with ``cond_mode='cbn'``; with
'concat' the condition joins z.
D: n x [conv3-ReLU-conv3-avgpool + avgpool-conv1 shortcut], ReLU, global sum pooling, then the
shared :class:`.layers.Heads` (projection of a condition, auxiliary classes).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import MixganError
from .conv import plan
from .layers import Heads, Norm, maybe_sn


def _square(shape: tuple[int, int, int]) -> int:
    if len(shape) != 3 or shape[1] != shape[2]:
        raise MixganError(f"arch 'resnet' needs square images, data has shape {shape}")
    return shape[1]


class UpBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, cond_dim: int):
        super().__init__()
        self.norm1, self.norm2 = Norm(c_in, cond_dim), Norm(c_out, cond_dim)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, 1, 1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.skip = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        h = F.interpolate(F.relu(self.norm1(x, cond)), scale_factor=2)
        h = self.conv2(F.relu(self.norm2(self.conv1(h), cond)))
        return h + self.skip(F.interpolate(x, scale_factor=2))


class DownBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, sn: bool, first: bool):
        super().__init__()
        self.first = first  # the first block sees raw pixels: no ReLU before its first conv
        self.conv1 = maybe_sn(nn.Conv2d(c_in, c_out, 3, 1, 1), sn)
        self.conv2 = maybe_sn(nn.Conv2d(c_out, c_out, 3, 1, 1), sn)
        self.skip = maybe_sn(nn.Conv2d(c_in, c_out, 1), sn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.first else F.relu(x)
        h = F.avg_pool2d(self.conv2(F.relu(self.conv1(h))), 2)
        return h + self.skip(F.avg_pool2d(x, 2))


class ResNetGenerator(nn.Module):
    def __init__(self, latent_dim: int, shape: tuple[int, int, int], width: int = 32, cond_dim: int = 0,
                 cond_mode: str = "concat"):
        super().__init__()
        s0, n = plan(_square(shape))
        self.s0 = s0
        chans = [width * 2 ** (n - i) for i in range(n + 1)]  # n=2: [4w, 2w, w]
        cbn = cond_dim if cond_mode == "cbn" else 0
        self.concat = cond_dim if cond_mode == "concat" else 0
        self.fc = nn.Linear(latent_dim + self.concat, chans[0] * s0 * s0)
        self.blocks = nn.ModuleList(UpBlock(chans[i], chans[i + 1], cbn) for i in range(n))
        self.norm = Norm(chans[-1], cbn)
        self.out = nn.Conv2d(chans[-1], shape[0], 3, 1, 1)

    def forward(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if self.concat:
            z = torch.cat([z, cond], 1)
        h = self.fc(z).view(len(z), -1, self.s0, self.s0)
        for block in self.blocks:
            h = block(h, cond)
        return torch.tanh(self.out(F.relu(self.norm(h, cond))))


class ResNetDiscriminator(nn.Module):
    def __init__(self, shape: tuple[int, int, int], width: int = 32, out_dim: int = 1, cond_dim: int = 0,
                 aux_classes: int = 0, spectral_norm: bool = False):
        super().__init__()
        _, n = plan(_square(shape))
        chans = [shape[0]] + [width * 2 ** i for i in range(n)]  # n=2: [c, w, 2w]
        self.blocks = nn.Sequential(*(DownBlock(chans[i], chans[i + 1], spectral_norm, i == 0) for i in range(n)))
        self.feature_dim = chans[-1]
        self.heads = Heads(self.feature_dim, out_dim, cond_dim, aux_classes, spectral_norm)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.blocks(x)).sum((2, 3))

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None):
        return self.heads(self.features(x), cond)
