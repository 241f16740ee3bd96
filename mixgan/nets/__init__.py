"""Generator and discriminator bodies, chosen by ``model.arch`` and the data's shape."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import MixganError
from .cgan_mlp import CGANMLPDiscriminator, CGANMLPGenerator
from .conv import ConvDiscriminator, ConvGenerator, plan
from .mlp import MLPDiscriminator, MLPGenerator
from .resnet import ResNetDiscriminator, ResNetGenerator

IMAGE_ARCHS = ("dcgan", "resnet")  # bodies that need images; their generators take conditional batch norm


def resolve_arch(arch: str, shape: tuple[int, ...]) -> str:
    if arch == "auto":
        return "dcgan" if len(shape) == 3 else "mlp"
    if arch not in ARCHS:
        raise MixganError(f"unknown arch '{arch}' (choose from auto, {', '.join(ARCHS)})")
    if arch in IMAGE_ARCHS and len(shape) != 3:
        raise MixganError(f"arch '{arch}' needs images, data has shape {shape}")
    return arch


# ``model.width = 0``: the base width follows the image side. Each doubling of the side adds a block
# at the base width, so the base width halves instead and the widest layer (G's seed, D's last) stays
# at 128 channels: 64 at 28 px, 32 at 32 px, 16 from 64 px. On CPU minutes the extra steps are
# worth more than the channels (benchmarks/results/colour_quality.md).
WIDEST, NARROWEST, NOT_IMAGES = 128, 16, 64


def auto_width(arch: str, shape: tuple[int, ...]) -> int:
    """The width ``model.width = 0`` stands for: 128 / 2^(n - 1) for a conv body of n doublings, kept
    in [16, 64]; 64 for other bodies."""
    if len(shape) != 3 or resolve_arch(arch, shape) not in IMAGE_ARCHS:
        return NOT_IMAGES
    _, doublings = plan(shape[1])
    return min(NOT_IMAGES, max(NARROWEST, WIDEST >> (doublings - 1)))


def build_generator(arch: str, latent_dim: int, shape: tuple[int, ...], width: int, cond_dim: int = 0,
                    cond_mode: str = "concat") -> nn.Module:
    width = width or auto_width(arch, shape)
    arch = resolve_arch(arch, shape)
    return ARCHS[arch][0](latent_dim, shape, width, cond_dim, cond_mode)


def build_discriminator(arch: str, shape: tuple[int, ...], width: int, out_dim: int = 1, cond_dim: int = 0,
                        aux_classes: int = 0, spectral_norm: bool = False) -> nn.Module:
    width = width or auto_width(arch, shape)
    arch = resolve_arch(arch, shape)
    return ARCHS[arch][1](shape, width, out_dim, cond_dim, aux_classes, spectral_norm)


# arch -> (generator factory, discriminator factory); factories share the signatures above.
ARCHS = {
    "mlp": (lambda d, s, w, c, m: MLPGenerator(d, s, w, c, tanh=len(s) == 3),
            lambda s, w, o, c, a, sn: MLPDiscriminator(s, w, o, c, a, sn)),
    "dcgan": (lambda d, s, w, c, m: ConvGenerator(d, s, w, c, m),
              lambda s, w, o, c, a, sn: ConvDiscriminator(s, w, o, c, a, sn)),
    "resnet": (lambda d, s, w, c, m: ResNetGenerator(d, s, w, c, m),
               lambda s, w, o, c, a, sn: ResNetDiscriminator(s, w, o, c, a, sn)),
    "cgan-mlp": (lambda d, s, w, c, m: CGANMLPGenerator(d, s, c, tanh=len(s) == 3),
                 lambda s, w, o, c, a, sn: CGANMLPDiscriminator(s, o, c, a, sn)),
}


class LatentGenerator(nn.Module):
    """The prior and the generator net as one module: (eps, k, cond) -> x.

    Keeping the prior inside lets a dynamic mixture train with G, be averaged by DDP and be
    carried by the EMA copy.
    """

    def __init__(self, prior: nn.Module, net: nn.Module):
        super().__init__()
        self.prior, self.net = prior, net

    def forward(self, eps: torch.Tensor, k: torch.Tensor, cond: torch.Tensor | None = None,
                scale: float = 1.0) -> torch.Tensor:
        return self.net(self.prior(eps, k, scale), cond)
