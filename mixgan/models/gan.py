"""The plain GAN baseline: unimodal N(0, I) prior."""
from .base import GANModel


class GAN(GANModel):
    name = "gan"
